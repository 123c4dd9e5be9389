"""flow-tiny: a small 3-D CNN over the clip's dense optical flow, a motion-modality teacher (issue 13).

Input: the same uint8 RGB teacher frames every teacher takes (B, T, S, S, 3). `preprocess` turns them
into T-1 Farneback flow fields (pipeline/flow.py: grayscale, consecutive pairs, clipped to
+-clip_px pixels and scaled to [-1, 1]), laid out (B, 2, T-1, S, S) (dx, dy). So extraction and
train-teacher feed it unchanged and the flow is computed during extraction, on the CPU with OpenCV,
next to the decoder; the tensor then goes to the model's device. mean/std/bgr of the spec are not
used (flow is computed from grayscale and normalised by clip_px).

Network: `depth` stages of two 3x3x3 Conv3d + BatchNorm + ReLU (the first halves the space, time is
kept; widths width, 2*width, ...), global average pool, feature = tanh(fc) (feature_dim), then one
Linear head per dataset head (convnet.py). forward_features takes the flow, so FLOP counts (meta
device, teacher_stats) measure the network; Farneback's own cost is not in them.

train-teacher's random zoom-crop resizes the flow fields like images, without rescaling the vectors:
a mild magnitude jitter (at most 1/0.75), not the flow of the zoomed frames.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from egocache.errors import EgocacheError
from egocache.pipeline.flow import FLOW_CLIP_PX, clip_flow
from egocache.pipeline.teachers import convnet
from egocache.pipeline.teachers.base import TeacherSpec, _resize_centre_crop


@dataclass(frozen=True)
class FlowConfig:
    """Architecture hyper-parameters of flow-tiny (every field a train-teacher --teacher-option)."""

    img_size: int = 64             # frames are resized/cropped to S before the flow is computed
    num_frames: int = 8            # T RGB frames -> T-1 flow fields
    width: int = 16                # channels of the first stage, doubled at each next one
    depth: int = 3                 # stages (each halves the spatial size)
    feature_dim: int = 128         # clip feature size
    clip_px: float = FLOW_CLIP_PX  # flow components are clipped to +-clip_px pixels, then / clip_px
    head_drop_rate: float = 0.0    # dropout before the heads

    def check(self) -> None:
        """Raise EgocacheError naming each inconsistent setting."""
        problems = []
        if self.num_frames < 2:
            problems.append(f"num_frames={self.num_frames}: flow needs at least 2 frames")
        for key in ("img_size", "width", "depth", "feature_dim"):
            if getattr(self, key) < 1:
                problems.append(f"{key}={getattr(self, key)} must be >= 1")
        if self.img_size >= 1 and self.depth >= 1 and self.img_size < 2 ** self.depth:
            problems.append(f"img_size={self.img_size} is smaller than 2**depth={2 ** self.depth}")
        if self.clip_px <= 0:
            problems.append(f"clip_px={self.clip_px} must be > 0")
        if not 0.0 <= self.head_drop_rate < 1.0:
            problems.append(f"head_drop_rate={self.head_drop_rate} is not in [0, 1)")
        if problems:
            raise EgocacheError("flow-tiny config: " + "; ".join(problems))


def frames_at_size(name: str, frames: torch.Tensor, num_frames: int, size: int) -> np.ndarray:
    """uint8 (B,T,H,W,3) frames checked and brought to (B,T,S,S,3) uint8 on the CPU (base resize-crop)."""
    if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"{name}: expected uint8 frames (B,T,H,W,3), got {frames.dtype} {tuple(frames.shape)}")
    b, t, h, w, _ = frames.shape
    if t != num_frames:
        raise ValueError(f"{name}: expected {num_frames} frames per clip, got {t}")
    frames = frames.cpu()
    if (h, w) != (size, size):
        x = _resize_centre_crop(frames.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float(), size)
        frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(b, t, size, size, 3)
    return frames.numpy()


class FlowTeacher(convnet.ConvTeacher):
    """3-D CNN over Farneback flow; feature tanh(fc(pool)), logits per head."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        cfg = FlowConfig(**spec.config)
        self.build(spec, cfg, 3, 2)

    def input_shape(self) -> tuple[int, ...]:
        """(2, T-1, S, S): dx and dy of the T-1 consecutive frame pairs."""
        return (2, self.cfg.num_frames - 1, self.cfg.img_size, self.cfg.img_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (B,T,H,W,3) -> normalised flow float32 (B,2,T-1,S,S) on the frames' device."""
        cfg = self.cfg
        rgb = frames_at_size(self.spec.name, frames, cfg.num_frames, cfg.img_size)
        return torch.from_numpy(clip_flow(rgb, cfg.clip_px)).to(frames.device)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,2,T-1,S,S) flow -> (B, feature_dim) tanh clip features."""
        expected = self.input_shape()
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.spec.name}: expected flow (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        return self.feature(self.stages(x))


TINY_CONFIG = FlowConfig()
TINY_SPEC = TeacherSpec(name="flow-tiny", tag="scratch", num_frames=TINY_CONFIG.num_frames, frame_stride=8,
                        img_size=TINY_CONFIG.img_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False,
                        feature_dim=TINY_CONFIG.feature_dim, heads={"verb": 97, "noun": 300},
                        config=dataclasses.asdict(TINY_CONFIG))
