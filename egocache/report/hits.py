"""Per-segment 0/1 hits of a model on the validation split: what every interval the reports print resamples.

A student run's hits come from its OUT/segments.npz (student/evaluate.py), the teacher's from the cached
logits; both are per segment with the clips' softmax averaged, as the accuracies are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from egocache.core.metrics import Predictions, segment_labels, segment_scores
from egocache.errors import EgocacheError


@dataclass
class Hits:
    """Per-segment 0/1 hits of one setting, one column per seed, on the segments of `segment_ids`."""

    segment_ids: np.ndarray
    hits: np.ndarray          # (S, seeds) on the main head
    labels: np.ndarray        # (S,) class ids
    per_class: dict[str, float]   # class -> accuracy averaged over seeds


def _run_hits(path: Path, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment ids, hits, labels) of the labelled segments of a segments.npz, sorted by segment id."""
    from egocache.student.evaluate import read_segment_predictions

    if not path.is_file():
        raise EgocacheError(f"{path}: missing; the run did not finish an evaluation (rerun to resume it)")
    arrays = read_segment_predictions(path)
    if f"{head}_label" not in arrays:
        raise EgocacheError(f"{path}: has no head {head!r} (heads: "
                            f"{', '.join(k[:-6] for k in arrays if k.endswith('_label'))})")
    labels = arrays[f"{head}_label"]
    known = labels >= 0
    ids, hits, labels = arrays["segment_id"][known], (arrays[f"{head}_score"].argmax(axis=1) == labels)[known], \
        labels[known]
    order = np.argsort(ids)
    return ids[order], hits[order], labels[order]


def stack_runs(paths: list[Path], head: str, class_names: list[str]) -> Hits:
    """The hits of runs of one setting (e.g. its seeds), one column per run; they must share their segments."""
    cols, ids, labels = [], None, None
    for path in paths:
        sid, hit, lab = _run_hits(path, head)
        if ids is not None and not np.array_equal(ids, sid):
            raise EgocacheError(f"{path}: evaluated on other segments than {paths[0]}")
        ids, labels = sid, lab
        cols.append(hit)
    hits = np.stack(cols, axis=1)
    per_class = {class_names[c]: float(hits[labels == c].mean()) for c in np.unique(labels)}
    return Hits(ids, hits, labels, per_class)


def teacher_predictions(cache: str) -> tuple[Predictions, list[str], dict[str, list[str]]]:
    """The teacher's cached logits of the validation split as clip predictions, the split's segment ids
    (by segment code) and the class names per head: read once for metrics and hits alike."""
    from egocache.cache import CacheDataset

    ds = CacheDataset(cache, split="validation", read_frames=False)
    everything = ds[list(range(len(ds)))]
    pred = Predictions(logits={h: v.numpy() for h, v in everything["logits"].items()},
                       labels={h: v.numpy() for h, v in everything["label"].items()},
                       segments=everything["segment"].numpy())
    return pred, ds.segment_ids, ds.info.heads


def prediction_hits(pred: Predictions, segment_ids: list[str], head: str, names: list[str]) -> Hits:
    """Per-segment hits of clip predictions on `head` (softmax averaged per segment), sorted by segment id."""
    codes, scores = segment_scores(pred.logits[head], pred.segments)
    _, labels = segment_labels(pred.labels[head], pred.segments)
    ids = np.asarray([segment_ids[c] for c in codes])
    known = labels >= 0
    ids, hits, labels = ids[known], (scores.argmax(1) == labels)[known], labels[known]
    order = np.argsort(ids)
    return Hits(ids[order], hits[order][:, None], labels[order],
                {names[c]: float(hits[labels == c].mean()) for c in np.unique(labels)})


def teacher_hits(cache: str, head: str) -> Hits:
    """The teacher's hits from the cached logits of the validation split."""
    pred, segment_ids, heads = teacher_predictions(cache)
    return prediction_hits(pred, segment_ids, head, heads[head])


def aligned(a: Hits, b: Hits) -> tuple[np.ndarray, np.ndarray]:
    """Both hit tables on the segments they share (IMU variants skip clips without IMU)."""
    common, ia, ib = np.intersect1d(a.segment_ids, b.segment_ids, return_indices=True)
    if len(common) == 0:
        raise EgocacheError("two settings share no validation segment")
    return a.hits[ia], b.hits[ib]


def motion_subset(h: Hits, motion_ids: set[int], *, inside: bool = True) -> Hits:
    """The hits of the segments whose label is (or is not) a motion-pair verb."""
    keep = np.isin(h.labels, sorted(motion_ids)) == inside
    return Hits(h.segment_ids[keep], h.hits[keep], h.labels[keep], h.per_class)
