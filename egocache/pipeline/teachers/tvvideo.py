"""torchvision's video classifiers as teachers: MViT-v2-S, R(2+1)D-18, S3D and Swin3D-T
(torchvision.models.video; code BSD-3-Clause, Kinetics-400 weights under their own terms).

Registered only where `import torchvision` works (`available()`); elsewhere they are not listed, and
asking for one says that torchvision is not importable. This module itself imports torchvision only
inside `TorchvisionVideo.__init__`, so it loads without it.

Facts used (torchvision/models/video/{mvit,resnet,s3d,swin_transformer}.py, the weights' `transforms`
and `_docs`): every model takes (B, C, T, H, W) RGB clips normalised with its weights' mean/std;
- r2plus1d_18: VideoResNet, `fc` = Linear(512, classes) after avgpool + flatten; Kinetics mean/std
  (0.43216, 0.394666, 0.37645) / (0.22803, 0.22145, 0.216989); crop 112; clip_len 16 at 15 fps.
- mvit_v2_s: `head` = Sequential(Dropout, Linear(768, classes)) on the CLS token after `norm`; mean
  0.45, std 0.225; built for exactly 16 frames at 224 px (relative position tables); 16 at 7.5 fps.
- s3d: `classifier` = Sequential(Dropout, Conv3d(1024, classes, 1)) after avgpool (2, 7, 7), then a
  mean over (T, H, W); the 1x1 conv commutes with that mean, so the feature is the 1024-d mean of the
  pooled map; Kinetics mean/std; crop 224 (min 224 px, 14 frames); clip_len 128 at 15 fps.
- swin3d_t: `head` = Linear(768, classes) after norm, avgpool and flatten; ImageNet mean/std
  (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225); crop 224; clip_len 32 at 15 fps.
The feature is what the classifier would read (the classifier replaced by nn.Identity); the heads are
new Linear layers sized for the dataset's classes. Frame stride = 30 fps / the weights' frame rate.
`pretrained=True` builds with weights="DEFAULT" (torchvision downloads Kinetics-400 weights into the
torch hub cache); otherwise a random init, or a checkpoint of ours loaded strictly.
Not run on this project's CI machine, which has no importable torchvision; see docs/internals.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from egocache.errors import CheckpointError, EgocacheError
from egocache.pipeline.teachers.base import Teacher, TeacherSpec

KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LICENCE = "BSD-3-Clause (torchvision code); Kinetics-400 weights: see torchvision"


def import_problem() -> str | None:
    """Why torchvision's video models cannot be built here ("ModuleNotFoundError: ..."), None if they can."""
    try:
        import torchvision.models.video  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - not installed, or built for another torch: either way not usable
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def available() -> bool:
    """Whether torchvision's video models can be built here."""
    return import_problem() is None


@dataclass(frozen=True)
class Arch:
    """One torchvision video model: builder name, classifier attribute, feature size, weights' facts."""

    builder: str
    classifier: str
    feature_dim: int
    num_frames: int
    frame_stride: int
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fixed_size: bool = False      # built for exactly num_frames x img_size (MViT's position tables)
    min_frames: int = 1
    min_size: int = 1


ARCHS: dict[str, Arch] = {
    "r2plus1d-18": Arch("r2plus1d_18", "fc", 512, 16, 2, 112, KINETICS_MEAN, KINETICS_STD),
    "mvit-v2-s": Arch("mvit_v2_s", "head", 768, 16, 4, 224, (0.45, 0.45, 0.45), (0.225, 0.225, 0.225),
                      fixed_size=True),
    "s3d": Arch("s3d", "classifier", 1024, 128, 2, 224, KINETICS_MEAN, KINETICS_STD, min_frames=14, min_size=224),
    "swin3d-t": Arch("swin3d_t", "head", 768, 32, 2, 224, IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass(frozen=True)
class TorchvisionConfig:
    """The clip geometry and head of a torchvision video teacher (its architecture is the builder's)."""

    arch: str                     # key of ARCHS (not an override: each architecture is its own teacher)
    num_frames: int
    img_size: int
    pretrained: bool = False      # build with the Kinetics-400 weights (downloaded by torchvision)
    head_drop_rate: float = 0.0

    @property
    def feature_dim(self) -> int:
        """Size of the clip feature (the classifier's input)."""
        return ARCHS[self.arch].feature_dim

    def check(self) -> None:
        """Raise EgocacheError naming each setting the architecture cannot take."""
        a, problems = ARCHS[self.arch], []
        if a.fixed_size and (self.num_frames, self.img_size) != (a.num_frames, a.img_size):
            problems.append(f"built for exactly {a.num_frames} frames at {a.img_size} px, got "
                            f"num_frames={self.num_frames} img_size={self.img_size}")
        if self.num_frames < a.min_frames:
            problems.append(f"num_frames={self.num_frames} is below its minimum {a.min_frames}")
        if self.img_size < a.min_size:
            problems.append(f"img_size={self.img_size} is below its minimum {a.min_size}")
        if not 0.0 <= self.head_drop_rate < 1.0:
            problems.append(f"head_drop_rate={self.head_drop_rate} is not in [0, 1)")
        if problems:
            raise EgocacheError(f"{self.arch} config: " + "; ".join(problems))


class _MeanOverTime(nn.Module):
    """S3D's tail without its classifier: the pooled map averaged over (T, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


class TorchvisionVideo(Teacher):
    """A torchvision video backbone with its classifier removed, and one Linear head per dataset head."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        cfg = TorchvisionConfig(**spec.config)
        cfg.check()
        try:
            from torchvision.models import video
        except Exception as exc:
            raise EgocacheError(f"teacher {spec.name}: torchvision is not importable here "
                                f"({type(exc).__name__}: {exc})") from exc
        arch = ARCHS[cfg.arch]
        self.spec, self.cfg = spec, cfg
        self.backbone = getattr(video, arch.builder)(weights="DEFAULT" if cfg.pretrained else None)
        # The classifier goes; S3D's classifier sits between avgpool and its mean over (T, H, W), so
        # what replaces it keeps that mean's input 5-D and the forward's own mean yields (B, 1024).
        setattr(self.backbone, arch.classifier, nn.Identity())
        self.head_drop = nn.Dropout(cfg.head_drop_rate)
        self.heads = nn.ModuleDict({h: nn.Linear(arch.feature_dim, c) for h, c in spec.heads.items()})
        for head in self.heads.values():
            nn.init.trunc_normal_(head.weight, std=0.02)
            nn.init.zeros_(head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,T,S,S) preprocessed clips -> (B, feature_dim): the input the removed classifier read."""
        spec = self.spec
        expected = (3, spec.num_frames, spec.img_size, spec.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{spec.name}: expected input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return self.backbone(x)

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) features -> {head name: logits}."""
        feats = self.head_drop(feats)
        return {name: head(feats) for name, head in self.heads.items()}


def heads_from_state(state: dict[str, torch.Tensor], default_heads: dict[str, int]) -> dict[str, int]:
    """Class counts from a state dict's `heads.<name>.weight` tensors."""
    heads = {k[len("heads."):-len(".weight")]: int(v.shape[0]) for k, v in state.items()
             if k.startswith("heads.") and k.endswith(".weight")}
    if not heads:
        raise CheckpointError("no classifier weights (heads.<name>.weight) in the state")
    return heads


def no_official_overrides(cfg_yaml: str) -> dict[str, Any]:
    """torchvision checkpoints carry no slowfast YAML cfg; nothing to read."""
    return {}


def default_spec(name: str) -> tuple[TeacherSpec, TorchvisionConfig]:
    """The registered spec and config of `name` (a key of ARCHS), with EPIC-100's heads."""
    a = ARCHS[name]
    cfg = TorchvisionConfig(arch=name, num_frames=a.num_frames, img_size=a.img_size)
    spec = TeacherSpec(name=name, tag="kinetics400", num_frames=a.num_frames, frame_stride=a.frame_stride,
                       img_size=a.img_size, mean=a.mean, std=a.std, bgr=False, feature_dim=a.feature_dim,
                       heads={"verb": 97, "noun": 300}, config=dataclasses.asdict(cfg),
                       source_url=f"torchvision.models.video.{a.builder}", licence=LICENCE)
    return spec, cfg
