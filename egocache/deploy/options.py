"""The settings of `egocache predict` and `egocache export`, each declared once (no torch here, so the CLI
builds its options from them and `egocache --help` stays instant)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egocache.core.device import check_device_name
from egocache.core.settings import check_settings, setting
from egocache.errors import ConfigError
from egocache.pipeline.datasets import ADAPTERS
from egocache.pipeline.imu import IMU_FORMATS

WEIGHTS = ("last", "best")


@dataclass(frozen=True, kw_only=True)
class PredictOptions:
    """Which student (run folder or ONNX file), which video, IMU and annotations, where the outputs go."""

    video: str = setting(argument=True, help="Video file, or an RGB-frame folder (with --fps).")
    run: str | None = setting(None, path="dir", help="Student run folder (the --out of train-student).")
    onnx: str | None = setting(None, path="file", help="Exported student (egocache export RUN --onnx), run with "
                                                      "onnxruntime.")
    weights: str = setting("last", choices=WEIGHTS, help="Which checkpoint of --run: last.pt or best.pt.")
    out: str = setting(path="new-dir", help="Folder for predictions.csv, predictions.json and timeline.png.")
    imu: tuple[str, ...] = setting((), path="file", help="IMU file(s) of the video (repeatable; epic100: the "
                                                        "accl then the gyro CSV).")
    imu_format: str | None = setting(None, choices=IMU_FORMATS, default_text="epic100 for two files, else "
                                     "ego4d or csv from the header", help="Format of --imu.")
    stride: float | None = setting(None, min=0, min_open=True, default_text="the clip length (windows side by side)",
                                   help="Seconds between the starts of consecutive windows.")
    fps: float | None = setting(None, min=0, min_open=True, help="Frame rate of an RGB-frame folder VIDEO.")
    annotations: tuple[str, ...] = setting((), path="file", help="Annotation file(s) holding this video's "
                                                                "ground-truth segments (repeatable).")
    dataset: str = setting("epic100", choices=lambda: list(ADAPTERS), help="Format of --annotations.")
    video_id: str | None = setting(None, default_text="VIDEO's name without extension",
                                   help="The video's id in --annotations.")
    teacher: str | None = setting(None, help="Also run this teacher over the same windows (dense clips): "
                                             "a registered name, e.g. mformer, or a teacher spec file SPEC.json.")
    checkpoint: str | None = setting(None, path="file", help="Weights of --teacher; a seeded random init if omitted.")
    teacher_overrides: tuple[tuple[str, Any], ...] = setting(
        (), flag="--teacher-option", help="Override a setting of --teacher (repeatable), e.g. img_size=32.")
    batch_size: int = setting(16, min=1, help="Windows per forward pass.")
    device: str = setting("auto", check=check_device_name, help="auto, cpu, cuda or cuda:K for the torch models "
                                                               "(--onnx runs on onnxruntime's CPU provider).")
    decode_threads: int = setting(1, min=0, help="ffmpeg decoding threads (0 = one per core).")
    top_k: int = setting(5, min=1, help="Classes per head written for each window.")
    progress: bool = setting(True, help="Show a progress bar (clips/s, ETA) on stderr.")

    def __post_init__(self) -> None:
        """Check every setting, then that one student is named and teacher options come with --teacher."""
        check_settings(self)
        if (self.run is None) == (self.onnx is None):
            raise ConfigError("--run / --onnx: give exactly one student (a run folder or an exported ONNX file)")
        if self.run is None and self.weights != "last":
            raise ConfigError("--weights: picks a checkpoint of --run; an --onnx file holds its weights")
        if self.teacher is None and (self.checkpoint or self.teacher_overrides):
            raise ConfigError("--checkpoint / --teacher-option: they describe --teacher, which is not given")
        if self.imu_format is not None and not self.imu:
            raise ConfigError("--imu-format: no --imu file given")
        if self.video_id is not None and not self.annotations:
            raise ConfigError("--video-id: names the video in --annotations, which are not given")


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What to export (a cache to HDF5, or a student run to ONNX / TorchScript) and how to check it."""

    source: str = setting(argument=True, path="dir", help="A cache (with --hdf5) or a student run folder (with "
                                                         "--onnx / --torchscript).")
    hdf5: str | None = setting(None, path="new-file", help="HDF5 file to write from a cache: the same arrays (JPEG "
                                                          "frames decoded to uint8) and attributes.")
    onnx: str | None = setting(None, path="new-file", help="ONNX file to write from a run: uint8 frames + IMU in, "
                                                          "logits per head out, dynamic batch.")
    torchscript: str | None = setting(None, path="new-file", help="TorchScript file to write from a run (same "
                                                                 "inputs and outputs).")
    weights: str = setting("last", choices=WEIGHTS, help="Which checkpoint of the run: last.pt or best.pt.")
    cache: str | None = setting(None, path="dir", default_text="the run's cache",
                                help="Cache whose clips check the exported model against the torch student.")
    check_clips: int = setting(64, min=1, help="Cache clips the check runs (in batches of 16).")
    skip_verify: bool = setting(False, help="Export a cache that fails `egocache verify` (with a warning).")

    def __post_init__(self) -> None:
        """Check every setting, then that the outputs asked for fit one kind of source."""
        check_settings(self)
        model = self.onnx is not None or self.torchscript is not None
        if (self.hdf5 is not None) == model:
            raise ConfigError("--hdf5 / --onnx / --torchscript: give --hdf5 (for a cache) or --onnx and/or "
                              "--torchscript (for a student run)")
        if self.hdf5 is not None and self.cache is not None:
            raise ConfigError("--cache: checks an exported student; --hdf5 exports the cache SOURCE itself")


def source_kind(path: str) -> str | None:
    """What `egocache export SOURCE` is: "cache" (zarr.json with egocache attributes), "run" (config.json
    and a checkpoint), or None."""
    p = Path(path)
    try:
        attrs = json.loads((p / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
        if isinstance(attrs, dict) and attrs.get("format") == "egocache":
            return "cache"
    except (OSError, ValueError, AttributeError):
        pass
    if (p / "config.json").is_file() and any((p / f).is_file() for f in ("last.pt", "best.pt")):
        return "run"
    return None
