"""The student training config: paper defaults in one commented block, type-checked overrides.

Defaults follow EgoDistill (paper §3.3–3.4, App. C). Values that depend on the dataset (τ, distill
epochs and milestones) are left as None here and resolved from the cache's attributes by
`resolve_config`, so a run's saved config always holds the concrete numbers it trained with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VARIANTS = ("egodistill", "visonly-distill", "visimu", "visonly")
IMU_VARIANTS = ("egodistill", "visimu")          # the variants with an IMU branch, hence a pretrain stage
DISTILL_VARIANTS = ("egodistill", "visonly-distill")  # the variants that read the teacher's outputs
STAGES = ("pretrain", "distill", "all")
AVERAGING = ("softmax", "logits")
MILESTONE_FRACTIONS = (0.6, 0.8)  # the paper's decays: 30/40 of 50 epochs, 90/120 of 150


@dataclass
class TrainConfig:
    """Everything one `train-student` run needs; saved inside every checkpoint."""

    # --- what to train, from what, where --------------------------------------------------------
    cache: str = ""
    out: str = ""
    variant: str = "egodistill"
    frames: int = 1
    stage: str = "all"                   # pretrain | distill | all (visonly* have no pretrain stage)
    init: str | None = None              # distill init checkpoint; default OUT/pretrain/last.pt if it exists
    image_weights: str | None = None     # torchvision-format ResNet-18 state dict (ImageNet)
    freeze_image_encoder: bool = False   # keep f_I fixed and train from its cached per-frame features
    seed: int = 0
    # --- optimisation (paper App. C): AdamW, batch 64, lr 1e-4, x0.1 step decays ------------------
    batch_size: int = 64                 # the global batch; each of W ranks takes batch_size / W
    lr: float = 1e-4
    weight_decay: float = 0.01           # AdamW's default; the paper does not give one
    lr_decay: float = 0.1
    epochs: int | None = None            # distill: 150 for ego4d, else 50
    milestones: list[int] | None = None  # distill decays: 0.6 and 0.8 of the epochs (30/40, 90/120)
    pretrain_epochs: int = 50
    pretrain_milestones: list[int] | None = None  # 30/40 of 50 (0.6 and 0.8 of pretrain_epochs)
    # --- losses (paper eq. 6 and 7) ---------------------------------------------------------------
    alpha: float = 0.95                  # L = alpha*KD + (1-alpha)*CE + beta*L1
    beta: float = 1.0
    tau: float | None = None             # KD temperature: 10 for ego4d, else 1
    nce_tau: float = 0.1                 # InfoNCE temperature tau' (cosine similarity)
    # --- evaluation -------------------------------------------------------------------------------
    average: str = "softmax"             # segment score: mean of clip softmax ("softmax") or of logits
    eval_batch_size: int | None = None   # default: batch_size
    # --- machinery --------------------------------------------------------------------------------
    num_workers: int = 2
    device: str = "auto"                 # auto | cpu | cuda | cuda:K
    checkpoint_every: int = 200          # also checkpoint every K optimizer steps inside an epoch
    heads: list[str] = field(default_factory=list)  # heads to train; empty: every head in the cache

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build a config from a dict; unknown keys and wrongly typed values raise ValueError."""
        return cls().with_overrides(**values)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A copy with `overrides` applied (None keeps the current value); type-checked, unknown keys raise."""
        known = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        values = {k: _checked(k, v, known[k].type) for k, v in overrides.items() if v is not None}
        new = dataclasses.replace(self, **values)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise ValueError naming the option when a value is out of range."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.average not in AVERAGING:
            raise ValueError(f"average must be one of {', '.join(AVERAGING)}, got {self.average!r}")
        for name in ("frames", "batch_size", "pretrain_epochs", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0 or not 0 <= self.alpha <= 1 or self.beta < 0 or self.nce_tau <= 0:
            raise ValueError("need lr > 0, 0 <= alpha <= 1, beta >= 0, nce_tau > 0")
        if self.tau is not None and self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:K, got {self.device!r}")

    @property
    def has_pretrain(self) -> bool:
        """Whether this variant has the self-supervised IMU stage (only variants with an IMU branch)."""
        return self.variant in IMU_VARIANTS

    @property
    def uses_teacher(self) -> bool:
        """Whether the distill stage reads the teacher's cached features and logits."""
        return self.variant in DISTILL_VARIANTS


def _checked(name: str, value: Any, annotation: Any) -> Any:
    """`value` converted to the field's declared type, or ValueError naming the option."""
    text = str(annotation)
    if "list[int]" in text:
        if isinstance(value, str):
            value = [int(v) for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise ValueError(f"{name} must be a list of integers, got {value!r}")
        return sorted(int(v) for v in value)
    if "list[str]" in text:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of names, got {value!r}")
        return list(value)
    for kind in (bool, int, float, str):
        if text.startswith(kind.__name__):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
            return value
    raise ValueError(f"{name}: unsupported option type {text}")


def default_milestones(epochs: int) -> list[int]:
    """The paper's decay epochs scaled to `epochs`: 30/40 of 50, 90/120 of 150."""
    return sorted({max(1, round(f * epochs)) for f in MILESTONE_FRACTIONS})


def resolve_config(cfg: TrainConfig, *, dataset: str, heads: list[str]) -> TrainConfig:
    """Fill the dataset-dependent defaults (τ, distill epochs, milestones, heads) from the cache's facts.

    `dataset` is the cache's source dataset ("ego4d", "epic100", ...); `heads` the cache's head names.
    """
    ego4d = dataset == "ego4d"
    epochs = cfg.epochs if cfg.epochs is not None else (150 if ego4d else 50)
    unknown = sorted(set(cfg.heads) - set(heads))
    if unknown:
        raise ValueError(f"head(s) {', '.join(unknown)} not in the cache (it has {', '.join(heads)})")
    return dataclasses.replace(
        cfg,
        epochs=epochs,
        milestones=cfg.milestones if cfg.milestones is not None else default_milestones(epochs),
        pretrain_milestones=(cfg.pretrain_milestones if cfg.pretrain_milestones is not None
                             else default_milestones(cfg.pretrain_epochs)),
        tau=cfg.tau if cfg.tau is not None else (10.0 if ego4d else 1.0),
        eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        heads=list(cfg.heads) or list(heads),
    )


@dataclass
class CacheFacts:
    """What training needs to know about a cache, gathered (and checked) before any training starts."""

    cache_id: str                    # sha256 of the root attributes: same teacher, clips, sampling, source
    dataset: str
    heads: dict[str, list[str]]      # head -> class names
    feature_dim: int
    train_clips: int
    val_clips: int
    imu_std: list[float]             # per-channel std of the training IMU windows (1 where a channel is flat)
    motion_verbs: list[str] | None   # attrs source.motion_pair_verbs, if the cache lists them


def check_cache(cfg: TrainConfig) -> tuple[CacheFacts, TrainConfig]:
    """Refuse a cache that cannot train `cfg` (clear CacheError) and return its facts and the resolved config.

    Checks: verification passes (format version, shards, checksums), extraction finished, frames stored
    for N, first/last frames for the pretrain stage, IMU with signal for IMU variants, teacher
    features/logits with signal for the stages that read them, training clips present.
    """
    from egocache.cache import CacheDataset, open_cache, verify_cache
    from egocache.errors import CacheError

    path = cfg.cache
    info = open_cache(path)  # CacheFormatError first: not a cache, or a format version we do not read
    report = verify_cache(path)
    if not report.ok:
        shown = "; ".join(report.problems[:3]) + (f" (+{len(report.problems) - 3} more)"
                                                  if len(report.problems) > 3 else "")
        raise CacheError(f"{path}: fails verification: {shown}; run `egocache verify {path}`")
    pending = sum(s["pending"] for s in info.status.values())
    if pending:
        raise CacheError(f"{path}: extraction not finished ({pending} clips pending); resume `egocache extract`")
    sam = info.sampling
    if str(cfg.frames) not in sam["frames_for_n"]:
        raise CacheError(f"{path}: no stored frames for N={cfg.frames}; this cache has N in "
                         f"{sorted(int(k) for k in sam['frames_for_n'])}")
    pretrain = cfg.has_pretrain and cfg.stage in ("pretrain", "all")
    if pretrain and sam.get("first_last") is None:
        raise CacheError(f"{path}: the pretrain stage needs each clip's first and last frame, which this "
                         f"cache does not store; use --stage distill or re-extract with first/last frames")
    train_ok = info.status.get("train", {}).get("ok", 0)
    if train_ok == 0:
        raise CacheError(f"{path}: no usable clip in split 'train' (splits: {info.status})")
    ds = CacheDataset(path, split="train", frames=cfg.frames, read_frames=False)
    n_ch = len(info.imu.get("channels", []))
    s1, s2, feat_max, logit_max = np.zeros(n_ch), np.zeros(n_ch), 0.0, 0.0
    for start in range(0, len(ds), 4096):
        b = ds[list(range(start, min(start + 4096, len(ds))))]
        imu = b["imu"].double().reshape(-1, n_ch).numpy() if n_ch else np.zeros((0, 0))
        s1, s2 = s1 + imu.sum(0), s2 + (imu ** 2).sum(0)
        feat_max = max(feat_max, float(b["feature"].abs().max()))
        logit_max = max([logit_max, *(float(v.abs().max()) for v in b["logits"].values())])
    count = max(len(ds) * int(info.imu.get("window", 0)), 1)
    std = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0.0))
    if cfg.has_pretrain and (n_ch != 6 or not (std > 0).any()):
        raise CacheError(f"{path}: variant {cfg.variant} needs IMU, but the cache has "
                         + ("no IMU signal (every training IMU window is zero)" if n_ch == 6
                            else f"IMU channels {info.imu.get('channels')} (6 expected)"))
    if (cfg.uses_teacher or pretrain) and feat_max == 0.0:
        raise CacheError(f"{path}: no teacher features (all zero); variant {cfg.variant} distils from them")
    if cfg.uses_teacher and logit_max == 0.0:
        raise CacheError(f"{path}: no teacher logits (all zero); variant {cfg.variant} distils from them")
    try:
        resolved = resolve_config(cfg, dataset=str(info.source.get("dataset", "")), heads=list(info.heads))
    except ValueError as exc:
        raise CacheError(f"{path}: {exc}") from exc
    facts = CacheFacts(
        cache_id=hashlib.sha256(json.dumps(info.attrs, sort_keys=True).encode()).hexdigest(),
        dataset=str(info.source.get("dataset", "")), heads={h: list(v) for h, v in info.heads.items()},
        feature_dim=int(info.feature_dim), train_clips=train_ok,
        val_clips=info.status.get("validation", {}).get("ok", 0),
        imu_std=[float(s) if s > 0 else 1.0 for s in std],
        motion_verbs=info.source.get("motion_pair_verbs"))
    return facts, resolved
