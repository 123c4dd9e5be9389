"""EgoDistill students (paper §3.3-3.4, App. C): image encoder f_I (+GRU), IMU encoder f_M, fusion Π,
one linear classifier per cached head, and the IMU predictor h of the self-supervised stage.

The ListenToLook student has the audio encoder f_A (audio_encoder.py) where EgoDistill has f_M: its
"sensor" input is the clip's log spectrogram (B, F, T) under the batch key "audio" instead of the IMU
window under "imu"; everything else (Π, h, heads, losses) is the same code.

The variants are declared in variants.py. "visonly-distill" has no IMU branch and no fusion, but its
512-d image feature must still reach the teacher's feature size for the L1 term: a projection MLP of
the same shape as Π (512 -> 1024 -> ReLU -> feature_dim) does that, so the comparison with egodistill
isolates the IMU input rather than the depth of the head.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from egocache.student.audio_encoder import AudioEncoder
from egocache.student.imu_encoder import ImuEncoder
from egocache.student.resnet import FEATURE_DIM, ResNet18, load_image_weights
from egocache.student.variants import VariantSpec, variant_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HIDDEN = 1024


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two fully connected layers with a ReLU between (Π, the vis-only projection, and h)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


class ImageEncoder(nn.Module):
    """f_I per frame: uint8 (B,N,H,W,3) RGB -> /255 -> ImageNet mean/std -> ResNet-18 -> (B,N,512)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResNet18()
        self.backbone.fc.requires_grad_(False)  # kept for strict ImageNet loading only; never trained
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (M,H,W,3) RGB -> float (M,3,H,W) scaled to [0,1] and ImageNet-standardised."""
        if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (M, H, W, 3) RGB, got {frames.dtype} "
                             f"{tuple(frames.shape)}")
        x = frames.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B,N,H,W,3) -> (B,N,512) per-frame features."""
        if frames.dim() != 5:
            raise ValueError(f"frames must be (B, N, H, W, 3), got {tuple(frames.shape)}")
        b, n = frames.shape[:2]
        feats = self.backbone(self.normalize(frames.reshape(b * n, *frames.shape[2:])))
        return feats.view(b, n, FEATURE_DIM)


class Student(nn.Module):
    """An EgoDistill student; forward(batch) -> {"feature": (B,feature_dim), "logits": {head: (B,C)}}."""

    def __init__(self, spec: VariantSpec, *, frames: int, feature_dim: int, heads: dict[str, int],
                 imu_out_channels: int = 128, imu_dropout: float = 0.1,
                 audio_shape: tuple[int, int] | None = None, aux: dict[str, int] | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.frames = frames
        self.feature_dim = feature_dim
        self.head_classes = dict(heads)
        self.sensor_key = spec.sensor
        self.audio_shape = tuple(int(v) for v in audio_shape) if spec.audio and audio_shape else None
        if spec.audio and self.audio_shape is None:
            raise ValueError(f"student variant {spec.name!r} needs audio_shape (frequency bins, frames)")
        self.config = dict(variant=spec.name, frames=frames, feature_dim=feature_dim,
                           heads=dict(heads), imu_out_channels=imu_out_channels,
                           imu_dropout=imu_dropout, **({"aux": dict(aux)} if aux else {}))
        if self.audio_shape is not None:
            self.config["audio_shape"] = list(self.audio_shape)
        self.image_encoder = ImageEncoder()
        self.gru = nn.GRU(FEATURE_DIM, FEATURE_DIM, num_layers=1, batch_first=True) \
            if frames > 1 else None
        self.imu_encoder: ImuEncoder | None = None
        self.audio_encoder: AudioEncoder | None = None
        self.fusion: nn.Sequential | None = None
        self.projection: nn.Sequential | None = None
        self.predictor: nn.Sequential | None = None
        if spec.imu:
            self.imu_encoder = ImuEncoder(out_channels=imu_out_channels, dropout=imu_dropout)
        elif spec.audio:
            assert self.audio_shape is not None
            self.audio_encoder = AudioEncoder(freq_bins=self.audio_shape[0], out_channels=imu_out_channels,
                                              dropout=imu_dropout)
        sensor = self.sensor_encoder
        if sensor is not None:
            self.fusion = _mlp(FEATURE_DIM + sensor.out_dim, HIDDEN, feature_dim)
            self.predictor = _mlp(2 * FEATURE_DIM, HIDDEN, sensor.out_dim)
        else:
            self.projection = _mlp(FEATURE_DIM, HIDDEN, feature_dim)
        self.classifiers = nn.ModuleDict({h: nn.Linear(feature_dim, c) for h, c in heads.items()})
        # auxiliary distillation targets (train-student --aux): one linear head each on the feature
        self.aux_heads = nn.ModuleDict({a: nn.Linear(feature_dim, int(d)) for a, d in (aux or {}).items()})
        self.image_frozen = False

    @property
    def sensor_encoder(self) -> ImuEncoder | AudioEncoder | None:
        """f_M (IMU variants), f_A (listentolook) or None (vis-only variants)."""
        return self.imu_encoder if self.imu_encoder is not None else self.audio_encoder

    @property
    def distill(self) -> bool:
        """True when the variant is trained with KD + L1 (+ CE), False for CE only."""
        return self.spec.distill

    def freeze_image_encoder(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the ResNet: no gradients, BatchNorm kept in eval mode under train()."""
        self.image_frozen = frozen
        self.image_encoder.backbone.requires_grad_(not frozen)
        self.image_encoder.backbone.fc.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Student:
        """nn.Module.train, except that a frozen image encoder stays in eval mode."""
        super().train(mode)
        if self.image_frozen:
            self.image_encoder.eval()
        return self

    def image_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B,N,H,W,3) -> (B,N,512) per-frame ResNet features (no graph when frozen)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.image_frozen):
            return self.image_encoder(frames)

    def aggregate(self, img_feats: torch.Tensor) -> torch.Tensor:
        """(B,N,512) -> (B,512) z_I: the GRU's last hidden state for N>1, the frame's feature for N=1."""
        if img_feats.dim() != 3 or img_feats.shape[1:] != (self.frames, FEATURE_DIM):
            raise ValueError(f"image features must be (B, {self.frames}, {FEATURE_DIM}) for this "
                             f"{self.frames}-frame student, got {tuple(img_feats.shape)}")
        if self.gru is None:
            return img_feats[:, 0]
        _, h_n = self.gru(img_feats)
        return h_n[-1]

    def imu_features(self, imu: torch.Tensor | None) -> torch.Tensor:
        """The sensor's clip vector: IMU (B,T,6) -> z_M, or for listentolook audio (B,F,T) -> z_A; ValueError
        if this variant has no sensor branch or its input is missing."""
        encoder = self.sensor_encoder
        if encoder is None:
            raise ValueError(f"student variant {self.spec.name!r} has no IMU or audio branch")
        if imu is None:
            want = "an 'imu' input (B, T, 6)" if self.imu_encoder is not None else "an 'audio' input (B, F, T)"
            raise ValueError(f"student variant {self.spec.name!r} needs {want}")
        return encoder(imu)

    sensor_features = imu_features

    def embed(self, z_img: torch.Tensor, imu: torch.Tensor | None) -> torch.Tensor:
        """z_I (B,512) [+ IMU or audio] -> (B,feature_dim) student feature z_φ (Π, or the vis-only projection)."""
        if self.fusion is not None:
            return self.fusion(torch.cat([z_img, self.imu_features(imu)], dim=1))
        assert self.projection is not None
        return self.projection(z_img)

    def forward_head(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B,feature_dim) -> {head: (B,C) logits}."""
        return {h: clf(feature) for h, clf in self.classifiers.items()}

    def forward_from_image_features(self, img_feats: torch.Tensor, imu: torch.Tensor | None = None
                                    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Cached per-frame features (B,N,512) [+ IMU (B,T,6)] -> {"feature", "logits"}.

        `imu` is required by the IMU variants (listentolook: the audio spectrograms (B,F,T)) and ignored by
        the vis-only ones.
        """
        feature = self.embed(self.aggregate(img_feats), imu)
        out: dict[str, Any] = {"feature": feature, "logits": self.forward_head(feature)}
        if len(self.aux_heads):
            out["aux"] = {a: head(feature) for a, head in self.aux_heads.items()}
        return out

    def sensor_input(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The batch's input for the sensor branch: "imu", "audio" (listentolook) or None (vis-only)."""
        return batch.get(self.sensor_key) if self.sensor_key else None

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Batch with "frames" uint8 (B,N,H,W,3) and "imu" (B,T,6) (listentolook: "audio" (B,F,T)) ->
        {"feature", "logits"}."""
        return self.forward_from_image_features(self.image_features(batch["frames"]), self.sensor_input(batch))

    def predict_imu_feature(self, z_first: torch.Tensor, z_last: torch.Tensor) -> torch.Tensor:
        """h(z⁰, zᵀ): first and last frame features (B,512) each -> predicted IMU feature (B,D_imu)."""
        if self.predictor is None:
            raise ValueError(f"student variant {self.spec.name!r} has no IMU or audio branch to pretrain")
        return self.predictor(torch.cat([z_first, z_last], dim=1))

    def pretrain_from_image_features(self, img_feats: torch.Tensor, first_last_feats: torch.Tensor,
                                     imu: torch.Tensor) -> dict[str, torch.Tensor]:
        """Self-supervised stage from cached features: img (B,N,512), first/last (B,2,512), IMU (or audio).

        Returns "pred_imu" = h(z⁰, zᵀ) and "imu_feature" = f_M(IMU) (for InfoNCE) and "feature" =
        Π(z_I, z_M) (for the L1 to the teacher feature); for listentolook the same keys hold the audio
        feature f_A(audio) and its prediction.
        """
        if first_last_feats.dim() != 3 or first_last_feats.shape[1:] != (2, FEATURE_DIM):
            raise ValueError(f"first/last features must be (B, 2, {FEATURE_DIM}), "
                             f"got {tuple(first_last_feats.shape)}")
        pred = self.predict_imu_feature(first_last_feats[:, 0], first_last_feats[:, 1])
        z_imu = self.imu_features(imu)
        assert self.fusion is not None
        feature = self.fusion(torch.cat([self.aggregate(img_feats), z_imu], dim=1))
        return {"pred_imu": pred, "imu_feature": z_imu, "feature": feature}

    def pretrain_forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch with "frames", "first_last" uint8 (B,2,H,W,3) and "imu" -> pretrain outputs."""
        return self.pretrain_from_image_features(self.image_features(batch["frames"]),
                                                 self.image_features(batch["first_last"]),
                                                 self.sensor_input(batch))


def build_student(variant: str, *, frames: int, feature_dim: int, heads: dict[str, int],
                  imu_out_channels: int = 128, imu_dropout: float = 0.1,
                  image_weights: str | os.PathLike | None = None,
                  audio_shape: tuple[int, int] | list[int] | None = None, aux: dict[str, int] | None = None
                  ) -> Student:
    """Build a student variant for N frames, the cache's feature size and heads {name: classes}.

    `image_weights` is a torchvision ResNet-18 ImageNet state_dict file loaded strictly into f_I.
    `audio_shape` (frequency bins, frames) of the cache's spectrograms is needed by listentolook only;
    `aux` {name: size} adds a linear head per auxiliary distillation target.
    `Student.config` holds these arguments (except the weights path) so build_student(**config)
    rebuilds the same architecture from a checkpoint.
    """
    spec = variant_spec(variant)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if feature_dim < 1:
        raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
    if not heads or any(int(c) < 1 for c in heads.values()):
        raise ValueError(f"heads must map at least one head name to a class count >= 1, got {heads}")
    student = Student(spec, frames=frames, feature_dim=feature_dim,
                      heads={h: int(c) for h, c in heads.items()},
                      imu_out_channels=imu_out_channels, imu_dropout=imu_dropout, aux=aux,
                      audio_shape=tuple(audio_shape) if audio_shape is not None else None)  # type: ignore[arg-type]
    if image_weights is not None:
        load_image_weights(student.image_encoder.backbone, image_weights)
    return student
