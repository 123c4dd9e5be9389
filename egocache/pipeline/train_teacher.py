"""Fine-tune a teacher on the labelled clips of a manifest; save it in the official checkpoint layout.

The paper fine-tunes MotionFormer on Ego4D before caching it; `train_teacher` does that for any
registered teacher and dataset adapter. Every clip's teacher frames (T = spec.num_frames spread over
the clip span, decoded at spec.img_size exactly as extraction decodes them) are decoded once into one
in-memory uint8 array before training: right for the small configs and CPU runs; a full-size dataset
(16x224x224x3 = 2.4 MB per clip) needs a frame cache instead, and `max_frames_gb` refuses a run whose
frames would not fit. Clips that cannot be decoded are reported one line each and skipped.

Training: AdamW (no weight decay on biases and norms) with linear warm-up and cosine decay,
cross-entropy summed over the heads (label -1 ignored), bf16 autocast on CUDA. Each training segment
is decoded as `train_views` clips spread over it (temporal jitter; an epoch sees them all); each
clip gets one random zoom-crop shared by all its frames, so the motion between frames
is kept. No horizontal flip: it would swap left/right head motions (e.g. the synthetic open/close, a
yaw to one side or the other) without swapping their labels. On CPU a seed gives the same weights.

Evaluation on the validation clips: clip logits averaged per segment, then top-1 per head, per-class
accuracy and, where the dataset metadata declares motion pairs, accuracy on those verbs, which a
single frame cannot tell apart. Outputs: the checkpoint (model_state, cfg YAML, epoch,
optimizer_state, class_names), CKPT with suffix .json (the summary) and .val.npz (validation clip
ids and logits, which the saved checkpoint reproduces).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from egocache.core.device import resolve_device
from egocache.core.files import write_atomic, write_json_atomic
from egocache.errors import CheckpointError, DecodeError, EgocacheError
from egocache.pipeline.datasets import Clip, load_manifest
from egocache.pipeline.sampling import clip_span_frames, clip_start_frame, segment_clip_centres, teacher_frame_indices
from egocache.pipeline.teachers import (Teacher, TeacherSpec, create_teacher, read_teacher_checkpoint,
                                        save_teacher_checkpoint)

GRAD_CLIP_NORM = 1.0
ZOOM_SCALE = (0.75, 1.0)                       # side of the random crop, as a fraction of the frame


@dataclass(frozen=True)
class TeacherTrainConfig:
    """What to fine-tune on which data, and how; the defaults suit mformer-tiny on the synthetic set."""

    teacher: str                                   # registry name, e.g. "mformer-tiny"
    dataset: str                                   # "epic100" | "ego4d" | "manifest"
    annotations: tuple[str, ...]
    root: str
    out: str                                       # checkpoint path; .json / .val.npz written next to it
    checkpoint: str | None = None                  # initial weights (ours or an official .pyth)
    reset_heads: bool = False                      # re-initialise heads whose size differs from the data's
    overrides: dict[str, Any] = field(default_factory=dict)   # teacher architecture/input overrides
    # optimisation (paper, real fine-tune: lr 1e-4, batch 64)
    epochs: int = 30
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 2
    # data
    eval_clips: int = 3                            # clips per validation segment (averaged)
    train_views: int = 4                           # clips per training segment, spread over it
    max_frames_gb: float = 8.0                     # refuse to hold more decoded frames than this in memory
    # run
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        """Raise EgocacheError naming each setting that cannot work."""
        problems = [f"{k}={getattr(self, k)} must be >= 1" for k in
                    ("epochs", "batch_size", "eval_clips", "train_views") if getattr(self, k) < 1]
        problems += [f"{k}={getattr(self, k)} must be > 0" for k in ("lr", "max_frames_gb")
                     if not getattr(self, k) > 0]
        problems += [f"{k}={getattr(self, k)} must be >= 0" for k in ("weight_decay", "warmup_epochs")
                     if getattr(self, k) < 0]
        if Path(self.out).suffix in (".json", ".npz"):
            problems.append(f"out={self.out!r}: the summary and logits take .json/.val.npz next to it; "
                            "give the checkpoint another suffix (e.g. .pyth)")
        if problems:
            raise EgocacheError("train-teacher: " + "; ".join(problems))


@dataclass
class ClipFrames:
    """Decoded teacher frames of clips, in memory, with their ids and labels (failed clips left out)."""

    frames: np.ndarray                 # (N, T, S, S, 3) uint8 RGB
    clip_ids: list[str]
    segment_ids: list[str]
    labels: dict[str, np.ndarray]      # head -> (N,) int64, -1 = unlabelled
    failures: list[str]                # "clip_id: reason", one per skipped clip


def training_views(clips: list[Clip], views: int) -> list[Clip]:
    """Each clip replaced by `views` clips evenly spread over its segment (ids "<segment>/v<k>")."""
    out = [dataclasses.replace(c, clip_id=f"{c.segment_id}/v{k}", centre_s=centre)
           for c in clips for k, centre in enumerate(
               segment_clip_centres(c.segment_start_s, c.segment_stop_s, views))]
    return sorted(out, key=lambda c: (c.video_path, c.centre_s, c.clip_id))


def decode_teacher_clips(clips: list[Clip], spec: TeacherSpec, heads: list[str], *,
                         progress: bool = False, log: Callable[[str], None] = print) -> ClipFrames:
    """Decode the teacher frames of `clips` (grouped by video, each video opened once) into memory."""
    from egocache.pipeline.decode import decode_clips, video_info

    t, s = spec.num_frames, spec.img_size
    frames = np.empty((len(clips), t, s, s, 3), np.uint8)
    ok = np.zeros(len(clips), bool)
    failures: list[str] = []
    by_video: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        by_video.setdefault(clip.video_path, []).append(i)
    bar = tqdm(total=len(clips), unit="clip", desc="decode", disable=not progress)
    for path, rows in by_video.items():
        try:
            _, fps = video_info(path)
            span = clip_span_frames(fps, t, spec.frame_stride)
            indices = [teacher_frame_indices(clip_start_frame(clips[i].centre_s, fps, span), span, t)
                       for i in rows]
            results: list[np.ndarray | DecodeError] = decode_clips(path, indices, size=s)[0]
        except DecodeError as exc:
            results = [exc] * len(rows)
        for i, res in zip(rows, results):
            if isinstance(res, DecodeError):
                failures.append(f"{clips[i].clip_id}: {res}")
                log(f"skipped clip {failures[-1]}")
            else:
                frames[i], ok[i] = res, True
        bar.update(len(rows))
    bar.close()
    kept = [c for c, good in zip(clips, ok) if good]
    return ClipFrames(frames if ok.all() else frames[ok], [c.clip_id for c in kept],
                      [c.segment_id for c in kept],
                      {h: np.array([c.labels.get(h, -1) for c in kept], np.int64) for h in heads}, failures)


def build_teacher(cfg: TeacherTrainConfig, heads: dict[str, int], class_names: dict[str, list[str]],
                  log: Callable[[str], None] = print) -> Teacher:
    """The teacher to fine-tune: registered init or `cfg.checkpoint`, with heads sized for the data.

    A checkpoint whose heads differ from `heads` is refused unless `cfg.reset_heads`, which keeps
    every other weight and re-initialises the classifier tensors whose shape changed.
    """
    if cfg.checkpoint is None:
        return create_teacher(cfg.teacher, heads=heads, **cfg.overrides)
    loaded = create_teacher(cfg.teacher, checkpoint=cfg.checkpoint, **cfg.overrides)
    if loaded.spec.heads == heads:
        saved_names = read_teacher_checkpoint(cfg.checkpoint).get("class_names")
        if isinstance(saved_names, dict) and saved_names != class_names:
            log(f"warning: {cfg.checkpoint}: its class names differ from the dataset's (same counts); "
                "the heads are fine-tuned with the dataset's names")
        return loaded
    if not cfg.reset_heads:
        raise CheckpointError(f"{cfg.checkpoint}: heads {_fmt_heads(loaded.spec.heads)} differ from the "
                              f"dataset's {_fmt_heads(heads)}; pass --reset-heads to re-initialise them")
    spec = loaded.spec
    fresh = create_teacher(cfg.teacher, heads=heads, **spec.config, frame_stride=spec.frame_stride,
                           bgr=spec.bgr, mean=spec.mean, std=spec.std)
    own, src = fresh.state_dict(), loaded.state_dict()
    kept = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    fresh.load_state_dict({**own, **kept}, strict=True)
    dropped = ", ".join(sorted(src.keys() - own.keys())) or "none"
    log(f"{cfg.checkpoint}: heads {_fmt_heads(spec.heads)} -> {_fmt_heads(heads)}; re-initialised "
        f"{', '.join(sorted(own.keys() - kept.keys()))}; dropped {dropped}")
    return fresh


def _fmt_heads(heads: dict[str, int]) -> str:
    """'verb:97, noun:300'."""
    return "{" + ", ".join(f"{k}:{v}" for k, v in heads.items()) + "}"


def zoom_crop(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = ZOOM_SCALE
              ) -> torch.Tensor:
    """(B,3,T,S,S) -> same shape: one random square crop per clip (same in every frame), resized back."""
    b, c, t, s, _ = x.shape
    side = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, [b, c * t, s, s], align_corners=False).to(x)
    out = F.grid_sample(x.reshape(b, c * t, s, s), grid, mode="bilinear", padding_mode="border",
                        align_corners=False)
    return out.reshape(b, c, t, s, s)


@torch.no_grad()
def predict_clips(model: Teacher, frames: np.ndarray, *, batch_size: int = 16, device: str = "cpu"
                  ) -> dict[str, np.ndarray]:
    """Logits per head (N, C) float32 of uint8 clips (N,T,S,S,3), in eval mode and full precision."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {h: [] for h in model.spec.heads}
    for i in range(0, len(frames), batch_size):
        _, logits = model(model.preprocess(torch.from_numpy(frames[i:i + batch_size]).to(device)))
        for h in out:
            out[h].append(logits[h].float().cpu().numpy())
    return {h: np.concatenate(v) if v else np.zeros((0, model.spec.heads[h]), np.float32)
            for h, v in out.items()}


def segment_metrics(logits: dict[str, np.ndarray], segment_ids: list[str], labels: dict[str, np.ndarray],
                    class_names: dict[str, list[str]], motion_pairs: list[tuple[str, str]] | None = None
                    ) -> dict[str, Any]:
    """Per-segment top-1 (clip logits averaged per segment), per-class accuracy, motion-pair accuracy.

    motion_pairs (verb names): "top1" is plain top-1 over the segments labelled with a pair verb;
    "pair_top1" asks only whether the true verb scores above its partner (the motion itself).
    """
    segs, first, inverse = np.unique(np.asarray(segment_ids, dtype=str), return_index=True,
                                     return_inverse=True)
    counts = np.bincount(inverse, minlength=len(segs))[:, None]
    out: dict[str, Any] = {"segments": len(segs), "top1": {}, "mean_class_top1": {}, "per_class": {}}
    seg_logits: dict[str, np.ndarray] = {}
    for head, names in class_names.items():
        sums = np.zeros((len(segs), logits[head].shape[1]), np.float64)
        np.add.at(sums, inverse, logits[head])
        seg_logits[head] = sums / counts
        truth, pred = labels[head][first], seg_logits[head].argmax(1)
        valid = truth >= 0
        correct = pred[valid] == truth[valid]
        out["top1"][head] = float(correct.mean()) if valid.any() else None
        per_class = {names[c]: {"top1": float(correct[truth[valid] == c].mean()),
                                "segments": int((truth[valid] == c).sum())}
                     for c in np.unique(truth[valid])}
        out["per_class"][head] = per_class
        out["mean_class_top1"][head] = (float(np.mean([v["top1"] for v in per_class.values()]))
                                        if per_class else None)
    if motion_pairs and "verb" in class_names:
        out["motion_pairs"] = _motion_pair_metrics(seg_logits["verb"], labels["verb"][first],
                                                   class_names["verb"], motion_pairs)
    return out


def _motion_pair_metrics(seg_logits: np.ndarray, truth: np.ndarray, names: list[str],
                         pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Top-1 and within-pair accuracy over the segments labelled with a motion-pair verb."""
    partner = {names.index(a): names.index(b) for a, b in pairs} | {names.index(b): names.index(a)
                                                                   for a, b in pairs}
    rows = np.array([i for i, t in enumerate(truth) if int(t) in partner], np.int64)
    if rows.size == 0:
        return {"pairs": [list(p) for p in pairs], "segments": 0, "top1": None, "pair_top1": None}
    t = truth[rows]
    other = np.array([partner[int(v)] for v in t])
    top1 = seg_logits[rows].argmax(1) == t
    within = seg_logits[rows, t] > seg_logits[rows, other]
    return {"pairs": [list(p) for p in pairs], "segments": int(rows.size), "top1": float(top1.mean()),
            "pair_top1": float(within.mean())}


def _optimizer(model: Teacher, cfg: TeacherTrainConfig, steps: int, warmup: int
               ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW without decay on biases/norms; linear warm-up over `warmup` steps, cosine to 0 at `steps`."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _fit(model: Teacher, data: ClipFrames, cfg: TeacherTrainConfig, log: Callable[[str], None]
         ) -> tuple[torch.optim.AdamW, list[dict[str, Any]]]:
    """Train `model` on every clip of `data` in each of cfg.epochs epochs, in a seeded random order."""
    device, heads = resolve_device(cfg.device), list(model.spec.heads)
    per_epoch = -(-len(data.clip_ids) // cfg.batch_size)
    opt, sched = _optimizer(model, cfg, per_epoch * cfg.epochs, per_epoch * cfg.warmup_epochs)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    labels = {h: torch.from_numpy(data.labels[h]) for h in heads}
    history = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        rows = rng.permutation(len(data.clip_ids))
        start, total, seen = time.perf_counter(), 0.0, 0
        hits = {h: [0, 0] for h in heads}
        bar = tqdm(range(0, len(rows), cfg.batch_size), unit="batch", desc=f"epoch {epoch}/{cfg.epochs}",
                   disable=not cfg.progress, leave=False)
        for i in bar:
            idx = np.sort(rows[i:i + cfg.batch_size])
            x = zoom_crop(model.preprocess(torch.from_numpy(data.frames[idx]).to(device)), gen)
            y = {h: labels[h][idx].to(device) for h in heads}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                _, logits = model(x)
            losses = [F.cross_entropy(logits[h].float(), y[h], ignore_index=-1) for h in heads
                      if (y[h] >= 0).any()]
            if not losses:
                continue
            loss = torch.stack(losses).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
            opt.step()
            sched.step()
            value = loss.detach().item()
            total, seen = total + value * len(idx), seen + len(idx)
            for h in heads:
                valid = y[h] >= 0
                hits[h][0] += int((logits[h].argmax(1)[valid] == y[h][valid]).sum())
                hits[h][1] += int(valid.sum())
            bar.set_postfix(loss=f"{value:.3f}", clips_s=f"{seen / (time.perf_counter() - start):.0f}")
        seconds = time.perf_counter() - start
        row = {"epoch": epoch, "loss": total / max(seen, 1), "seconds": seconds,
               "clips_per_s": seen / seconds if seconds > 0 else None, "lr": sched.get_last_lr()[0],
               "train_top1": {h: n / d if d else None for h, (n, d) in hits.items()}}
        history.append(row)
        acc = " ".join(f"{h} {v:.3f}" for h, v in row["train_top1"].items() if v is not None)
        log(f"epoch {epoch}/{cfg.epochs}  loss {row['loss']:.4f}  train top-1 {acc}  "
            f"{seconds:.1f} s  {row['clips_per_s'] or 0:.0f} clips/s")
    return opt, history


def _train_cfg_yaml(cfg: TeacherTrainConfig, spec: TeacherSpec) -> dict[str, Any]:
    """The checkpoint's cfg: slowfast-style DATA/SOLVER/TRAIN/MODEL sections plus this run's settings."""
    run = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "progress"}
    run["annotations"] = list(cfg.annotations)
    return {"DATA": {"NUM_FRAMES": spec.num_frames, "SAMPLING_RATE": spec.frame_stride,
                     "TRAIN_CROP_SIZE": spec.img_size, "MEAN": list(spec.mean), "STD": list(spec.std)},
            "SOLVER": {"OPTIMIZING_METHOD": "adamw", "BASE_LR": cfg.lr, "WEIGHT_DECAY": cfg.weight_decay,
                       "MAX_EPOCH": cfg.epochs, "WARMUP_EPOCHS": cfg.warmup_epochs, "LR_POLICY": "cosine"},
            "TRAIN": {"BATCH_SIZE": cfg.batch_size},
            "MODEL": {"NUM_CLASSES": list(spec.heads.values())},
            "EGOCACHE": {"train_teacher": run}}


def train_teacher(cfg: TeacherTrainConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune cfg.teacher on the manifest's training clips, evaluate, save; return the summary."""
    cfg.check()
    began = time.perf_counter()
    manifest = load_manifest(cfg.dataset, list(cfg.annotations), cfg.root, eval_clips=cfg.eval_clips)
    for line in manifest.problems:
        log(f"skipped annotation {line}")
    heads = {h: len(names) for h, names in manifest.class_names.items()}
    train = [c for c in manifest.clips if c.split == "train"]
    val = [c for c in manifest.clips if c.split == "validation"]
    if not train:
        raise EgocacheError(f"{', '.join(cfg.annotations)}: no training clips (split 'train') to fine-tune on")
    device = resolve_device(cfg.device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        model = build_teacher(cfg, heads, manifest.class_names, log)
        spec = model.spec
        train = training_views(train, cfg.train_views)
        clip_bytes = spec.num_frames * spec.img_size ** 2 * 3
        need_gb = (len(train) + len(val)) * clip_bytes / 1e9
        if need_gb > cfg.max_frames_gb:
            raise EgocacheError(f"{len(train) + len(val)} clips of {spec.num_frames}x{spec.img_size}px need "
                                f"{need_gb:.1f} GB of frames in memory (max_frames_gb={cfg.max_frames_gb}); "
                                "fine-tune a large dataset from a frame cache, or fewer train views/clips")
        log(f"{cfg.teacher}: heads {_fmt_heads(heads)}; decoding {len(train)} training and {len(val)} "
            f"validation clips ({need_gb * 1e3:.0f} MB of frames)")
        t0 = time.perf_counter()
        head_names = list(heads)
        train_data = decode_teacher_clips(train, spec, head_names, progress=cfg.progress, log=log)
        val_data = decode_teacher_clips(val, spec, head_names, progress=cfg.progress, log=log)
        decode_s = time.perf_counter() - t0
        if not train_data.clip_ids:
            raise EgocacheError(f"none of the {len(train)} training clips could be decoded")
        model.to(device)
        t0 = time.perf_counter()
        opt, history = _fit(model, train_data, cfg, log)
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = Path(cfg.out)
    metrics, logits_path = None, None
    if val_data.clip_ids:
        logits = predict_clips(model, val_data.frames, batch_size=cfg.batch_size, device=device)
        pairs = manifest.motion_pairs or None
        metrics = segment_metrics(logits, val_data.segment_ids, val_data.labels, manifest.class_names, pairs)
        logits_path = out.with_suffix(".val.npz")
        write_atomic(logits_path, lambda tmp: np.savez(tmp, clip_ids=np.array(val_data.clip_ids),
                                                       **{f"logits_{h}": v for h, v in logits.items()}))
    else:
        log("no validation clips could be evaluated (split 'validation')")
    eval_s = time.perf_counter() - t0
    model.cpu()
    save_teacher_checkpoint(model, out, cfg=_train_cfg_yaml(cfg, spec), epoch=cfg.epochs,
                    extra={"optimizer_state": opt.state_dict(), "class_names": manifest.class_names})
    summary = {
        "teacher": cfg.teacher, "checkpoint": str(out), "init_checkpoint": cfg.checkpoint,
        "dataset": cfg.dataset, "manifest_sha256": manifest.sha256, "heads": heads,
        "spec": {"num_frames": spec.num_frames, "frame_stride": spec.frame_stride, "img_size": spec.img_size},
        "config": {k: v for k, v in dataclasses.asdict(cfg).items()
                   if k not in ("teacher", "dataset", "out", "checkpoint", "progress")},
        "clips": {"train": len(train_data.clip_ids), "validation": len(val_data.clip_ids),
                  "failed": len(train_data.failures) + len(val_data.failures)},
        "failures": train_data.failures + val_data.failures, "annotation_problems": len(manifest.problems),
        "epochs": history, "validation": metrics,
        "validation_logits": str(logits_path) if logits_path else None,
        "seconds": {"decode": decode_s, "train": train_s, "eval": eval_s,
                    "total": time.perf_counter() - began},
    }
    write_json_atomic(out.with_suffix(".json"), summary, sort_keys=False)
    return summary
