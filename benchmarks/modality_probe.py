"""What does a trained IMU student read its answer from? Its per-class accuracy with the IMU as is, zeroed,
and shuffled across the clips of each batch, side by side.

    python benchmarks/modality_probe.py RUN CACHE [--split validation] [--classes cut,pour] [--batch 64]

RUN is a `train-student` folder (its last.pt), CACHE the cache it was trained from. Per-segment top-1 and
per-class accuracy through the one evaluator (core/metrics.py), and for each of --classes what its
segments were predicted as. An IMU that carries nothing for a class (zeroing or shuffling it changes
nothing) leaves that class's accuracy as it is; a student that learned a class from the IMU alone loses it.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from egocache.cache import CacheDataset, cache_loader
from egocache.core.metrics import Predictions, evaluate_predictions, segment_labels, segment_scores
from egocache.student.checkpoint import student_from_checkpoint

MODES = ("as-is", "zeroed", "shuffled")


def predictions(student: torch.nn.Module, batches: list[dict], mode: str, seed: int = 0) -> Predictions:
    """Clip predictions of `student` with the batches' IMU replaced as `mode` says."""
    gen = torch.Generator().manual_seed(seed)
    logits: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[np.ndarray]] = {}
    segments = []
    with torch.no_grad():
        for b in batches:
            x = {k: v for k, v in b.items() if isinstance(v, torch.Tensor)}
            if mode == "zeroed":
                x["imu"] = torch.zeros_like(x["imu"])
            elif mode == "shuffled":
                x["imu"] = x["imu"][torch.randperm(len(x["imu"]), generator=gen)]
            for head, value in student(x)["logits"].items():
                logits.setdefault(head, []).append(value.numpy())
                labels.setdefault(head, []).append(b["label"][head].numpy())
            segments.append(b["segment"].numpy())
    return Predictions({h: np.concatenate(v) for h, v in logits.items()},
                       {h: np.concatenate(v) for h, v in labels.items()}, np.concatenate(segments))


def main() -> None:
    """Print one line per IMU mode."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("cache")
    ap.add_argument("--split", default="validation")
    ap.add_argument("--classes", default="cut,pour", help="classes whose predictions are listed")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    student, _ = student_from_checkpoint(f"{args.run}/last.pt")
    student.eval()
    if not student.spec.imu:
        raise SystemExit(f"{args.run}: variant {student.spec.name} reads no IMU")
    ds = CacheDataset(args.cache, split=args.split, frames=student.frames, require_imu=True)
    batches = list(cache_loader(ds, batch_size=args.batch, shuffle=False, seed=0, num_workers=0))
    names = ds.info.heads["verb"]
    motion = ds.info.source.get("motion_pair_verbs")
    for mode in MODES:
        pred = predictions(student, batches, mode)
        m = evaluate_predictions(pred, ds.info.heads, motion_verbs=motion)
        verb = m["heads"]["verb"]
        _, scores = segment_scores(pred.logits["verb"], pred.segments)
        _, lab = segment_labels(pred.labels["verb"], pred.segments)
        guess = scores.argmax(1)
        listed = {c: {names[k]: int((guess[lab == names.index(c)] == k).sum())
                      for k in np.unique(guess[lab == names.index(c)])} for c in args.classes.split(",")}
        print(f"{mode:9s} top-1 {100 * m['top1_acc']:.1f}  motion pairs "
              f"{100 * (m.get('motion_pairs_top1_acc') or 0):.1f}  per class "
              f"{ {k: round(v, 2) for k, v in verb['per_class_acc'].items()} }  predicted as {listed}", flush=True)


if __name__ == "__main__":
    main()
