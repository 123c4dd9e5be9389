"""Run a trained student on frames and IMU windows: the Python API for online use, which `egocache predict` uses.

    from egocache.deploy import StudentRunner, OnnxRunner
    runner = StudentRunner.from_run("runs/ed1")     # torch; or OnnxRunner("ed1.onnx") (onnxruntime)
    probs = runner.predict(frames, imu)             # uint8 (B,N,H,W,3) RGB, float (B,422,6) -> {head: (B,C)}
    probs = runner.predict(frames, audio=spec)      # a listentolook student: log spectrograms (B,201,211)
    runner.inputs.heads["verb"][int(probs["verb"][0].argmax())]

What a clip is comes from `runner.inputs` (student/inputs.py, saved with the run): N frames at
`inputs.positions` of a clip of `inputs.clip_seconds`, and the IMU window of `inputs.imu_window` samples
at `inputs.imu_rate_hz` centred on the clip (accelerometer xyz, gyroscope xyz), or for an audio student
the clip window's log spectrogram (`pipeline.audio.clip_spectrogram`, settings in `inputs.audio`). Frames whose side is not
`inputs.frame_size` are scaled (short side) and centre-cropped here as extraction does. The model itself
(`DeployModel`, also what `egocache export` writes) takes uint8 frames and the raw window: it scales and
standardises the frames, mean-centres and standardises the IMU.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from egocache.errors import CheckpointError, ConfigError, DependencyError
from egocache.student.inputs import StudentInputs, check_deployable, read_run_inputs

ONNX_METADATA_KEY = "egocache.inputs"
DEPLOY_EXTRA = "pip install 'egocache[deploy]' (onnx, onnxruntime, onnxscript)"


def require(module: str, what: str) -> Any:
    """Import optional dependency `module`; DependencyError naming `what` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(f"{what}: needs the Python package {module}, which is not installed; "
                              f"{DEPLOY_EXTRA}") from None


class DeployModel(nn.Module):
    """A student as deployed: forward(uint8 frames (B,N,S,S,3), sensor) -> logits per head (tuple).

    The sensor is the raw IMU window (B,T,6), or for an audio student (listentolook) the clip's log
    spectrogram (B,F,M) as the cache stores it (float16 values, given as float32). The frames are scaled
    and ImageNet-standardised by the student's image encoder; the IMU window is mean-centred per
    channel (as extraction stores it) and standardised by the IMU encoder's buffers, the spectrogram by
    the audio encoder's. Vision-only variants ignore the IMU input, which every exported model still takes.
    """

    def __init__(self, student: nn.Module, heads: list[str]) -> None:
        super().__init__()
        self.student = student
        self.heads = list(heads)
        self.audio = getattr(student, "sensor_key", None) == "audio"

    def forward(self, frames: torch.Tensor, sensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits of every head, in `self.heads` order."""
        if self.audio:
            batch = {"frames": frames, "audio": sensor}
        else:
            batch = {"frames": frames, "imu": sensor - sensor.mean(dim=1, keepdim=True)}
        logits = self.student(batch)["logits"]
        return tuple(logits[h] for h in self.heads)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B,C) logits, float32."""
    x = logits.astype(np.float64)
    x = np.exp(x - x.max(axis=1, keepdims=True))
    return (x / x.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_frames(frames: np.ndarray, inputs: StudentInputs) -> np.ndarray:
    """uint8 (B,N,H,W,3) frames at the student's size: short side scaled, centre crop, as extraction decodes."""
    size = inputs.frame_size
    if frames.shape[2:4] == (size, size):
        return frames
    from egocache.pipeline.frames import resize_frames
    from egocache.pipeline.rgb_frames import scale_crop

    decode = max(inputs.teacher_size, size)
    flat = np.stack([scale_crop(f, decode) for f in frames.reshape(-1, *frames.shape[2:])])
    return resize_frames(flat, size).reshape(*frames.shape[:2], size, size, 3)


class Runner(ABC):
    """What both runners share: input checks, logits -> probabilities. Subclasses implement `_logits`."""

    inputs: StudentInputs

    @abstractmethod
    def _logits(self, frames: np.ndarray, sensor: np.ndarray) -> list[np.ndarray]:
        """Logits per head (inputs.heads order) of checked inputs (sensor: IMU windows or spectrograms)."""

    def check(self, frames: Any, imu: Any = None, audio: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(frames uint8 (B,N,S,S,3), the model's second input float32: IMU (B,T,6) or, for an audio
        student, log spectrograms (B,F,M)) ready for the model; ConfigError naming the argument."""
        inp = self.inputs
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[1] != inp.frames or frames.shape[-1] != 3:
            raise ConfigError(f"frames: expected uint8 RGB (B, {inp.frames}, H, W, 3) for this N={inp.frames} "
                              f"student, got {frames.dtype} {frames.shape}")
        frames = np.ascontiguousarray(fit_frames(frames, inp))
        want = (len(frames), *inp.sensor_shape)
        if inp.needs_audio:
            if audio is None:
                raise ConfigError(f"audio: student variant {inp.variant} needs the clips' log spectrograms {want} "
                                  f"(16 kHz mono, STFT {inp.audio.get('n_fft')}/{inp.audio.get('hop')}, as "
                                  "pipeline.audio.clip_spectrogram makes them)")
            given, name = audio, "audio"
        else:
            if audio is not None:
                raise ConfigError(f"audio: student variant {inp.variant} reads no audio")
            if imu is None:
                if inp.needs_imu:
                    raise ConfigError(f"imu: student variant {inp.variant} needs the IMU window {want}")
                return frames, np.zeros(want, np.float32)
            given, name = imu, "imu"
        sensor = np.ascontiguousarray(np.asarray(given, dtype=np.float32))
        if sensor.shape != want:
            what = ("log spectrogram" if inp.needs_audio else
                    f"window of {inp.imu_window} samples at {inp.imu_rate_hz:g} Hz, channels {', '.join(inp.imu_channels)}")
            raise ConfigError(f"{name}: expected float {want} ({what}), got {sensor.shape}")
        return frames, sensor

    def logits(self, frames: Any, imu: Any = None, audio: Any = None) -> dict[str, np.ndarray]:
        """{head: (B,C) float32 logits} for B clips; `imu` may be None for vision-only variants, `audio`
        is the audio student's input."""
        frames, sensor = self.check(frames, imu, audio)
        return dict(zip(self.inputs.heads, self._logits(frames, sensor)))

    def predict(self, frames: Any, imu: Any = None, audio: Any = None) -> dict[str, np.ndarray]:
        """{head: (B,C) float32 class probabilities} for B clips (softmax of `logits`)."""
        return {h: softmax(v) for h, v in self.logits(frames, imu, audio).items()}


class StudentRunner(Runner):
    """A torch student in eval mode on one device."""

    def __init__(self, student: nn.Module, inputs: StudentInputs, *, device: str | torch.device = "cpu",
                 source: str = "") -> None:
        """Wrap `student` (a built Student) described by `inputs`; `source` says where both came from."""
        heads = dict(getattr(student, "head_classes", {}))
        want = {h: len(names) for h, names in inputs.heads.items()}
        if heads != want or getattr(student, "frames", None) != inputs.frames:
            raise CheckpointError(f"{source or 'student'}: the student (N={getattr(student, 'frames', '?')}, "
                                  f"heads {heads}) does not match its inputs (N={inputs.frames}, heads {want})")
        self.inputs, self.source = inputs, source
        self.device = torch.device(device)
        self.model = DeployModel(student, list(inputs.heads)).to(self.device).eval()

    @classmethod
    def from_run(cls, run: str | os.PathLike[str], *, weights: str = "last", device: str = "auto"
                 ) -> "StudentRunner":
        """The student of run folder `run` (RUN/last.pt or RUN/best.pt) with the inputs saved beside it."""
        from egocache.core.device import resolve_device
        from egocache.student.checkpoint import student_from_checkpoint

        ckpt = Path(run) / f"{weights}.pt"
        if not ckpt.is_file():
            raise CheckpointError(f"{ckpt}: no such checkpoint in the run folder"
                                  + (" (best.pt is written only when the run has validation clips)"
                                     if weights == "best" else ""))
        inputs, where = read_run_inputs(run)
        check_deployable(inputs, str(run))
        student, _ = student_from_checkpoint(ckpt)
        return cls(student, inputs, device=resolve_device(device), source=f"{ckpt}; inputs from {where}")

    def _logits(self, frames: np.ndarray, sensor: np.ndarray) -> list[np.ndarray]:
        """Run the torch model without autograd."""
        with torch.inference_mode():
            out = self.model(torch.from_numpy(frames).to(self.device), torch.from_numpy(sensor).to(self.device))
        return [o.float().cpu().numpy() for o in out]


class OnnxRunner(Runner):
    """An exported student (`egocache export RUN --onnx`) run by onnxruntime on the CPU."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        """Open the ONNX file at `path`; `threads` sets onnxruntime's intra-op threads (None: its default)."""
        ort = require("onnxruntime", "--onnx")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(os.fspath(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise CheckpointError(f"{path}: onnxruntime cannot load it ({str(exc).splitlines()[0]})") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in meta:
            raise CheckpointError(f"{path}: not exported by egocache (no {ONNX_METADATA_KEY} metadata); "
                                  "export it with `egocache export RUN --onnx`")
        import json

        self.inputs = StudentInputs.from_dict(json.loads(meta[ONNX_METADATA_KEY]), str(path))
        self.source = os.fspath(path)
        self.outputs = [f"logits_{h}" for h in self.inputs.heads]

    def _logits(self, frames: np.ndarray, sensor: np.ndarray) -> list[np.ndarray]:
        """Run the ONNX session (inputs "frames" and "imu", or "audio" for an audio student)."""
        return self.session.run(self.outputs, {"frames": frames, self.inputs.sensor: sensor})
