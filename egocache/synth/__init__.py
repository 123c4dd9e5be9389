"""The built-in synthetic egocentric world: head-camera videos, IMU and EPIC-KITCHENS-100 style labels.

Only the CLI (`egocache synth`), the demo and the tests import this package: extraction, training
and evaluation read the dataset it writes like any other (annotation CSVs, videos, IMU files and the
dataset metadata file egocache-dataset.json), never its code.
"""

from egocache.synth.files import EGO4D_IMU_COLUMNS, EPIC_COLUMNS, IMU_RATE_HZ, epic_timestamp
from egocache.synth.generate import (APPEARANCE_VERBS, IMU_LAYOUTS, MOTION_PAIRS, NOUNS, VERBS, SynthSummary,
                                     SynthVideo, synthesize)

__all__ = ["APPEARANCE_VERBS", "EGO4D_IMU_COLUMNS", "EPIC_COLUMNS", "IMU_LAYOUTS", "IMU_RATE_HZ",
           "MOTION_PAIRS", "NOUNS", "VERBS", "SynthSummary", "SynthVideo", "epic_timestamp", "synthesize"]
