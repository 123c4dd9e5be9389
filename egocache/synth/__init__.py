"""The built-in synthetic egocentric world: head-camera videos, IMU and EPIC-KITCHENS-100 style labels.

Only the CLI (`egocache synth`), the demo and the tests import this package: extraction, training
and evaluation read the dataset it writes like any other (annotation CSVs, videos, IMU files and the
dataset metadata file egocache-dataset.json), never its code. The generator's modules load on first
use, so reading `egocache.synth.options` (for the CLI) stays cheap.
"""

from __future__ import annotations

from egocache.core.lazy import lazy_attributes

_LAZY = {"APPEARANCE_VERBS": "generate", "MOTION_PAIRS": "generate", "NOUNS": "generate", "VERBS": "generate",
         "SynthSummary": "generate", "SynthVideo": "generate", "synthesize": "generate",
         "EGO4D_IMU_COLUMNS": "files", "EPIC_COLUMNS": "files", "IMU_RATE_HZ": "files", "epic_timestamp": "files",
         "IMU_LAYOUTS": "options", "SynthOptions": "options"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)
