"""What do the cached teacher's soft targets tell a student beyond the labels? Per split: the teacher's clip
top-1 on the verb head, how confident it is (mean top probability at the KD temperature, share of clips
above 0.9) and how far its targets are from the one-hot label (mean KL(one-hot || teacher), i.e. the CE
of the teacher's distribution on the label, and the entropy).

    python benchmarks/teacher_targets.py CACHE [--tau 1] [--head verb]

A teacher that is right and sure on nearly every training clip gives KD targets that are the labels
again: distillation then teaches what cross-entropy on the labels already does (no "dark knowledge").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from egocache.cache import CacheDataset, cache_loader


def target_stats(logits: np.ndarray, labels: np.ndarray, tau: float) -> dict[str, float]:
    """Top-1, confidence, label CE and entropy of the teacher's distributions softmax(logits / tau)."""
    keep = labels >= 0
    logits, labels = logits[keep].astype(np.float64), labels[keep]
    logp = torch.log_softmax(torch.from_numpy(logits) / tau, dim=1).numpy()
    p = np.exp(logp)
    top = p.max(1)
    return {"clips": int(len(labels)), "top1": float((p.argmax(1) == labels).mean()), "mean_top_p": float(top.mean()),
            "share_top_p_over_0.9": float((top > 0.9).mean()),
            "label_ce": float(-logp[np.arange(len(labels)), labels].mean()),
            "entropy": float(-(p * logp).sum(1).mean())}


def split_targets(cache: str, split: str, head: str) -> tuple[np.ndarray, np.ndarray]:
    """The cached teacher logits and labels of `split`'s ok clips on `head`."""
    ds = CacheDataset(cache, split=split, read_frames=False)
    logits, labels = [], []
    for b in cache_loader(ds, batch_size=256, shuffle=False, seed=0, num_workers=0):
        logits.append(b["logits"][head].float().numpy())
        labels.append(b["label"][head].numpy())
    return np.concatenate(logits), np.concatenate(labels)


def main() -> None:
    """Print one line per split."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cache")
    ap.add_argument("--tau", type=float, default=1.0, help="KD temperature (train-student --tau)")
    ap.add_argument("--head", default="verb")
    args = ap.parse_args()
    for split in ("train", "validation"):
        s = target_stats(*split_targets(args.cache, split, args.head), args.tau)
        print(f"{split:10s} clips {s['clips']:5d}  teacher top-1 {100 * s['top1']:.1f}  mean top p "
              f"{s['mean_top_p']:.3f}  top p > 0.9 {100 * s['share_top_p_over_0.9']:.1f} %  label CE "
              f"{s['label_ce']:.3f}  entropy {s['entropy']:.3f} (tau {args.tau:g})", flush=True)


if __name__ == "__main__":
    main()
