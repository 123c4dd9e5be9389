"""Per-segment evaluation, the one evaluator of teachers and students alike.

The paper's metric (§4.1): "densely sample clips from each video and average their predictions".
A segment's score is the mean of its clips' softmax probabilities by default (`average="softmax"`),
or the mean of their logits (`average="logits"`); top-1 is the arg-max of that score. Segments whose
label is -1 (unknown) do not count for that head. Per-class accuracy is the fraction of a class's
segments predicted right; `mean_class_acc` averages it over the classes present. When motion-pair
verbs are given (pair by pair: a, b, c, d, ...), the same top-1 is also reported on their segments
alone, and `motion_pairs_within_acc` asks only whether the true verb scores above its partner.

`train-teacher` (on its validation clips), `test-teacher` (the centre clip and the multi-view test),
`train-student` (every epoch) and `egocache benchmark` (the teacher's cached logits) all call
`evaluate_predictions`, so their figures agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np


@dataclass
class Predictions:
    """Clip-level outputs over an evaluation split, in cache-row order."""

    logits: dict[str, np.ndarray]   # head -> (n, C) float32
    labels: dict[str, np.ndarray]   # head -> (n,) int64, -1 = unknown
    segments: np.ndarray            # (n,) int64 segment code

    @staticmethod
    def concat(parts: list["Predictions"]) -> "Predictions":
        """Join per-rank predictions in rank order (ranks with no clips contribute nothing)."""
        parts = [p for p in parts if len(p.segments)]
        if not parts:
            raise ValueError("no predictions to join: every rank evaluated zero clips")
        heads = parts[0].logits
        return Predictions(logits={h: np.concatenate([p.logits[h] for p in parts]) for h in heads},
                           labels={h: np.concatenate([p.labels[h] for p in parts]) for h in heads},
                           segments=np.concatenate([p.segments for p in parts]))


def segment_scores(logits: np.ndarray, segments: np.ndarray, *, average: str = "softmax"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Average clip scores per segment -> (segment codes sorted, (S, C) mean softmax or mean logits)."""
    if logits.ndim != 2 or len(logits) != len(segments):
        raise ValueError(f"logits {logits.shape} and segments {segments.shape} do not match")
    x = logits.astype(np.float64)
    if average == "softmax":
        x = np.exp(x - x.max(axis=1, keepdims=True))
        x /= x.sum(axis=1, keepdims=True)
    elif average != "logits":
        raise ValueError(f"average must be 'softmax' or 'logits', got {average!r}")
    codes, inverse = np.unique(segments, return_inverse=True)
    sums = np.zeros((len(codes), x.shape[1]))
    np.add.at(sums, inverse, x)
    counts = np.bincount(inverse, minlength=len(codes))[:, None]
    return codes, sums / counts


def segment_labels(labels: np.ndarray, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One label per segment -> (segment codes sorted, labels); raise if a segment's clips disagree."""
    codes, inverse = np.unique(segments, return_inverse=True)
    out = np.full(len(codes), -2, dtype=np.int64)
    for i, lab in zip(inverse, labels):
        if out[i] not in (-2, lab):
            raise ValueError(f"segment code {codes[i]} has clips with labels {out[i]} and {lab}")
        out[i] = lab
    return codes, out


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy of each class over its segments, (num_classes,), NaN for classes with none."""
    hits = np.bincount(labels, weights=(pred == labels).astype(np.float64), minlength=num_classes)
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.maximum(total, 1), np.nan)


def head_metrics(logits: np.ndarray, labels: np.ndarray, segments: np.ndarray, class_names: list[str],
                 *, average: str = "softmax", motion_pairs: Iterable[tuple[int, int]] | None = None
                 ) -> dict[str, Any]:
    """Top-1 per segment and per clip, per-class and mean-class accuracy of one head; with `motion_pairs`
    (class-id pairs) also top-1 and within-pair accuracy over the segments of those classes."""
    codes, scores = segment_scores(logits, segments, average=average)
    _, seg_labels = segment_labels(labels, segments)
    known = seg_labels >= 0
    pred = scores.argmax(axis=1)
    clip_known = labels >= 0
    out: dict[str, Any] = {
        "segments": int(known.sum()),
        "clips": int(clip_known.sum()),
        "top1_acc": _mean(pred[known] == seg_labels[known]),
        "clip_top1_acc": _mean(logits[clip_known].argmax(axis=1) == labels[clip_known]),
    }
    per_class = per_class_accuracy(pred[known], seg_labels[known], len(class_names))
    present = ~np.isnan(per_class)
    out["mean_class_acc"] = float(per_class[present].mean()) if present.any() else None
    out["per_class_acc"] = {class_names[c]: float(per_class[c]) for c in np.flatnonzero(present)}
    if motion_pairs is not None:
        partner = {a: b for a, b in motion_pairs} | {b: a for a, b in motion_pairs}
        motion = known & np.isin(seg_labels, np.asarray(sorted(partner), dtype=np.int64))
        truth = seg_labels[motion]
        other = np.asarray([partner[int(t)] for t in truth], dtype=np.int64)
        rows = np.flatnonzero(motion)
        out["motion_pairs_segments"] = int(motion.sum())
        out["motion_pairs_top1_acc"] = _mean(pred[motion] == truth)
        out["motion_pairs_within_acc"] = _mean(scores[rows, truth] > scores[rows, other])
    return out


def _mean(hits: np.ndarray) -> float | None:
    """Mean of a boolean array as a float, None when it is empty (no segment to score)."""
    return float(hits.mean()) if hits.size else None


def evaluate_predictions(pred: Predictions, class_names: dict[str, list[str]], *, average: str = "softmax",
                         motion_verbs: list[str] | None = None, motion_head: str = "verb") -> dict[str, Any]:
    """Metrics of every head; the first head's (verb's) top-1 is also at the top level as `top1_acc`."""
    heads: dict[str, Any] = {}
    for head, logits in pred.logits.items():
        names = class_names[head]
        motion = None
        if motion_verbs and head == motion_head:
            missing = sorted(set(motion_verbs) - set(names))
            if missing or len(motion_verbs) % 2:
                raise ValueError(f"motion-pair verbs {motion_verbs} are not pairs of {head} classes"
                                 + (f" ({', '.join(missing)} missing)" if missing else ""))
            ids = [names.index(v) for v in motion_verbs]
            motion = list(zip(ids[0::2], ids[1::2]))
        heads[head] = head_metrics(logits, pred.labels[head], pred.segments, names,
                                   average=average, motion_pairs=motion)
    main = motion_head if motion_head in heads else next(iter(heads))
    out: dict[str, Any] = {"averaging": average, "main_head": main, "top1_acc": heads[main]["top1_acc"],
                           "mean_class_acc": heads[main]["mean_class_acc"], "heads": heads}
    for key in ("motion_pairs_top1_acc", "motion_pairs_within_acc"):
        if key in heads[main]:
            out[key] = heads[main][key]
    return out


