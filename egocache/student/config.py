"""The student training config: paper defaults in one commented block, each setting declared once.

Defaults follow EgoDistill (paper §3.3–3.4, App. C). Values that depend on the dataset (τ, distill
epochs and milestones) are left as None here and resolved from the cache's attributes by
`resolve_config`, so a run's saved config always holds the concrete numbers it trained with. The
`egocache train-student` options are built from these declarations (core/settings.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from egocache.cache.selections import FRAME_SELECTIONS
from egocache.core.device import check_device_name
from egocache.core.settings import check_settings, setting, with_settings
from egocache.errors import ConfigError
from egocache.student.variants import list_variants, variant_spec

STAGES = ("pretrain", "distill", "all")
AVERAGING = ("softmax", "logits")
MILESTONE_FRACTIONS = (0.6, 0.8)  # the paper's decays: 30/40 of 50 epochs, 90/120 of 150


@dataclass
class TrainConfig:
    """Everything one `train-student` run needs; saved inside every checkpoint."""

    # --- what to train, from what, where --------------------------------------------------------
    cache: str = setting("", path="cache", help="Cache to train from (a folder or an fsspec URL).")
    out: str = setting("", path="new-dir", help="Run folder (checkpoints, metrics).")
    variant: str = setting("egodistill", choices=list_variants, help="Student variant.")
    frames: int = setting(1, min=1, help="Student frames N (the cache must store them).")
    stage: str = setting("all", choices=STAGES,
                         help="Self-supervised IMU stage, distillation, or both (visonly* have no pretrain stage).")
    init: str | None = setting(None, path="file", default_text="OUT/pretrain/last.pt if present",
                               help="Checkpoint to start distillation from.")
    frame_selection: str = setting("uniform", choices=FRAME_SELECTIONS,
                                   help="Which stored frames the N frames are (paper Table 4); random draws N "
                                        "of the clip's 16-frame grid per clip, fixed by --seed.")
    image_weights: str | None = setting(None, path="file",
                                        help="torchvision-format ResNet-18 state dict for the image encoder.")
    freeze_image_encoder: bool = setting(False, help="Keep the image encoder fixed in distillation, training "
                                                     "from its features computed once.")
    features_dir: str | None = setting(None, path="new-dir", default_text="OUT/image_features",
                                       help="Folder of the frozen image encoder's stored features; runs "
                                            "on one cache with one encoder can share it.")
    seed: int = setting(0, help="Seed of init, data order and dropout.")
    # --- optimisation (paper App. C): AdamW, batch 64, lr 1e-4, x0.1 step decays ------------------
    batch_size: int = setting(64, min=1, help="Global batch size, split over DDP ranks.")
    lr: float = setting(1e-4, min=0, min_open=True, help="AdamW learning rate.")
    weight_decay: float = setting(0.01, min=0, help="AdamW weight decay (AdamW's default; the paper gives none).")
    lr_decay: float = setting(0.1, min=0, max=1, min_open=True, help="Learning-rate factor at each milestone.")
    epochs: int | None = setting(None, min=1, default_text="150 for ego4d caches, else 50", help="Distill epochs.")
    milestones: list[int] | None = setting(None, min=1, default_text="0.6 and 0.8 of --epochs",
                                           help="Distill lr decay epochs, comma-separated.")
    pretrain_epochs: int = setting(50, min=1, help="Pretrain (self-supervised IMU stage) epochs.")
    pretrain_milestones: list[int] | None = setting(None, min=1, default_text="0.6 and 0.8 of --pretrain-epochs",
                                                    help="Pretrain lr decay epochs, comma-separated.")
    # --- losses (paper eq. 6 and 7) ---------------------------------------------------------------
    alpha: float = setting(0.95, min=0, max=1, help="KD weight: alpha*KD + (1-alpha)*CE + beta*L1.")
    beta: float = setting(1.0, min=0, help="Feature L1 weight.")
    tau: float | None = setting(None, min=0, min_open=True, default_text="10 for ego4d caches, else 1",
                                help="KD temperature.")
    nce_tau: float = setting(0.1, min=0, min_open=True, help="InfoNCE temperature tau' (cosine similarity).")
    # --- several teachers of one cache (cache/teachers.py; Radevski et al., ICCV 2023) ------------
    teachers: list[str] = setting(factory=list, default_text="the cache's own teacher",
                                  help="Distil from the ensemble of these cached teachers, comma-separated: the "
                                       "cache's own teacher by its name and teachers added to the cache.")
    teacher_weights: str = setting("equal", check=lambda v: parse_teacher_weights(v, None),
                                   metavar="equal|adaptive|W1,W2,...",
                                   help="Ensemble weights: equal, adaptive (per sample, the softmin of each "
                                        "teacher's CE against the label) or fixed, one per --teachers.")
    teacher_weight_tau: float = setting(1.0, min=0, min_open=True, help="Temperature of the adaptive softmin.")
    feature_teacher: str | None = setting(None, default_text="the first of --teachers",
                                          help="Teacher whose features the L1 terms match ('none': no L1 term).")
    aux: list[str] = setting(factory=list, check=lambda v: [parse_aux(a) for a in v],
                             metavar="[TEACHER/]NAME:WEIGHT[:kl|bce|mse],...",
                             help="Auxiliary distillation targets a cached teacher declares (Ego-Exo), each with its "
                                  "loss weight and loss: kl (a distribution, the default), bce (values in [0, 1]) or mse.")
    pretrain_nce: float = setting(1.0, min=0, help="Weight of the pretrain stage's InfoNCE term (0: L1-pretrain "
                                                   "only, paper Table 1).")
    pretrain_l1: float = setting(1.0, min=0, help="Weight of the pretrain stage's feature L1 term (0: NCE-pretrain "
                                                  "only, paper Table 1).")
    # --- evaluation -------------------------------------------------------------------------------
    average: str = setting("softmax", choices=AVERAGING,
                           help="Segment score: mean of the clips' softmax, or of their logits.")
    eval_batch_size: int | None = setting(None, min=1, default_text="--batch-size", help="Clips per evaluation batch.")
    eval_every: int = setting(1, min=1, help="Evaluate on validation every K distill epochs (and after the last).")
    # --- machinery --------------------------------------------------------------------------------
    num_workers: int = setting(2, min=0, help="DataLoader worker processes.")
    device: str = setting("auto", check=check_device_name,
                          help="auto, cpu, cuda or cuda:K; under torchrun each rank takes cuda:LOCAL_RANK.")
    checkpoint_every: int = setting(200, min=1, help="Also checkpoint every K optimizer steps inside an epoch.")
    heads: list[str] = setting(factory=list, default_text="every head in the cache",
                               help="Heads to train, comma-separated.")
    skip_verify: bool = setting(False, help="Train from a cache that fails `egocache verify` (with a warning).")

    def __post_init__(self) -> None:
        """Check every setting where the config is built."""
        check_settings(self)
        if self.pretrain_nce == 0 and self.pretrain_l1 == 0 and self.stage != "distill" and self.has_pretrain:
            raise ConfigError("--pretrain-nce and --pretrain-l1 are both 0: the pretrain stage would learn "
                              "nothing; use --stage distill to skip it")
        parse_teacher_weights(self.teacher_weights, self.teachers)
        if len(set(self.teachers)) != len(self.teachers):
            raise ConfigError(f"--teachers {','.join(self.teachers)}: a teacher is named twice")
        if self.feature_teacher not in (None, "none") and self.feature_teacher not in self.teachers:
            raise ConfigError(f"--feature-teacher {self.feature_teacher}: not one of --teachers "
                              f"({','.join(self.teachers) or 'none given'})")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build a config from a dict; unknown keys and wrongly typed values raise ConfigError."""
        return cls().with_overrides(**values)

    def with_overrides(self, **overrides: Any) -> "TrainConfig":
        """A checked copy with `overrides` applied (None keeps the current value); unknown keys raise."""
        return with_settings(self, **overrides)

    @property
    def has_pretrain(self) -> bool:
        """Whether this variant has the self-supervised stage (variants with an IMU or an audio branch)."""
        return variant_spec(self.variant).sensor is not None

    @property
    def feature_target(self) -> str | None:
        """With --teachers: the teacher whose features the L1 terms match (None: no L1 term)."""
        if not self.teachers or self.feature_teacher == "none":
            return None
        return self.feature_teacher or self.teachers[0]

    @property
    def uses_teacher(self) -> bool:
        """Whether the distill stage reads the teacher's cached features and logits."""
        return variant_spec(self.variant).distill


def parse_teacher_weights(text: str, teachers: list[str] | None) -> tuple[str, tuple[float, ...]]:
    """'equal' | 'adaptive' | 'W1,W2,...' -> (weighting, fixed weights); ConfigError naming
    --teacher-weights otherwise (with `teachers`, also when the count or the setting does not fit them)."""
    text = text.strip().lower()
    if text in ("equal", "adaptive"):
        if teachers is not None and text == "adaptive" and not teachers:
            raise ConfigError("--teacher-weights adaptive weighs several --teachers; none are given")
        return text, ()
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise ConfigError(f"--teacher-weights: expected equal, adaptive or comma-separated numbers, got {text!r}") from None
    if min(weights) < 0 or sum(weights) <= 0 or not all(np.isfinite(weights)):
        raise ConfigError(f"--teacher-weights {text}: weights must be >= 0 and not all 0")
    if teachers is not None and len(weights) != len(teachers):
        raise ConfigError(f"--teacher-weights {text}: {len(weights)} weights for {len(teachers)} --teachers")
    return "fixed", weights


AUX_LOSSES = ("kl", "bce", "mse")


def parse_aux(text: str) -> tuple[str | None, str, float, str]:
    """'[TEACHER/]NAME:WEIGHT[:LOSS]' -> (teacher or None, output name, weight, loss); ConfigError naming --aux."""
    parts = text.strip().split(":")
    where, _, name = parts[0].rpartition("/")
    try:
        weight = float(parts[1]) if len(parts) in (2, 3) else -1.0
    except ValueError:
        weight = -1.0
    loss = parts[2] if len(parts) == 3 else "kl"
    if not name or weight < 0 or not np.isfinite(weight) or loss not in AUX_LOSSES:
        raise ConfigError(f"--aux {text}: expected [TEACHER/]NAME:WEIGHT[:{'|'.join(AUX_LOSSES)}] with a weight >= 0, "
                          "e.g. object_score:0.5")
    return where or None, name, weight, loss


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
        raise ConfigError(f"--heads: {', '.join(unknown)} not in the cache (it has {', '.join(heads)})")
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
    skipped_without_imu: dict[str, int]  # clips of each split left out because they have no IMU window
    motion_verbs: list[str] | None   # attrs source.motion_pair_verbs, if the cache lists them
    aux: list[tuple[str, str, int, float, str]] = dataclasses.field(default_factory=list)
    # --aux resolved: (teacher, output, size, weight, loss) each
    audio_shape: list[int] | None = None      # (frequency bins, frames) of the spectrograms (audio variants)
    audio_mean: list[float] | None = None     # per-bin mean / std of the training spectrograms (audio variants)
    audio_std: list[float] | None = None
    skipped_without_audio: dict[str, int] = dataclasses.field(default_factory=dict)



def resolve_aux(info: Any, specs: list[str]) -> list[tuple[str, str, int, float, str]]:
    """The --aux targets as (teacher, output, size, weight, loss), found among the cache's teachers'
    declared auxiliary outputs, per clip or per video; CacheError naming the target when it is absent or
    ambiguous."""
    from egocache.errors import CacheError

    def outputs(teacher: dict[str, Any]) -> dict[str, int]:
        """Per-clip aux outputs and per-video ones (cache/videos.py), name -> size."""
        aux = teacher.get("aux") or {}
        return {**aux, **{v: aux[src] for v, src in (teacher.get("aux_video") or {}).items()}}

    declared = {info.teacher["name"]: outputs(info.teacher),
                **{n: outputs(g["teacher"]) for n, g in info.teachers.items()}}
    out = []
    for text in specs:
        teacher, name, weight, loss = parse_aux(text)
        found = [t for t, outs in declared.items() if name in outs and teacher in (None, t)]
        if len(found) != 1:
            have = ", ".join(f"{t}/{a}" for t, outs in declared.items() for a in outs) or "none"
            raise CacheError(f"{info.path}: --aux {text}: {'no' if not found else 'more than one'} teacher of the "
                             f"cache declares {name!r} (declared auxiliary outputs: {have})"
                             + ("; name it as TEACHER/NAME" if found else ""))
        if any(name == o[1] for o in out):
            raise CacheError(f"{info.path}: --aux {text}: a target named {name!r} is given twice")
        out.append((found[0], name, int(declared[found[0]][name]), weight, loss))
    return out


def check_cache(cfg: TrainConfig) -> tuple[CacheFacts, TrainConfig]:
    """Refuse a cache that cannot train `cfg` (clear CacheError) and return its facts and the resolved config.

    Checks: verification passes (format version, shards, checksums), extraction finished, frames stored
    for N, first/last frames for the pretrain stage, IMU with signal for IMU variants, audio with signal
    for audio variants (listentolook), teacher
    features/logits with signal for the stages that read them, training clips present.
    """
    from egocache.cache import CacheDataset, open_cache, read_attrs
    from egocache.cache.selections import available_selections, selection_indices
    from egocache.cache.verify import ensure_verified
    from egocache.errors import CacheError

    path = cfg.cache
    read_attrs(path)         # CacheFormatError first: not a cache, or a format version we do not read
    ensure_verified(path, skip=cfg.skip_verify, warn=lambda m: print(m, file=sys.stderr))
    info = open_cache(path)
    pending = sum(s["pending"] for s in info.status.values())
    if pending:
        raise CacheError(f"{path}: extraction not finished ({pending} clips pending); resume `egocache extract`")
    sam = info.sampling
    if selection_indices(sam, cfg.frame_selection, cfg.frames) is None:
        have = "; ".join(f"{sel} N in {ns}" for sel, ns in available_selections(sam).items())
        raise CacheError(f"{path}: no stored frames for N={cfg.frames} with --frame-selection "
                         f"{cfg.frame_selection}; this cache has {have} (extract --frame-selections)")
    pretrain = cfg.has_pretrain and cfg.stage in ("pretrain", "all")
    if pretrain and sam.get("first_last") is None:
        raise CacheError(f"{path}: the pretrain stage needs each clip's first and last frame, which this "
                         f"cache does not store; use --stage distill or re-extract with first/last frames")
    spec = variant_spec(cfg.variant)
    if spec.audio and info.audio is None:
        raise CacheError(f"{path}: has no audio (extracted with --audio none, or by an egocache from before audio), "
                         f"so variant {cfg.variant} (which reads audio) cannot train from it; re-extract with "
                         "--audio optional")
    if spec.imu and info.imu.get("mode") == "none":
        raise CacheError(f"{path}: extracted with --imu none, so variant {cfg.variant} (which reads IMU) "
                         "cannot train from it")
    if info.status.get("train", {}).get("ok", 0) == 0:
        raise CacheError(f"{path}: no usable clip in split 'train' (splits: {info.status})")
    aux = resolve_aux(info, cfg.aux) if cfg.uses_teacher else []
    if cfg.aux and not cfg.uses_teacher:
        raise CacheError(f"--aux: variant {cfg.variant} trains on labels only; auxiliary targets need a distilling variant")
    teachers = cfg.teachers if cfg.uses_teacher or pretrain else []
    teachers = list(dict.fromkeys([*teachers, *(t for t, *_ in aux)]))   # the aux teachers are read, not ensembled
    for name in teachers:
        if name != info.teacher["name"] and name in info.teachers and info.teachers[name]["done_shards"] < info.num_shards:
            raise CacheError(f"{path}: teacher {name} is not complete ({info.teachers[name]['done_shards']}/"
                             f"{info.num_shards} shards); resume `egocache extract --teacher-name {name}`")
    reads = dict(frames=cfg.frames, read_frames=False, require_imu=spec.imu, require_audio=spec.audio,
                 read_audio=spec.audio, teachers=teachers)
    ds = CacheDataset(path, split="train", **reads)
    val = CacheDataset(path, split="validation", **reads) if "validation" in info.splits else None
    skipped = {"train": ds.skipped_without_imu, "validation": val.skipped_without_imu if val else 0}
    if len(ds) == 0:
        what = "audio" if spec.audio else "IMU"
        raise CacheError(f"{path}: none of the {ds.skipped_without_imu + ds.skipped_without_audio} training clips "
                         f"has {what}, which variant {cfg.variant} needs")
    n_ch = len(info.imu.get("channels", []))
    s1, s2, feat_max, logit_max = np.zeros(n_ch), np.zeros(n_ch), 0.0, 0.0
    a1 = a2 = 0.0
    step = 256 if spec.audio else 4096           # a spectrogram is 85 KB, an IMU window 10 KB
    for start in range(0, len(ds), step):
        b = ds[list(range(start, min(start + step, len(ds))))]
        for t, name, _, _, loss in aux:
            check_aux_values(path, f"{t}/{name}", b["teachers"][t]["aux"][name], loss)
        imu = b["imu"].double().reshape(-1, n_ch).numpy() if n_ch else np.zeros((0, 0))
        s1, s2 = s1 + imu.sum(0), s2 + (imu ** 2).sum(0)
        if spec.audio:
            spec_ = b["audio"].double().numpy()
            a1, a2 = a1 + spec_.sum(axis=(0, 2)), a2 + (spec_ ** 2).sum(axis=(0, 2))
        outs = list(b["teachers"].values()) if teachers else [b]
        feat_max = max([feat_max, *(float(o["feature"].abs().max()) for o in outs)])
        logit_max = max([logit_max, *(float(v.abs().max()) for o in outs for v in o["logits"].values())])
    count = max(len(ds) * int(info.imu.get("window", 0)), 1)
    std = np.sqrt(np.maximum(s2 / count - (s1 / count) ** 2, 0.0))
    audio_stats: dict[str, Any] = {}
    if spec.audio:
        frames = len(ds) * int(info.audio["frames"])
        a_mean = np.asarray(a1) / frames
        a_std = np.sqrt(np.maximum(np.asarray(a2) / frames - a_mean ** 2, 0.0))
        if not (a_std > 0).any():
            raise CacheError(f"{path}: variant {cfg.variant} needs audio, but every training spectrogram is "
                             "constant (no audio signal)")
        audio_stats = dict(audio_shape=[int(info.audio["freq_bins"]), int(info.audio["frames"])],
                           audio_mean=[float(v) for v in a_mean],
                           audio_std=[float(v) if v > 0 else 1.0 for v in a_std],
                           skipped_without_audio={"train": ds.skipped_without_audio,
                                                  "validation": val.skipped_without_audio if val else 0})
    if spec.imu and (n_ch != 6 or not (std > 0).any()):
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
    ident = {"root": info.attrs, "teachers": {n: info.teachers[n]["teacher"] for n in teachers if n in info.teachers}}
    target = cfg.feature_target
    facts = CacheFacts(
        cache_id=hashlib.sha256(json.dumps(ident if teachers else info.attrs, sort_keys=True).encode()).hexdigest(),
        dataset=str(info.source.get("dataset", "")), heads={h: list(v) for h, v in info.heads.items()},
        feature_dim=int(info.teachers[target]["teacher"]["feature_dim"] if target in info.teachers
                        else info.feature_dim), train_clips=len(ds), val_clips=len(val) if val else 0,
        skipped_without_imu=skipped,
        imu_std=[float(s) if s > 0 else 1.0 for s in std],
        motion_verbs=info.source.get("motion_pair_verbs"), aux=aux, **audio_stats)
    return facts, resolved


def check_aux_values(path: str, name: str, values: Any, loss: str) -> None:
    """CacheError unless an auxiliary target's cached values suit its loss (kl: rows that are
    distributions; bce: values in [0, 1])."""
    from egocache.errors import CacheError

    v = values.double()
    if loss == "kl" and (bool((v < -1e-6).any()) or bool(((v.sum(1) - 1).abs() > 1e-3).any())):
        raise CacheError(f"{path}: --aux {name}: its values are not distributions (rows >= 0 summing to 1), which "
                         "the kl loss needs; give it :bce or :mse")
    if loss == "bce" and (bool((v < 0).any()) or bool((v > 1).any())):
        raise CacheError(f"{path}: --aux {name}: values outside [0, 1], which the bce loss needs; give it :mse")


@dataclass(frozen=True, kw_only=True)
class PretrainEncoderOptions:
    """How `egocache pretrain-image-encoder` trains the image encoder on a labelled image set
    (student/pretrain_encoder.py); the image set's own settings are declared with the set."""

    out: str = setting(path="new-file", argument=True, help="torchvision-format ResNet-18 state dict to write; "
                       "OUT with suffix .json (summary) too, and OUT.partial.pt while training.")
    images: int = setting(8400, min=1, help="Training images per epoch, freshly drawn every epoch (rounded down "
                                            "to whole batches).")
    val_images: int = setting(1050, min=1, help="Held-out images (the same set for every seed) scored at the end.")
    epochs: int = setting(6, min=1, help="Training epochs.")
    batch_size: int = setting(64, min=2, help="Images per step.")
    lr: float = setting(2e-3, min=0, min_open=True, help="AdamW peak learning rate (linear warm-up, cosine decay).")
    weight_decay: float = setting(0.05, min=0, help="AdamW weight decay (not on biases and norms).")
    warmup: float = setting(0.05, min=0, max=0.5, help="Share of the steps with linear learning-rate warm-up.")
    seed: int = setting(0, help="Seed of init, training images, data order and augmentation.")
    torch_threads: int = setting(1, min=0, help="torch CPU threads (0: one per CPU; 1 measured fastest on a "
                                                "shared 2-core CPU).")
    device: str = setting("auto", check=check_device_name, help="auto (cuda when available), cpu, cuda or cuda:K.")
    checkpoint_every: int = setting(200, min=1, help="Also save the training state every K steps inside an "
                                                     "epoch (a killed run resumes from it).")
    progress: bool = setting(True, help="Show progress bars on stderr.")

    def __post_init__(self) -> None:
        """Check every setting where the options are built."""
        check_settings(self)
        if self.out.endswith((".json", ".partial.pt")):
            raise ConfigError(f"OUT {self.out}: the summary takes OUT with suffix .json and the training state "
                              "OUT.partial.pt; give the weights another name (e.g. resnet18-pretrained.pth)")
        if self.images < self.batch_size:
            raise ConfigError(f"--images {self.images}: fewer than one batch of --batch-size {self.batch_size}")
