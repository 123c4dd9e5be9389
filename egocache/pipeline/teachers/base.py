"""What every teacher shares: the TeacherSpec metadata and the Teacher interface.

A teacher's spec says what its weights expect (clip length and stride, input size, mean/std, channel
order, heads and class counts, source and licence) apart from the architecture's hyper-parameters,
which it carries as a plain dict in `config`. The extraction pass and the cache's attributes read the
spec; nothing downstream needs the model's code (timm's pretrained-config habit).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# A teacher's input: "rgb" = the clip's T uint8 frames (B, T, H, W, 3), which flow-tiny turns into flow
# in its preprocess; "audio" = the clip's log spectrogram (B, FREQ_BINS, frames) float16, as the cache
# stores it (pipeline/audio.py), so an audio teacher sees exactly the cached audio.
INPUTS = ("rgb", "audio")


@dataclass(frozen=True)
class TeacherSpec:
    """What a teacher's weights expect and produce; `config` holds its architecture hyper-parameters."""

    name: str                              # registry name, e.g. "mformer"
    tag: str                               # which weights the defaults describe, e.g. "ek100"
    num_frames: int                        # T frames per clip
    frame_stride: int                      # native frames between teacher frames at 30 fps
    img_size: int                          # square input side S in pixels
    mean: tuple[float, float, float]       # per channel, in the model's channel order, on [0, 1]
    std: tuple[float, float, float]
    bgr: bool                              # the weights expect BGR (preprocess swaps RGB -> BGR)
    feature_dim: int                       # size of forward_features' output
    heads: dict[str, int]                  # head name -> number of classes, in output order
    config: dict[str, Any] = field(default_factory=dict)
    source_url: str = ""
    licence: str = ""
    aux: dict[str, int] = field(default_factory=dict)   # auxiliary output name -> per-clip vector size
    input: str = "rgb"     # what preprocess takes: "rgb" uint8 frames, or "audio" log spectrograms (INPUTS)
    aux_video: dict[str, str] = field(default_factory=dict)  # per-video output -> the aux output it averages
                                                             # over each video's clips (cache/videos.py)

    def __post_init__(self) -> None:
        """Refuse an unknown input kind and per-video outputs of undeclared aux outputs."""
        if self.input not in INPUTS:
            raise ValueError(f"teacher {self.name}: input {self.input!r} is not one of {', '.join(INPUTS)}")
        unknown = sorted(src for src in self.aux_video.values() if src not in self.aux)
        if unknown or set(self.aux_video) & set(self.aux):
            raise ValueError(f"teacher {self.name}: per-video outputs {self.aux_video} must average its aux "
                             f"outputs ({', '.join(self.aux) or 'none'}) under new names")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (tuples become lists) for cache attributes and checkpoints."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        out["heads"], out["aux"], out["aux_video"] = dict(self.heads), dict(self.aux), dict(self.aux_video)
        return out


class Teacher(nn.Module, abc.ABC):
    """A video model with the shared teacher interface: preprocess, forward_features, forward_head.

    A teacher whose input is not normalised RGB (optical flow from the frames, or spec.input "audio")
    overrides `preprocess` and `input_shape`; one with auxiliary outputs (spec.aux) overrides `forward_aux`.
    """

    spec: TeacherSpec

    def input_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed clip, what forward_features takes per sample: (3, T, S, S) here."""
        return (3, self.spec.num_frames, self.spec.img_size, self.spec.img_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B,T,H,W,3) RGB frames -> normalised float (B,3,T,S,S) in the weights' channel order.

        Frames whose side is not S are resized so the short side is S (bilinear, as the official
        test-time transform) and centre-cropped; then RGB->BGR if the spec says so, /255, (x-mean)/std.
        """
        spec = self.spec
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"{spec.name}: expected uint8 frames (B,T,H,W,3), got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        b, t, h, w, _ = frames.shape
        if t != spec.num_frames:
            raise ValueError(f"{spec.name}: expected {spec.num_frames} frames per clip, got {t}")
        x = frames.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
        s = spec.img_size
        if (h, w) != (s, s):
            x = _resize_centre_crop(x, s)
        if spec.bgr:
            x = x.flip(1)
        mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1) * 255.0
        x = (x - mean) / std
        return x.reshape(b, t, 3, s, s).permute(0, 2, 1, 3, 4).contiguous()

    @abc.abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed clips (B,3,T,S,S) -> clip features (B, feature_dim)."""

    @abc.abstractmethod
    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Clip features -> {head name: logits (B, classes)}; never softmax outputs."""

    def forward_aux(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Clip features -> {aux name: (B, spec.aux[name]) float}; none unless the spec declares some."""
        return {}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Preprocessed clips -> (features, {head: logits})."""
        feats = self.forward_features(x)
        return feats, self.forward_head(feats)


def _resize_centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (N,C,H,W) so the short side is `size`, then centre-crop.

    Same arithmetic as the official test transform (slowfast/datasets/transform.py:
    random_short_side_scale_jitter with min=max=size, uniform_crop with spatial_idx=1): long side
    floor(long/short*size), bilinear without antialias, crop offset ceil((side-size)/2).
    """
    h, w = x.shape[-2:]
    if w <= h:
        new_h, new_w = math.floor(h / w * size), size
    else:
        new_h, new_w = size, math.floor(w / h * size)
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = math.ceil((new_h - size) / 2), math.ceil((new_w - size) / 2)
    return x[..., top:top + size, left:left + size]


def run_teacher(model: Teacher, clips: np.ndarray, device: str | torch.device, batch_size: int
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Teacher features (n, D) and logits {head: (n, C)} float32 for the clips' inputs: uint8 frames
    (n, T, S, S, 3), or float16 spectrograms (n, F, M) for an audio teacher (spec.input).

    Inference as extraction runs it (eval mode, bf16 autocast on CUDA, float32 on CPU); teacher
    fine-tuning evaluates with it too, so its figures are those of the cached outputs.
    """
    feats, logits, _ = _run(model, clips, device, batch_size, with_aux=False)
    return feats, logits


def run_teacher_aux(model: Teacher, clips: np.ndarray, device: str | torch.device, batch_size: int
                    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """As run_teacher, plus the auxiliary outputs {name: (n, spec.aux[name])} float32 (forward_aux)."""
    return _run(model, clips, device, batch_size, with_aux=True)


def _run(model: Teacher, clips: np.ndarray, device: str | torch.device, batch_size: int, *, with_aux: bool
         ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(features, logits, aux) of `clips` batch by batch; aux is {} unless `with_aux`."""
    model.eval()
    spec = model.spec
    if len(clips) == 0:
        return (np.zeros((0, spec.feature_dim), np.float32),
                {h: np.zeros((0, c), np.float32) for h, c in spec.heads.items()},
                {a: np.zeros((0, c), np.float32) for a, c in spec.aux.items()} if with_aux else {})
    feats, logits, aux = [], [], []
    dev = torch.device(device)
    with torch.inference_mode():
        for lo in range(0, len(clips), batch_size):
            x = torch.from_numpy(clips[lo:lo + batch_size]).to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                f, out = model(model.preprocess(x))
                extra = model.forward_aux(f) if with_aux else {}
            feats.append(f.float().cpu().numpy())
            logits.append({h: v.float().cpu().numpy() for h, v in out.items()})
            aux.append({a: v.float().cpu().numpy() for a, v in extra.items()})
    return (np.concatenate(feats), {h: np.concatenate([b[h] for b in logits]) for h in logits[0]},
            {a: np.concatenate([b[a] for b in aux]) for a in aux[0]})
