"""Student training from the cache alone: the self-supervised IMU stage and distillation (paper §3.3–3.4).

Stages: "pretrain" (IMU variants, and listentolook with audio in place of the IMU) trains f_M, h and Π with InfoNCE(h(z⁰,zᵀ), f_M(IMU)) + L1(Π, z_V)
with f_I frozen, from per-frame features computed once (image_features.py); its checkpoint lives in
OUT/pretrain/. "distill" starts from OUT/pretrain/last.pt (or `init`) and trains with the variant's
loss (losses.student_loss); it writes OUT/last.pt, OUT/best.pt (best verb top-1), metrics (evaluate.py).

Determinism and resume: the data order is a pure function of (seed, epoch) (`EpochSampler`); the run
checkpoints at every epoch end and every `checkpoint_every` optimizer steps inside an epoch, with the
resolved config, model, optimizer, scheduler, epoch, batch-in-epoch, step, partial loss sums and every
rank's torch RNG state (dropout). `resume` skips the batches already done, so a killed CPU run resumed
gives the same metrics as an uninterrupted one. The last incomplete global batch of an epoch is dropped.

DDP: torchrun's RANK/WORLD_SIZE/LOCAL_RANK select it (gloo on CPU, nccl on GPU). Each rank takes a
contiguous 1/W share of every global batch (`batch_size` is global). InfoNCE gathers the whole batch
(differentiable all_gather) so its negatives are those of the global batch. BatchNorm: SyncBatchNorm on
GPU; on CPU (SyncBatchNorm needs a GPU) each rank normalises with its own share's statistics, so a CPU
DDP run matches a single process only within a tolerance (exactly, up to float summation order, where
no BatchNorm is trained, e.g. visonly-distill with a frozen image encoder). Rank 0 logs and checkpoints.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

from egocache.errors import CheckpointError, EgocacheError
from egocache.student.config import CacheFacts, TrainConfig, check_cache, parse_teacher_weights
from egocache.core.device import resolve_device
from egocache.core.files import write_json_atomic
from egocache.core.order import epoch_permutation
from egocache.student.checkpoint import load_student_checkpoint, save_student_checkpoint
from egocache.core.metrics import Predictions, evaluate_predictions
from egocache.student.evaluate import epoch_metrics_path, predict, write_metrics_csv, write_segment_predictions
from egocache.student.inputs import inputs_from_cache, write_run_inputs
from egocache.student.image_features import WithImageFeatures, encoder_digest, ensure_image_features, feature_key
from egocache.student.losses import LossConfig, pretrain_loss, student_loss
from egocache.student.models import Student, build_student

RUN_KEYS_FREE = {"num_workers", "device", "checkpoint_every", "out", "cache", "eval_batch_size", "stage", "init",
                 "skip_verify", "features_dir", "eval_every"}


@dataclass
class Runtime:
    """Where this process runs: rank and world size (1 without torchrun) and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """True on the rank that logs and checkpoints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.world > 1:
            dist.barrier()


def init_runtime(device: str = "auto") -> Runtime:
    """Detect torchrun from its environment, join the process group (nccl on GPU, gloo on CPU), pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank=local if world > 1 else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(rank, world, dev)


class EpochSampler(Sampler[int]):
    """This rank's share of each full global batch of a permutation seeded by (seed, epoch)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_rank = batch_size // world
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Order of `epoch`, starting after its first `skip` global batches (on resume)."""
        self.epoch, self.skip = epoch, skip

    @property
    def batches_per_epoch(self) -> int:
        """Full global batches per epoch (the last incomplete one is dropped)."""
        return self.n // self.batch

    def __len__(self) -> int:
        """Indices this rank yields for the current epoch."""
        return (self.batches_per_epoch - self.skip) * self.per_rank

    def __iter__(self) -> Iterator[int]:
        """Indices of this rank's share of every remaining global batch, in batch order."""
        perm = epoch_permutation(self.n, self.seed, self.epoch)
        for b in range(self.skip, self.batches_per_epoch):
            start = b * self.batch + self.rank * self.per_rank
            yield from perm[start:start + self.per_rank].tolist()


class StepModule(nn.Module):
    """One training/eval step's forward as `forward(batch)`, so DDP can wrap it: pretrain or distill."""

    def __init__(self, student: Student, stage: str) -> None:
        super().__init__()
        self.student, self.stage = student, stage

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Student outputs from cached image features ("image_features") or from raw "frames"."""
        s = self.student
        if self.stage == "pretrain":
            f = batch["image_features"]
            return s.pretrain_from_image_features(f[:, :s.frames], f[:, s.frames:], s.sensor_input(batch))
        if "image_features" in batch:
            return s.forward_from_image_features(batch["image_features"], s.sensor_input(batch))
        return s(batch)


def _base(ds: Any) -> Any:
    """The CacheDataset under a WithImageFeatures wrapper (or the dataset itself)."""
    return getattr(ds, "base", ds)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a (nested) batch dict to `device`."""
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


class _GatherBatch(torch.autograd.Function):
    """all_gather along the batch axis whose backward sums every rank's gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.rows = dist.get_rank(), t.shape[0]
        out = t.new_empty((dist.get_world_size() * t.shape[0], *t.shape[1:]))
        dist.all_gather_single(out, t.contiguous())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def _gather(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """Every rank's `t` concatenated in rank order, differentiable (identity in one process)."""
    return t if rt.world == 1 else _GatherBatch.apply(t)


def _rng_states(rt: Runtime) -> list[torch.Tensor]:
    """Every rank's torch RNG state (CPU, then CUDA when used), gathered for rank 0's checkpoint."""
    mine = torch.get_rng_state() if rt.device.type != "cuda" else torch.cat(
        [torch.get_rng_state(), torch.cuda.get_rng_state(rt.device)])
    if rt.world == 1:
        return [mine]
    states: list[Any] = [None] * rt.world
    dist.all_gather_object(states, mine)
    return states


def _set_rng_state(states: list[torch.Tensor], rt: Runtime) -> None:
    """Restore this rank's RNG state saved by `_rng_states`."""
    state = states[rt.rank]
    cpu = torch.get_rng_state().numel()
    torch.set_rng_state(state[:cpu])
    if rt.device.type == "cuda":
        torch.cuda.set_rng_state(state[cpu:], rt.device)


class StageRun:
    """One stage (pretrain or distill) of one run: model, data, optimizer, loop, checkpoints, metrics."""

    def __init__(self, stage: str, cfg: TrainConfig, facts: CacheFacts, rt: Runtime, *, resume: bool,
                 progress: bool, log: Callable[[str], None]) -> None:
        self.stage, self.cfg, self.facts, self.rt, self.progress, self.log = stage, cfg, facts, rt, progress, log
        self.dir = Path(cfg.out) / "pretrain" if stage == "pretrain" else Path(cfg.out)
        self.ckpt = self.dir / "last.pt"
        self.epochs = cfg.pretrain_epochs if stage == "pretrain" else int(cfg.epochs or 0)
        self.milestones = (cfg.pretrain_milestones if stage == "pretrain" else cfg.milestones) or []
        self.state: dict[str, Any] | None = None
        if self.ckpt.exists():
            if not resume:
                raise EgocacheError(f"{self.ckpt} exists: pass --resume to continue that run, or choose "
                                    f"another --out")
            self.state = load_student_checkpoint(self.ckpt)
            self._check_same_run(self.state)

    def _check_same_run(self, state: dict[str, Any]) -> None:
        """Refuse to resume a checkpoint made with other settings or from another cache."""
        now = self.cfg.to_dict()
        saved = {**TrainConfig().to_dict(), **state["config"]}   # settings added since: their defaults
        diff = ", ".join(f"{k}={saved.get(k)!r}" for k in sorted(now)
                         if k not in RUN_KEYS_FREE and saved.get(k) != now[k])
        if diff:
            raise CheckpointError(f"{self.ckpt}: made with other settings ({diff}); resume with the same "
                                  f"options or use another --out")
        if state.get("cache_id") != self.facts.cache_id:
            raise CheckpointError(f"{self.ckpt}: made from another cache than {self.cfg.cache}")

    @property
    def done(self) -> bool:
        """Whether the checkpoint on disk already finished every epoch of this stage."""
        return self.state is not None and self.state["epoch"] >= self.epochs

    def build(self) -> None:
        """Student (fresh, initialised, or resumed), trainable parameters, datasets, optimizer, scheduler."""
        cfg, facts = self.cfg, self.facts
        torch.manual_seed(cfg.seed)
        student = build_student(cfg.variant, frames=cfg.frames, feature_dim=facts.feature_dim,
                                heads={h: len(facts.heads[h]) for h in cfg.heads},
                                image_weights=cfg.image_weights, audio_shape=facts.audio_shape,
                                aux={name: size for _, name, size, _, _ in facts.aux} or None)
        init = self._init_path() if self.stage == "distill" and self.state is None else None
        if self.state is not None:
            student.load_state_dict(self.state["model"])
        elif init is not None:
            keys = student.load_state_dict(load_student_checkpoint(init)["model"], strict=False)
            if keys.unexpected_keys or keys.missing_keys:
                raise CheckpointError(f"{init}: does not fit a {cfg.variant} student with N={cfg.frames}: missing "
                                      f"{keys.missing_keys[:5]}, unexpected {keys.unexpected_keys[:5]}")
            self.log(f"distill: initialised from {init}")
        elif student.imu_encoder is not None:
            student.imu_encoder.set_input_stats(torch.zeros(len(facts.imu_std)), torch.tensor(facts.imu_std))
        elif student.audio_encoder is not None:
            assert facts.audio_mean is not None and facts.audio_std is not None
            student.audio_encoder.set_input_stats(torch.tensor(facts.audio_mean, dtype=torch.float32),
                                                  torch.tensor(facts.audio_std, dtype=torch.float32))
        frozen = self.stage == "pretrain" or cfg.freeze_image_encoder
        student.freeze_image_encoder(frozen)
        if self.stage == "pretrain":
            student.classifiers.requires_grad_(False)
        elif student.predictor is not None:
            student.predictor.requires_grad_(False)
        self.student = student.to(self.rt.device)
        self.module: nn.Module = StepModule(self.student, self.stage)
        if self.rt.world > 1:
            if self.rt.device.type == "cuda":
                self.module = nn.SyncBatchNorm.convert_sync_batchnorm(self.module)
            self.module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.rt.device.index] if self.rt.device.type == "cuda" else None)
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, self.milestones, gamma=cfg.lr_decay)
        if self.state is not None:
            self.opt.load_state_dict(self.state["optimizer"])
            self.sched.load_state_dict(self.state["scheduler"])
        self.train_ds = self._dataset("train", frozen)
        self.val_ds = self._dataset("validation", frozen) if self.stage == "distill" and facts.val_clips else None
        self.val_ds_segments = _base(self.val_ds).segment_ids if self.val_ds is not None else []
        weighting, weights = parse_teacher_weights(cfg.teacher_weights, cfg.teachers)
        self.losses = LossConfig(alpha=cfg.alpha, beta=cfg.beta, tau=float(cfg.tau or 1.0), nce_tau=cfg.nce_tau,
                                 pretrain_nce=cfg.pretrain_nce, pretrain_l1=cfg.pretrain_l1,
                                 teachers=tuple(cfg.teachers), weighting=weighting, weights=weights,
                                 weight_tau=cfg.teacher_weight_tau, feature_teacher=cfg.feature_target,
                                 aux=tuple((t, name, weight, loss) for t, name, _, weight, loss in facts.aux))

    def _init_path(self) -> Path | None:
        """Checkpoint the distill stage starts from: `init`, else OUT/pretrain/last.pt if it exists."""
        if self.cfg.init:
            return Path(self.cfg.init)
        default = Path(self.cfg.out) / "pretrain" / "last.pt"
        if default.exists():
            if load_student_checkpoint(default)["epoch"] < self.cfg.pretrain_epochs:
                raise CheckpointError(f"{default}: the pretrain stage is not finished; run --stage pretrain "
                                      f"--resume first")
            return default
        if self.cfg.has_pretrain:
            sensor = "audio" if self.cfg.variant == "listentolook" else "IMU"
            self.log(f"distill: no pretrain checkpoint ({default}); the {sensor} encoder starts from random weights")
        return None

    def _dataset(self, split: str, frozen: bool) -> Any:
        """The split's cache dataset, reading stored image features instead of frames when f_I is frozen."""
        from egocache.cache import CacheDataset, cache_loader

        cfg, rt = self.cfg, self.rt
        spec = self.student.spec
        common = dict(split=split, frames=cfg.frames, require_imu=spec.imu, require_audio=spec.audio,
                      selection=cfg.frame_selection, selection_seed=cfg.seed,
                      teachers=(list(dict.fromkeys([*cfg.teachers, *(t for t, *_ in self.facts.aux)]))
                                if self.student.distill or self.stage == "pretrain" else []))
        if not frozen:
            return CacheDataset(cfg.cache, read_audio=spec.audio, **common)
        first_last = self.stage == "pretrain"
        base = CacheDataset(cfg.cache, read_frames=False, read_audio=spec.audio, **common)
        # features of every frame the selection reads (a random selection's whole pool: one file for
        # every seed); WithImageFeatures picks each clip's N
        source = CacheDataset(cfg.cache, first_last=first_last, whole_pool=True, **common)
        key = feature_key(cache_id=self.facts.cache_id, rows=base.rows, frames=cfg.frames,
                          first_last=first_last, encoder=encoder_digest(self.student.image_encoder),
                          selection=cfg.frame_selection)
        s = self.student

        def encode(b: dict[str, torch.Tensor]) -> torch.Tensor:
            feats = s.image_features(b["frames"])
            return torch.cat([feats, s.image_features(b["first_last"])], 1) if first_last else feats

        path = ensure_image_features(
            Path(cfg.features_dir) if cfg.features_dir else Path(cfg.out) / "image_features", split, key, encode,
            lambda share: cache_loader(source, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                                       seed=cfg.seed, num_workers=cfg.num_workers, sampler=share),
            width=source.stored_frames + (2 if first_last else 0), device=rt.device, rank=rt.rank, world=rt.world,
            barrier=rt.barrier, progress=self.progress, log=self.log)
        return WithImageFeatures(base, path)

    def run(self) -> dict[str, Any]:
        """Train the remaining epochs; return the stage's final metrics."""
        from egocache.cache import cache_loader

        cfg, rt, st = self.cfg, self.rt, self.state or {}
        sampler = EpochSampler(len(self.train_ds), cfg.batch_size, cfg.seed, rt.rank, rt.world)
        loader = cache_loader(self.train_ds, batch_size=sampler.per_rank, shuffle=False, seed=cfg.seed,
                              num_workers=cfg.num_workers, drop_last=True, sampler=sampler)
        epoch, skip, step = int(st.get("epoch", 0)), int(st.get("batch", 0)), int(st.get("step", 0))
        self.best = st.get("best")
        partial = st.get("partial")
        rng = st.get("rng") if st else None
        if rng is None:
            torch.manual_seed(cfg.seed * 1_000_003 + rt.rank)  # dropout RNG independent of what ran before
        elif skip == 0:
            _set_rng_state(rng, rt)
            rng = None
        if st:
            self.log(f"{self.stage}: resuming at epoch {epoch + 1} batch {skip} (step {step}) from {self.ckpt}")
        metrics: dict[str, Any] = st.get("metrics", {})
        for epoch in range(epoch, self.epochs):
            sampler.set_epoch(epoch, skip)
            self.module.train()
            batches = iter(loader)
            if rng is not None:
                _set_rng_state(rng, rt)
                rng = None
            names, sums, count = None, None, skip
            if partial is not None:
                names, sums = partial["names"], torch.tensor(partial["sums"], dtype=torch.float64)
                partial = None
            t0, clips = time.perf_counter(), 0
            bar = tqdm(batches, total=sampler.batches_per_epoch - skip, disable=not (self.progress and rt.main),
                       desc=f"{self.stage} {epoch + 1}/{self.epochs}", unit="batch", leave=False, file=sys.stderr)
            for batch in bar:
                parts = self._step(to_device(batch, rt.device), step + 1)
                names = names or list(parts)
                vals = torch.stack([parts[k].detach().double().cpu() for k in names])
                sums = vals if sums is None else sums + vals
                count, step, clips = count + 1, step + 1, clips + cfg.batch_size
                bar.set_postfix(clips_s=f"{clips / (time.perf_counter() - t0):.0f}", loss=f"{vals[0]:.3f}")
                if step % cfg.checkpoint_every == 0 and count < sampler.batches_per_epoch:
                    self._save(epoch, count, step, {"names": names, "sums": sums.tolist()}, metrics)
            bar.close()
            seconds = time.perf_counter() - t0
            lr = self.opt.param_groups[0]["lr"]
            self.sched.step()
            metrics = self._epoch_metrics(epoch, step, lr, dict(zip(names or [], self._mean(sums, count))))
            self.log(self._line(metrics, seconds, clips))
            self._save(epoch + 1, 0, step, None, metrics)
            skip = 0
        if rt.main:
            write_json_atomic(self.dir / "metrics.json", {**metrics, "best": self.best, "config": cfg.to_dict()})
        rt.barrier()
        return metrics

    def _step(self, batch: dict[str, Any], step: int) -> dict[str, torch.Tensor]:
        """Forward, loss, backward, optimizer step on one batch; the loss and its parts.

        A loss that is not finite stops the run before the optimizer touches the weights, naming the
        step and the batch's cache rows; the checkpoints on disk stay those of the last good state.
        """
        out = self.module(batch)
        if self.stage == "pretrain":
            out = {**out, "pred_imu": _gather(out["pred_imu"], self.rt),
                   "imu_feature": _gather(out["imu_feature"], self.rt)}
            parts = pretrain_loss(out, batch, self.losses)
        else:
            parts = student_loss(out, batch, self.losses, distill=self.student.distill)
        finite = torch.isfinite(parts["loss"]).all().to(torch.float32).reshape(1)
        if self.rt.world > 1:   # every rank stops together (a rank left in all_reduce would hang)
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            rows = batch["row"].tolist()
            raise EgocacheError(f"{self.stage} step {step}: the loss is {parts['loss'].item()} (not finite) on the "
                                f"batch of cache rows {rows[:8]}{' ...' if len(rows) > 8 else ''}; "
                                f"stopped before updating the weights, {self.ckpt} holds the last good state")
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        return parts

    def _mean(self, sums: torch.Tensor | None, count: int) -> list[float]:
        """Epoch means of the loss parts over every rank's batches."""
        if sums is None:
            return []
        if self.rt.world > 1:
            sums = sums.clone()
            dist.all_reduce(sums)
            sums /= self.rt.world
        return (sums / max(count, 1)).tolist()

    def _epoch_metrics(self, epoch: int, step: int, lr: float, losses: dict[str, float]) -> dict[str, Any]:
        """The epoch's record (losses, lr, and for distill per-segment accuracy); rank 0 writes it."""
        m: dict[str, Any] = {"stage": self.stage, "variant": self.cfg.variant, "frames": self.cfg.frames,
                             "epoch": epoch + 1, "epochs": self.epochs, "step": step, "lr": lr, "losses": losses}
        if self.val_ds is not None and ((epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.epochs):
            pred = self._predict()
            if self.rt.main:
                m.update(evaluate_predictions(pred, self.facts.heads, average=self.cfg.average,
                                              motion_verbs=self.facts.motion_verbs))
                write_segment_predictions(self.dir, pred, self.val_ds_segments, average=self.cfg.average)
        if self.rt.main:
            write_json_atomic(epoch_metrics_path(self.dir, epoch + 1), m)
            write_metrics_csv(self.dir)
            top1 = m.get("top1_acc")
            if top1 is not None and (self.best is None or top1 > self.best["top1_acc"]):
                self.best = {"epoch": epoch + 1, "top1_acc": top1}
                self._save(epoch + 1, 0, step, None, m, path=self.dir / "best.pt", gather=False, resumable=False)
        return m

    def _predict(self) -> Predictions:
        """Clip predictions over the validation split, each rank a contiguous share, joined on every rank."""
        from egocache.cache import cache_loader

        share = np.array_split(np.arange(len(self.val_ds)), self.rt.world)[self.rt.rank].tolist()
        loader = cache_loader(self.val_ds, batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
                              shuffle=False, seed=self.cfg.seed, num_workers=self.cfg.num_workers, sampler=share)
        module = self.module.module if isinstance(self.module, nn.parallel.DistributedDataParallel) else self.module
        pred = predict(module, loader, self.rt.device, progress=self.progress and self.rt.main)
        if self.rt.world == 1:
            return pred
        parts: list[Any] = [None] * self.rt.world
        dist.all_gather_object(parts, pred)
        return Predictions.concat(parts)

    def _save(self, epoch: int, batch: int, step: int, partial: dict[str, Any] | None, metrics: dict[str, Any],
              *, path: Path | None = None, gather: bool = True, resumable: bool = True) -> None:
        """Checkpoint (rank 0 writes; every rank gives its RNG state): resolved config, weights and, if
        `resumable`, the training state (best.pt is not: a resume continues from last.pt, and the
        optimizer state would double its size)."""
        rng = _rng_states(self.rt) if gather else None
        if not self.rt.main:
            return
        state = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "partial": partial,
                 "rng": rng} if resumable else {}
        save_student_checkpoint(path or self.ckpt, {
            "stage": self.stage, "config": self.cfg.to_dict(),
            "model_config": self.student.config, "model": self.student.state_dict(), **state,
            "epoch": epoch, "batch": batch, "step": step,
            "best": self.best, "metrics": metrics, "cache_id": self.facts.cache_id})

    def _line(self, m: dict[str, Any], seconds: float, clips: int) -> str:
        """The per-epoch log line: losses, accuracy, lr, throughput."""
        losses = " ".join(f"{k}={v:.4f}" for k, v in m["losses"].items())
        acc = "" if m.get("top1_acc") is None else f" top1={100 * m['top1_acc']:.2f}%"
        if m.get("motion_pairs_top1_acc") is not None:
            acc += f" motion-pairs={100 * m['motion_pairs_top1_acc']:.2f}%"
        return (f"{self.stage} epoch {m['epoch']}/{self.epochs} step {m['step']} {losses}{acc} "
                f"lr={m['lr']:.2e} {clips / max(seconds, 1e-9):.0f} clips/s")


def train_student(cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Check the cache, then run the requested stage(s); returns {stage: final metrics} (rank 0's view)."""
    from egocache.cache import open_cache

    rt = init_runtime(cfg.device)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    emit = say if rt.main else (lambda msg: None)
    try:
        facts, cfg = check_cache(cfg)
        if cfg.batch_size % rt.world:
            raise EgocacheError(f"--batch-size {cfg.batch_size} is not divisible by the {rt.world} processes")
        if facts.train_clips < cfg.batch_size:
            raise EgocacheError(f"{cfg.cache}: {facts.train_clips} training clips, fewer than one batch of "
                                f"{cfg.batch_size}; lower --batch-size")
        if any(facts.skipped_without_imu.values()):
            emit(f"variant {cfg.variant} reads IMU: skipping the clips without it "
                 + ", ".join(f"{n} {split}" for split, n in facts.skipped_without_imu.items()))
        if any(facts.skipped_without_audio.values()):
            emit(f"variant {cfg.variant} reads audio: skipping the clips without it "
                 + ", ".join(f"{n} {split}" for split, n in facts.skipped_without_audio.items()))
        stages = ["pretrain", "distill"] if cfg.stage == "all" else [cfg.stage]
        if "pretrain" in stages and not cfg.has_pretrain:
            if cfg.stage == "pretrain":
                raise EgocacheError(f"variant {cfg.variant} has no IMU branch, hence no pretrain stage; "
                                    f"use --stage distill")
            emit(f"variant {cfg.variant} has no IMU branch: skipping the pretrain stage")
            stages.remove("pretrain")
        if rt.main:
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            write_json_atomic(Path(cfg.out) / "config.json", cfg.to_dict())
            write_run_inputs(cfg.out, inputs_from_cache(open_cache(cfg.cache), variant=cfg.variant,
                                                        frames=cfg.frames, heads=list(cfg.heads),
                                                        frame_selection=cfg.frame_selection))
        results: dict[str, Any] = {}
        for stage in stages:
            run = StageRun(stage, cfg, facts, rt, resume=resume, progress=progress, log=emit)
            if run.done:
                emit(f"{stage}: already finished in {run.ckpt}")
                results[stage] = run.state["metrics"] if run.state else {}
                continue
            run.build()
            results[stage] = run.run()
        return results
    finally:
        if rt.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def summary(results: dict[str, Any], out: str) -> dict[str, Any]:
    """A short JSON-ready summary of a finished run for the CLI."""
    final = results.get("distill") or results.get("pretrain") or {}
    return {"out": out, "stages": list(results), "epoch": final.get("epoch"), "losses": final.get("losses"),
            "top1_acc": final.get("top1_acc"), "motion_pairs_top1_acc": final.get("motion_pairs_top1_acc"),
            "metrics": str(Path(out) / "metrics.json")}
