"""Fine-tune a teacher on the labelled clips of a manifest; save it in the official checkpoint layout.

The paper fine-tunes MotionFormer on Ego4D before caching it; `train_teacher` does that for any
registered teacher and dataset adapter. The clips come from the manifest (`train_clips` spread over
each training segment, `eval_clips` over each validation segment, as extraction cuts them) and their
frames from the shared frame plan (pipeline/frames.py: decoded at max(teacher size, frame_size)),
so the teacher trains on the pixels extraction feeds it. Every clip's teacher frames are decoded once
into memory before training: right for the small configs and CPU runs; `max_frames_gb` refuses a run
whose frames would not fit. Clips that cannot be decoded are reported one line each and skipped.

Training: AdamW (no weight decay on biases and norms) with linear warm-up and cosine decay,
cross-entropy summed over the heads (label -1 ignored), bf16 autocast on CUDA. The heads are the
dataset's, or those of them the teacher's registration names (teachers.trained_heads: objects-tiny
trains noun only); the checkpoint's class_names and the evaluation cover those heads. Each clip gets one
random zoom-crop shared by all its frames, so the motion between frames is kept. No horizontal flip:
it would swap left/right head motions (e.g. a yaw to one side or the other) without swapping their
labels. Data order and crops are pure functions of (seed, epoch, batch) (core/order.py).

Resume: the training state (weights, optimizer, scheduler, epoch, batch, step, partial sums, RNG) is
saved to OUT.partial.pt at every epoch end and every `checkpoint_every` steps; the same command after
a kill resumes from it and ends with the same checkpoint and metrics as an uninterrupted run. A
finished run (OUT and OUT.json made with the same settings and data) is reported, not repeated.

Evaluation on the validation clips with core/metrics.py (the benchmark's evaluator) from the
teacher's outputs computed as extraction computes them (teachers.base.run_teacher). Outputs: the
checkpoint (model_state, cfg YAML, epoch, optimizer_state, class_names), OUT with suffix .json
(the summary) and .val.npz (validation clip ids and logits, which the saved checkpoint reproduces).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from egocache.core.device import resolve_device
from egocache.core.files import finished_summary, write_atomic, write_json_atomic
from egocache.core.metrics import Predictions, evaluate_predictions
from egocache.core.order import epoch_permutation, step_generator
from egocache.errors import AudioError, CheckpointError, ClipError, ConfigError, EgocacheError
from egocache.pipeline.audio import FREQ_BINS, spectrogram_frames, video_spectrograms
from egocache.pipeline.datasets import Clip, Manifest, clips_by_video
from egocache.pipeline.frames import FramePlan, decode_clip_frames
from egocache.pipeline.options import TeacherTrainConfig
from egocache.pipeline.sampling import clip_seconds
from egocache.pipeline.teachers import (Teacher, TeacherSpec, create_teacher, is_spec_file, read_teacher_checkpoint,
                                        save_teacher_checkpoint, trained_heads)
from egocache.pipeline.teachers.base import run_teacher

GRAD_CLIP_NORM = 1.0
ZOOM_SCALE = (0.75, 1.0)                       # side of the random crop, as a fraction of the frame
SPEC_MASK = (20, 20)                           # an audio teacher's SpecAugment: at most this many frequency
                                               # bins and STFT frames (0.2 s) masked per clip
RUN_KEYS_FREE = ("progress", "checkpoint_every", "device")   # may differ between a run and its resume


@dataclass
class TeacherClips:
    """The teacher input of clips, in memory, with their ids and labels (failed clips left out)."""

    inputs: np.ndarray                 # (N, T, S, S, 3) uint8 RGB frames at the teacher's input size, or an
                                       # audio teacher's (N, FREQ_BINS, M) float16 log spectrograms
    clip_ids: list[str]
    segment_ids: list[str]
    labels: dict[str, np.ndarray]      # head -> (N,) int64, -1 = unlabelled
    failures: list[str]                # "clip_id: reason", one per skipped clip

    def predictions(self, logits: dict[str, np.ndarray]) -> Predictions:
        """These clips' logits as core/metrics Predictions (segments coded in sorted id order)."""
        _, codes = np.unique(np.asarray(self.segment_ids, dtype=str), return_inverse=True)
        return Predictions(logits, self.labels, codes.astype(np.int64))


def _kept(clips: list[Clip], inputs: np.ndarray, ok: np.ndarray, heads: list[str], failures: list[str]
          ) -> TeacherClips:
    """The TeacherClips of the clips marked `ok`."""
    kept = [c for c, good in zip(clips, ok) if good]
    return TeacherClips(inputs if ok.all() else inputs[ok], [c.clip_id for c in kept], [c.segment_id for c in kept],
                        {h: np.array([c.labels.get(h, -1) for c in kept], np.int64) for h in heads}, failures)


def decode_teacher_clips(clips: list[Clip], plan: FramePlan, heads: list[str], *, progress: bool = False,
                         log: Callable[[str], None] = print) -> TeacherClips:
    """Decode the teacher frames of `clips` (grouped by video, each video decoded once) into memory."""
    t, s = plan.num_frames, plan.teacher_size
    frames = np.empty((len(clips), t, s, s, 3), np.uint8)
    ok = np.zeros(len(clips), bool)
    failures: list[str] = []
    bar = tqdm(total=len(clips), unit="clip", desc="decode", disable=not progress)
    for path, rows in clips_by_video(clips).items():
        decoded, _, _ = decode_clip_frames(path, [clips[i].centre_s for i in rows], plan)
        for i, res in zip(rows, decoded):
            if isinstance(res, ClipError):
                failures.append(f"{clips[i].clip_id}: {res}")
                log(f"skipped clip {failures[-1]}")
            else:
                frames[i], ok[i] = res.teacher, True
        bar.update(len(rows))
    bar.close()
    return _kept(clips, frames, ok, heads, failures)


def audio_teacher_clips(clips: list[Clip], seconds: float, heads: list[str], *, progress: bool = False,
                        log: Callable[[str], None] = print) -> TeacherClips:
    """The log spectrograms of `clips`' audio windows (centre -+ seconds / 2), float16 as extraction caches
    them (pipeline/audio.video_spectrograms: each video's audio read once per run of its clips)."""
    out = np.empty((len(clips), FREQ_BINS, spectrogram_frames(seconds)), np.float16)
    ok = np.zeros(len(clips), bool)
    failures: list[str] = []
    bar = tqdm(total=len(clips), unit="clip", desc="audio", disable=not progress)
    for path, rows in clips_by_video(clips).items():
        windows = video_spectrograms(path, [clips[i].centre_s - seconds / 2 for i in rows], seconds)
        for i, res in zip(rows, windows):
            if isinstance(res, AudioError):
                failures.append(f"{clips[i].clip_id}: audio: {res}")
                log(f"skipped clip {failures[-1]}")
            else:
                out[i], ok[i] = res, True
        bar.update(len(rows))
    bar.close()
    return _kept(clips, out, ok, heads, failures)


def build_teacher(cfg: TeacherTrainConfig, heads: dict[str, int], class_names: dict[str, list[str]],
                  log: Callable[[str], None] = print) -> Teacher:
    """The teacher to fine-tune: registered init or `cfg.checkpoint`, with heads sized for the data.

    A checkpoint whose heads differ from `heads` is refused unless `cfg.reset_heads`, which keeps
    every other weight and re-initialises the classifier tensors whose shape changed.
    """
    overrides = dict(cfg.teacher_overrides)
    if cfg.checkpoint is None:
        return create_teacher(cfg.teacher, heads=heads, **overrides)
    loaded = create_teacher(cfg.teacher, checkpoint=cfg.checkpoint, **overrides)
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


def spec_mask(x: torch.Tensor, generator: torch.Generator, widths: tuple[int, int] = SPEC_MASK) -> torch.Tensor:
    """(B,1,F,M) -> same: per clip one random band of frequency bins and one span of frames set to 0, the
    normalised input's centre (SpecAugment's frequency and time masks, Park et al. 2019)."""
    b, _, f, m = x.shape
    out = x
    for size, width, shape in ((f, widths[0], (b, 1, f, 1)), (m, widths[1], (b, 1, 1, m))):
        w = torch.randint(0, width + 1, (b,), generator=generator)
        start = (torch.rand(b, generator=generator) * (size - w + 1)).long()
        pos = torch.arange(size)
        mask = (pos >= start[:, None]) & (pos < (start + w)[:, None])
        out = out.masked_fill(mask.reshape(shape).to(out.device), 0.0)
    return out


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


def _run_settings(cfg: TeacherTrainConfig) -> dict[str, Any]:
    """The settings that decide the result (a resume or a rerun must match them)."""
    return json.loads(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_KEYS_FREE}))


class _Fit:
    """The training loop with its resumable state in OUT.partial.pt."""

    def __init__(self, model: Teacher, data: TeacherClips, cfg: TeacherTrainConfig, manifest: Manifest,
                 device: torch.device, log: Callable[[str], None]) -> None:
        self.model, self.data, self.cfg, self.device, self.log = model, data, cfg, device, log
        self.partial = Path(f"{cfg.out}.partial.pt")
        self.per_epoch = len(data.clip_ids) // cfg.batch_size + bool(len(data.clip_ids) % cfg.batch_size)
        self.opt, self.sched = _optimizer(model, cfg, self.per_epoch * cfg.epochs, self.per_epoch * cfg.warmup_epochs)
        self.key = {"settings": _run_settings(cfg), "manifest_sha256": manifest.sha256,
                    "train_clips": list(data.clip_ids)}
        self.epoch = self.batch = self.step = 0
        self.sums: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        if self.partial.exists():
            self._resume()
        else:
            torch.manual_seed(cfg.seed)                # dropout / stochastic depth

    def _resume(self) -> None:
        """Restore the state a killed run saved, if it was made by the same settings and data."""
        ckpt = read_teacher_checkpoint(self.partial)
        state = ckpt.get("train_state")
        if not isinstance(state, dict) or state.get("key") != self.key:
            raise CheckpointError(f"{self.partial}: a partial run made with other settings or data; delete "
                                  f"it or use another --out")
        self.model.load_state_dict(ckpt["model_state"])
        self.opt.load_state_dict(ckpt["optimizer_state"])
        self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.sums, self.history = state["sums"], state["history"]
        torch.set_rng_state(state["rng"])
        self.log(f"resuming at epoch {self.epoch + 1} batch {self.batch} (step {self.step}) from {self.partial}")

    def _save(self) -> None:
        """Write the training state to OUT.partial.pt (atomically)."""
        save_teacher_checkpoint(self.model, self.partial, cfg={}, epoch=self.epoch, extra={
            "optimizer_state": self.opt.state_dict(),
            "train_state": {"key": self.key, "scheduler": self.sched.state_dict(), "epoch": self.epoch,
                            "batch": self.batch, "step": self.step, "sums": self.sums,
                            "history": self.history, "rng": torch.get_rng_state()}})

    def run(self) -> list[dict[str, Any]]:
        """Train the remaining epochs (every clip once per epoch, in an order of (seed, epoch))."""
        cfg, data, heads = self.cfg, self.data, list(self.model.spec.heads)
        labels = {h: torch.from_numpy(data.labels[h]) for h in heads}
        while self.epoch < cfg.epochs:
            self.model.train()
            rows = epoch_permutation(len(data.clip_ids), cfg.seed, self.epoch).numpy()
            sums = self.sums or {"loss": 0.0, "seen": 0, "hits": {h: [0, 0] for h in heads}}
            start = time.perf_counter()
            bar = tqdm(range(self.batch, self.per_epoch), unit="batch", disable=not cfg.progress, leave=False,
                       desc=f"epoch {self.epoch + 1}/{cfg.epochs}")
            for b in bar:
                idx = np.sort(rows[b * cfg.batch_size:(b + 1) * cfg.batch_size])
                value = self._step(idx, {h: labels[h][idx].to(self.device) for h in heads},
                                   step_generator(cfg.seed, self.epoch, b), sums)
                self.batch, self.step = b + 1, self.step + 1
                bar.set_postfix(loss=f"{value:.3f}")
                if self.step % cfg.checkpoint_every == 0 and self.batch < self.per_epoch:
                    self.sums = sums
                    self._save()
            seconds = time.perf_counter() - start
            row = {"epoch": self.epoch + 1, "loss": sums["loss"] / max(sums["seen"], 1),
                   "lr": self.sched.get_last_lr()[0],
                   "train_top1": {h: n / d if d else None for h, (n, d) in sums["hits"].items()}}
            self.history.append(row)
            acc = " ".join(f"{h} {v:.3f}" for h, v in row["train_top1"].items() if v is not None)
            self.log(f"epoch {row['epoch']}/{cfg.epochs}  loss {row['loss']:.4f}  train top-1 {acc}  "
                     f"{seconds:.1f} s")
            self.epoch, self.batch, self.sums = self.epoch + 1, 0, None
            self._save()
        return self.history

    def _step(self, idx: np.ndarray, y: dict[str, torch.Tensor], gen: torch.Generator,
              sums: dict[str, Any]) -> float:
        """One optimizer step on clips `idx`; adds to the epoch's loss and hit counts."""
        model, device = self.model, self.device
        x = model.preprocess(torch.from_numpy(self.data.inputs[idx]).to(device))
        x = spec_mask(x, gen) if model.spec.input == "audio" else zoom_crop(x, gen)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            _, logits = model(x)
        losses = [F.cross_entropy(logits[h].float(), y[h], ignore_index=-1) for h in y if (y[h] >= 0).any()]
        if not losses:
            return 0.0
        loss = torch.stack(losses).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP_NORM)
        self.opt.step()
        self.sched.step()
        value = loss.detach().item()
        sums["loss"] += value * len(idx)
        sums["seen"] += len(idx)
        for h in y:
            valid = y[h] >= 0
            sums["hits"][h][0] += int((logits[h].argmax(1)[valid] == y[h][valid]).sum())
            sums["hits"][h][1] += int(valid.sum())
        return value


def _train_cfg_yaml(cfg: TeacherTrainConfig, spec: TeacherSpec) -> dict[str, Any]:
    """The checkpoint's cfg: slowfast-style DATA/SOLVER/TRAIN/MODEL sections plus this run's settings."""
    return {"DATA": {"NUM_FRAMES": spec.num_frames, "SAMPLING_RATE": spec.frame_stride,
                     "TRAIN_CROP_SIZE": spec.img_size, "MEAN": list(spec.mean), "STD": list(spec.std)},
            "SOLVER": {"OPTIMIZING_METHOD": "adamw", "BASE_LR": cfg.lr, "WEIGHT_DECAY": cfg.weight_decay,
                       "MAX_EPOCH": cfg.epochs, "WARMUP_EPOCHS": cfg.warmup_epochs, "LR_POLICY": "cosine"},
            "TRAIN": {"BATCH_SIZE": cfg.batch_size},
            "MODEL": {"NUM_CLASSES": list(spec.heads.values())},
            "EGOCACHE": {"train_teacher": _run_settings(cfg)}}


def _finished(cfg: TeacherTrainConfig, sha: str) -> dict[str, Any] | None:
    """The summary of a finished run with the same settings and data at cfg.out, if there is one."""
    summary = finished_summary(cfg.out, Path(cfg.out).with_suffix(".json"))
    if summary is None:
        return None
    same = summary.get("settings") == _run_settings(cfg) and summary.get("manifest_sha256") == sha
    return summary if same else None


def _check_memory(cfg: TeacherTrainConfig, clips: int, per_clip: float, what: str) -> float:
    """GB that `clips` inputs of `per_clip` bytes take; EgocacheError over cfg.max_frames_gb."""
    need_gb = clips * per_clip / 1e9
    if need_gb > cfg.max_frames_gb:
        raise EgocacheError(f"{clips} clips of {what} need {need_gb:.1f} GB in memory (--max-frames-gb "
                            f"{cfg.max_frames_gb}); fine-tune a large dataset from a frame cache, or fewer "
                            "train/eval clips")
    return need_gb


def _decode_frames(cfg: TeacherTrainConfig, spec: TeacherSpec, train: list[Clip], val: list[Clip], heads: list[str],
                   log: Callable[[str], None]) -> tuple[TeacherClips, TeacherClips, int]:
    """The training and validation clips' teacher frames under the shared frame plan, and its decode size."""
    plan = FramePlan(spec.num_frames, spec.frame_stride, spec.img_size, (), cfg.frame_size)
    need_gb = _check_memory(cfg, len(train) + len(val), spec.num_frames * spec.img_size ** 2 * 3,
                            f"{spec.num_frames}x{spec.img_size}px frames")
    log(f"{cfg.teacher}: heads {_fmt_heads({h: spec.heads[h] for h in heads})}; decoding {len(train)} training and {len(val)} "
        f"validation clips ({need_gb * 1e3:.0f} MB of frames, decoded at {plan.decode_size}px)")
    return (decode_teacher_clips(train, plan, heads, progress=cfg.progress, log=log),
            decode_teacher_clips(val, plan, heads, progress=cfg.progress, log=log), plan.decode_size)


def _read_audio(cfg: TeacherTrainConfig, spec: TeacherSpec, train: list[Clip], val: list[Clip], heads: list[str],
                log: Callable[[str], None]) -> tuple[TeacherClips, TeacherClips, int]:
    """An audio teacher's training and validation spectrograms (its clip span's windows); decode size 0."""
    seconds = clip_seconds(spec.num_frames, spec.frame_stride)
    need_gb = _check_memory(cfg, len(train) + len(val), FREQ_BINS * spectrogram_frames(seconds) * 2,
                            f"{FREQ_BINS}x{spectrogram_frames(seconds)} spectrograms")
    log(f"{cfg.teacher}: heads {_fmt_heads({h: spec.heads[h] for h in heads})}; reading the audio of {len(train)} "
        f"training and {len(val)} validation clips ({need_gb * 1e3:.0f} MB of spectrograms, {seconds:.3f}-s windows)")
    return (audio_teacher_clips(train, seconds, heads, progress=cfg.progress, log=log),
            audio_teacher_clips(val, seconds, heads, progress=cfg.progress, log=log), 0)


def train_teacher(cfg: TeacherTrainConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune cfg.teacher on the manifest's training clips, evaluate, save; return the summary."""
    began = time.perf_counter()
    if is_spec_file(cfg.teacher):
        raise ConfigError(f"--teacher {cfg.teacher}: train-teacher fine-tunes registered teachers; an external "
                          "teacher's model is fixed (fine-tune it in its own code, export it again)")
    manifest = cfg.load_manifest()
    done = _finished(cfg, manifest.sha256)
    if done is not None:
        log(f"{cfg.out}: already trained with these settings and data (summary {Path(cfg.out).with_suffix('.json')})")
        return done
    for line in manifest.problems:
        log(f"skipped annotation {line}")
    # the dataset's heads, or those of them the teacher's registration trains (objects-tiny: noun)
    heads = trained_heads(cfg.teacher, {h: len(names) for h, names in manifest.class_names.items()})
    class_names = {h: manifest.class_names[h] for h in heads}
    train = [c for c in manifest.clips if c.split == "train"]
    val = [c for c in manifest.clips if c.split == "validation"]
    if not train:
        raise EgocacheError(f"{', '.join(cfg.annotations)}: no training clips (split 'train') to fine-tune on")
    device = resolve_device(cfg.device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = build_teacher(cfg, heads, class_names, log)
        spec = model.spec
        t0 = time.perf_counter()
        if spec.input == "audio":
            train_data, val_data, decode_size = _read_audio(cfg, spec, train, val, list(heads), log)
        else:
            train_data, val_data, decode_size = _decode_frames(cfg, spec, train, val, list(heads), log)
        decode_s = time.perf_counter() - t0
        if not train_data.clip_ids:
            raise EgocacheError(f"none of the {len(train)} training clips could be decoded")
        model.to(device)
        t0 = time.perf_counter()
        fit = _Fit(model, train_data, cfg, manifest, device, log)
        history = fit.run()
        train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = Path(cfg.out)
    metrics, logits_path = None, None
    if val_data.clip_ids:
        _, logits = run_teacher(model, val_data.inputs, device, cfg.batch_size)
        metrics = evaluate_predictions(val_data.predictions(logits), class_names,
                                       motion_verbs=manifest.motion_pair_verbs)
        logits_path = out.with_suffix(".val.npz")
        write_atomic(logits_path, lambda tmp: np.savez(tmp, clip_ids=np.array(val_data.clip_ids),
                                                       **{f"logits_{h}": v for h, v in logits.items()}))
    else:
        log("no validation clips could be evaluated (split 'validation')")
    eval_s = time.perf_counter() - t0
    model.cpu()
    save_teacher_checkpoint(model, out, cfg=_train_cfg_yaml(cfg, spec), epoch=cfg.epochs,
                            extra={"optimizer_state": fit.opt.state_dict(), "class_names": class_names})
    summary = {
        "teacher": cfg.teacher, "checkpoint": str(out), "init_checkpoint": cfg.checkpoint,
        "dataset": cfg.dataset, "manifest_sha256": manifest.sha256, "heads": heads,
        "spec": {"num_frames": spec.num_frames, "frame_stride": spec.frame_stride, "img_size": spec.img_size,
                 "decode_size": decode_size, "input": spec.input},
        "settings": _run_settings(cfg),
        "clips": {"train": len(train_data.clip_ids), "validation": len(val_data.clip_ids),
                  "failed": len(train_data.failures) + len(val_data.failures)},
        "failures": train_data.failures + val_data.failures, "annotation_problems": len(manifest.problems),
        "epochs": history, "validation": metrics,
        "validation_logits": str(logits_path) if logits_path else None,
        "seconds": {"decode": decode_s, "train": train_s, "eval": eval_s, "total": time.perf_counter() - began},
    }
    write_json_atomic(out.with_suffix(".json"), summary, sort_keys=False)
    fit.partial.unlink(missing_ok=True)
    return summary
