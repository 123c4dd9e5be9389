"""Run trained students on videos and cameras: the online API (runner), `egocache predict`, `egocache export`.

This part needs both sides of the cache boundary (the pipeline's decoding and IMU windows, and the
student), which is why it is a package of its own: `student/` never imports `pipeline/`. The runners
load on first use, so the CLI reads `egocache.deploy.options` without importing torch.
"""

from __future__ import annotations

from egocache.core.lazy import lazy_attributes

_LAZY = {"StudentRunner": "runner", "OnnxRunner": "runner", "DeployModel": "runner",
         "predict_video": "predict", "export_student": "export"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_attributes(__name__, _LAZY)
