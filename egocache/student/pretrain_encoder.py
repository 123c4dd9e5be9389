"""Supervised pretraining of the student's ResNet-18 on a labelled image set, written as a torchvision file.

EgoDistill's image encoder starts from ImageNet weights; `egocache pretrain-image-encoder` makes such a
start on a machine without them: it trains our ResNet-18 (student/resnet.py) to classify a labelled
image set that is not the benchmark (the CLI passes synth/images.py's generic shapes; any `ImageSource`
works) and writes a file `--image-weights` loads strictly. Users with real ImageNet weights pass theirs.

Data: every epoch draws `images` fresh images (labels balanced to within one image, in an order of
(seed, epoch), each image a pure function of (seed, epoch, position)), batch by batch, so memory holds
one batch and no image is seen twice: the running train top-1 already estimates accuracy on unseen
images. The held-out set is drawn from keys no training image uses and is the same for every seed.
Inputs are normalised exactly as the student normalises its frames (models.ImageEncoder.normalize:
/255, ImageNet mean/std); augmentation is light: a random square crop (side 0.7-1 of the image)
resized back, and a horizontal flip, per image, from a generator of (seed, epoch, batch).
Training: AdamW (no decay on biases and norms), linear warm-up, cosine decay to 0, cross-entropy on a
K-class head; BatchNorm statistics are learnt as usual and saved.

Resume: the training state (weights, head, optimizer, scheduler, epoch, batch, step, partial sums,
history) goes to OUT.partial.pt at every epoch end and every `checkpoint_every` steps (atomic,
core/torchio.py); the same command after a kill continues from it and ends with the same weights as an
uninterrupted run. A finished run (OUT and its summary made with the same settings and image set) is
reported, not repeated.

Output: OUT is a plain torchvision `resnet18` state_dict (conv1 ... layer4, BatchNorm statistics and
counters, `fc.weight` (1000, 512) and `fc.bias` (1000,)): rows 0..K-1 of fc are the trained K-class
head, rows K..999 are zero (no such classes), so `load_image_weights` loads it strictly and
`forward_head` scores the K classes. OUT with suffix .json holds the settings, the image set's spec,
the held-out top-1, the per-epoch history and the seconds spent (training steps including drawing their
images; held-out scoring; of both, drawing images).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from egocache.core.device import resolve_device, torch_threads
from egocache.core.files import finished_summary, storage_error, write_json_atomic
from egocache.core.order import epoch_permutation, step_generator
from egocache.core.torchio import safe_load, save_atomic
from egocache.errors import CheckpointError, ConfigError, StorageError
from egocache.student.config import PretrainEncoderOptions
from egocache.student.models import ImageEncoder
from egocache.student.resnet import FEATURE_DIM, IMAGENET_CLASSES

CROP_SIDE = (0.7, 1.0)            # random crop side, as a fraction of the image side
TRAIN_STREAM, HELD_OUT_STREAM = 0, 1   # first element of every image key: training and held-out images never share one
RUN_KEYS_FREE = ("out", "progress", "checkpoint_every", "device", "torch_threads")   # may differ on resume
PARTIAL_FORMAT = 1


class ImageSource(Protocol):
    """A labelled image set: `render(labels, keys)` -> uint8 (n, size, size, 3) RGB, image i a pure
    function of (labels[i], keys[i]); `spec()` says what the set is (JSON-ready)."""

    num_classes: int
    size: int

    @property
    def class_names(self) -> list[str]: ...

    def render(self, labels: np.ndarray, keys: Sequence[Sequence[int]]) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B,3,S,S) -> same shape: per image a random square crop (side CROP_SIDE of S) resized back, and a
    horizontal flip with probability 1/2."""
    b = x.shape[0]
    side = torch.empty(b).uniform_(*CROP_SIDE, generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - side)[:, None]
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = side * flip, side, shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False).to(x)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def run_settings(opts: PretrainEncoderOptions) -> dict[str, Any]:
    """The settings that decide the result (a resume or a rerun must match them)."""
    return {k: v for k, v in dataclasses.asdict(opts).items() if k not in RUN_KEYS_FREE}


def summary_path(out: str | os.PathLike[str]) -> Path:
    """Where the summary of weights file `out` goes: OUT with suffix .json."""
    return Path(out).with_suffix(".json")


def torchvision_state(encoder: ImageEncoder, head: nn.Linear) -> dict[str, torch.Tensor]:
    """The backbone's state_dict with fc (1000, 512) holding `head`'s K rows first and zeros after."""
    state = {k: v.detach().clone() for k, v in encoder.backbone.state_dict().items()}
    k = head.out_features
    state["fc.weight"] = torch.zeros(IMAGENET_CLASSES, FEATURE_DIM)
    state["fc.bias"] = torch.zeros(IMAGENET_CLASSES)
    state["fc.weight"][:k], state["fc.bias"][:k] = head.weight.detach(), head.bias.detach()
    return {name: t.cpu() for name, t in state.items()}


class _Pretrain:
    """The training loop with its resumable state in OUT.partial.pt."""

    def __init__(self, opts: PretrainEncoderOptions, images: ImageSource, device: torch.device,
                 log: Callable[[str], None]) -> None:
        self.opts, self.images, self.device, self.log = opts, images, device, log
        self.partial = Path(f"{opts.out}.partial.pt")
        self.per_epoch = opts.images // opts.batch_size
        self.used = self.per_epoch * opts.batch_size          # images per epoch, in whole batches
        torch.manual_seed(opts.seed)
        self.encoder = ImageEncoder().to(device)
        self.head = nn.Linear(FEATURE_DIM, images.num_classes).to(device)
        params = [p for p in (*self.encoder.backbone.parameters(), *self.head.parameters()) if p.requires_grad]
        self.opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim > 1], "weight_decay": opts.weight_decay},
                                      {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=opts.lr)
        steps = self.per_epoch * opts.epochs
        warmup = int(round(opts.warmup * steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.key = {"settings": run_settings(opts), "image_set": images.spec()}
        self.epoch = self.batch = self.step = 0
        self.sums: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []
        self.seconds = {"generate": 0.0, "train": 0.0}
        if self.partial.exists():
            self._resume()

    def _resume(self) -> None:
        """Restore the state a killed run saved, if it was made by the same settings and image set."""
        state = safe_load(self.partial, "pretrain-image-encoder partial")
        if not isinstance(state, dict) or state.get("format") != PARTIAL_FORMAT or state.get("key") != self.key:
            raise CheckpointError(f"{self.partial}: a partial run made with other settings or another image set; "
                                  "delete it or choose another OUT")
        self.encoder.load_state_dict(state["encoder"])
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.sums, self.history, self.seconds = state["sums"], state["history"], state["seconds"]
        self.log(f"resuming at epoch {self.epoch + 1} batch {self.batch} (step {self.step}) from {self.partial}")

    def _save(self) -> None:
        """Write the training state to OUT.partial.pt (atomically)."""
        save_atomic(self.partial, {"format": PARTIAL_FORMAT, "key": self.key, "encoder": self.encoder.state_dict(),
                                   "head": self.head.state_dict(), "optimizer": self.opt.state_dict(),
                                   "scheduler": self.sched.state_dict(), "epoch": self.epoch, "batch": self.batch,
                                   "step": self.step, "sums": self.sums, "history": self.history,
                                   "seconds": self.seconds})

    def _batch(self, positions: np.ndarray, keys: list[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B,3,S,S) and labels of the images at `positions` (label = position mod K)."""
        labels = positions % self.images.num_classes
        t0 = time.perf_counter()
        pixels = self.images.render(labels, keys)
        self.seconds["generate"] += time.perf_counter() - t0
        x = self.encoder.normalize(torch.from_numpy(pixels).to(self.device))
        return x, torch.from_numpy(labels).to(self.device)

    def run(self) -> list[dict[str, Any]]:
        """Train the remaining epochs."""
        opts = self.opts
        while self.epoch < opts.epochs:
            self.encoder.train()
            self.head.train()
            order = epoch_permutation(self.used, opts.seed, self.epoch).numpy()
            sums = self.sums or {"loss": 0.0, "hits": 0, "seen": 0}
            bar = tqdm(range(self.batch, self.per_epoch), unit="batch", disable=not opts.progress, leave=False,
                       desc=f"epoch {self.epoch + 1}/{opts.epochs}")
            for b in bar:
                t0 = time.perf_counter()
                pos = order[b * opts.batch_size:(b + 1) * opts.batch_size]
                x, y = self._batch(pos, [(TRAIN_STREAM, opts.seed, self.epoch, int(p)) for p in pos])
                logits = self.head(self.encoder.backbone(augment(x, step_generator(opts.seed, self.epoch, b))))
                loss = F.cross_entropy(logits, y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
                sums["loss"] += loss.item() * len(y)
                sums["hits"] += int((logits.argmax(1) == y).sum())
                sums["seen"] += len(y)
                self.batch, self.step = b + 1, self.step + 1
                self.seconds["train"] += time.perf_counter() - t0
                bar.set_postfix(loss=f"{sums['loss'] / sums['seen']:.3f}", top1=f"{sums['hits'] / sums['seen']:.3f}",
                                img_s=f"{self.step * opts.batch_size / self.seconds['train']:.0f}")
                if self.step % opts.checkpoint_every == 0 and self.batch < self.per_epoch:
                    self.sums = sums
                    self._save()
            bar.close()
            row = {"epoch": self.epoch + 1, "loss": sums["loss"] / sums["seen"],
                   "train_top1": sums["hits"] / sums["seen"], "lr": self.sched.get_last_lr()[0],
                   "train_seconds": round(self.seconds["train"], 2)}
            self.history.append(row)
            self.log(f"epoch {row['epoch']}/{opts.epochs}  loss {row['loss']:.4f}  train top-1 "
                     f"{row['train_top1']:.3f}  {self.step * opts.batch_size / self.seconds['train']:.0f} images/s")
            self.epoch, self.batch, self.sums = self.epoch + 1, 0, None
            self._save()
        return self.history

    @torch.no_grad()
    def held_out_top1(self) -> float:
        """Top-1 of the trained encoder and head on the held-out images (eval mode, no augmentation)."""
        self.encoder.eval()
        self.head.eval()
        n, hits = self.opts.val_images, 0
        for start in range(0, n, self.opts.batch_size):
            pos = np.arange(start, min(n, start + self.opts.batch_size))
            x, y = self._batch(pos, [(HELD_OUT_STREAM, int(p)) for p in pos])
            hits += int((self.head(self.encoder.backbone(x)).argmax(1) == y).sum())
        return hits / n


def _finished(opts: PretrainEncoderOptions, images: ImageSource) -> dict[str, Any] | None:
    """The summary of a finished run with the same settings and image set at opts.out, if there is one."""
    summary = finished_summary(opts.out, summary_path(opts.out))
    if summary is None:
        return None
    same = summary.get("settings") == run_settings(opts) and summary.get("image_set") == images.spec()
    return summary if same else None


def _check_writable(out: str) -> None:
    """StorageError naming OUT's folder now, rather than after training, if it cannot be written."""
    folder = Path(out).resolve().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error("create folder", folder, exc) from exc
    if not os.access(folder, os.W_OK):
        raise StorageError(f"cannot write {out}: folder {folder} is not writable")


def pretrain_image_encoder(opts: PretrainEncoderOptions, images: ImageSource, *,
                           log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train ResNet-18 on `images`, write opts.out (torchvision format) and its summary; return the summary."""
    began = time.perf_counter()
    if images.num_classes > IMAGENET_CLASSES:
        raise ConfigError(f"--classes: at most {IMAGENET_CLASSES} fit a torchvision fc, got {images.num_classes}")
    done = _finished(opts, images)
    if done is not None:
        log(f"{opts.out}: already trained with these settings and image set (summary {summary_path(opts.out)})")
        return done
    _check_writable(opts.out)
    device = resolve_device(opts.device)
    with torch_threads(opts.torch_threads), \
            torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        threads = torch.get_num_threads()
        log(f"pretraining resnet18 on {images.num_classes} classes of {images.size}px images: {opts.epochs} "
            f"epochs of {opts.images // opts.batch_size * opts.batch_size} fresh images, {opts.val_images} "
            "held out")
        fit = _Pretrain(opts, images, device, log)
        history = fit.run()
        t0 = time.perf_counter()
        top1 = fit.held_out_top1()
        eval_s = time.perf_counter() - t0
    save_atomic(opts.out, torchvision_state(fit.encoder, fit.head))
    steps_images = fit.step * opts.batch_size
    summary = {
        "weights": str(opts.out), "format": "torchvision resnet18 state_dict; fc rows 0..K-1 = the trained "
                                            "K-class head, rows K..999 zero",
        "settings": run_settings(opts), "image_set": images.spec(), "class_names": images.class_names,
        "held_out": {"images": opts.val_images, "top1": top1, "chance": 1.0 / images.num_classes},
        "epochs": history,
        "images_per_s": {"train": steps_images / max(fit.seconds["train"], 1e-9),
                         "generate": (steps_images + opts.val_images) / max(fit.seconds["generate"], 1e-9)},
        "seconds": {"train": fit.seconds["train"], "eval": eval_s, "generate": fit.seconds["generate"],
                    "total": time.perf_counter() - began},
        "torch_threads": threads, "device": str(device),
    }
    write_json_atomic(summary_path(opts.out), summary, sort_keys=False)
    fit.partial.unlink(missing_ok=True)
    log(f"held-out top-1 {top1:.3f} on {opts.val_images} images (chance {1 / images.num_classes:.3f}); "
        f"wrote {opts.out}")
    return summary
