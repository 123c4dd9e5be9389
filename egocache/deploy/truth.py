"""Ground truth for `egocache predict --annotations`: one video's segments, and per-segment accuracy of a pass.

The annotations are read by the dataset adapters through `load_manifest` (the same rules, problems and
class names as extraction), keeping the segments of this video (matched by video id: the file's stem
by default). Labels are carried by class name, so a model's own class list decides which of them it
can be scored on. A window belongs to the segment containing its centre; a segment's score is the
mean of its windows' softmax, as `core/metrics.py` scores every model of the project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from egocache.core.metrics import Predictions, evaluate_predictions
from egocache.deploy.stream import PassResult, Window
from egocache.errors import ManifestError


@dataclass(frozen=True)
class TruthSegment:
    """One annotated segment of the video: id, times (s), class name per head (None = unlabelled)."""

    segment_id: str
    start_s: float
    stop_s: float
    labels: dict[str, str | None]


def read_truth(dataset: str, annotations: tuple[str, ...], video: str, heads: list[str], *,
               video_id: str | None = None) -> tuple[list[TruthSegment], list[str]]:
    """(this video's segments sorted by start, the annotation problems); ManifestError if none is found."""
    from egocache.pipeline.datasets import load_manifest
    from egocache.pipeline.datasets.selection import Selection

    vid = video_id or Path(video).stem
    root = os.path.dirname(os.path.abspath(annotations[0]))
    selection = Selection(imu="none", heads=tuple(heads), allow_unsplit=True)   # labels only: no IMU, any split
    manifest = load_manifest(dataset, list(annotations), root, eval_clips=1, train_clips=1, selection=selection)
    found: dict[str, TruthSegment] = {}
    for clip in manifest.clips:
        if clip.video_id != vid or clip.segment_id in found:
            continue
        labels = {h: (manifest.class_names[h][c] if c >= 0 else None)
                  for h, c in clip.labels.items() if h in manifest.class_names}
        found[clip.segment_id] = TruthSegment(clip.segment_id, clip.segment_start_s, clip.segment_stop_s, labels)
    if not found:
        videos = sorted({c.video_id for c in manifest.clips})
        raise ManifestError(f"{annotations[0]}: no segment of video id {vid!r} (ids: {', '.join(videos[:5])}"
                            f"{' ...' if len(videos) > 5 else ''}); name it with --video-id")
    return sorted(found.values(), key=lambda s: (s.start_s, s.segment_id)), manifest.problems


def window_segments(windows: list[Window], truth: list[TruthSegment]) -> np.ndarray:
    """Index into `truth` of the segment holding each window's centre, -1 for windows in none."""
    out = np.full(len(windows), -1, np.int64)
    for i, w in enumerate(windows):
        for k, seg in enumerate(truth):
            if seg.start_s <= w.centre_s <= seg.stop_s:
                out[i] = k
                break
    return out


def segment_accuracy(result: PassResult, windows: list[Window], truth: list[TruthSegment]) -> dict[str, Any]:
    """Per-segment metrics of a pass over the annotated segments (core/metrics.evaluate_predictions).

    Also counts the segments that no window with a prediction falls in (left out of the metrics) and,
    per head, the truth labels the model has no class for (scored as unknown).
    """
    seg = window_segments(windows, truth)
    use = result.ok & (seg >= 0)
    labels, foreign = {}, {}
    for h, names in result.heads.items():
        index = {n: i for i, n in enumerate(names)}
        per_seg = [index.get(s.labels.get(h) or "", -1) for s in truth]
        foreign[h] = sorted({s.labels[h] for s in truth if s.labels.get(h) and s.labels[h] not in index})
        labels[h] = np.asarray(per_seg, np.int64)[seg[use]]
    covered = set(seg[use].tolist())
    out: dict[str, Any] = {"segments": len(truth), "segments_without_window": len(truth) - len(covered),
                           "windows_scored": int(use.sum()), "labels_not_in_model": foreign}
    if not use.any():
        return {**out, "metrics": None}
    pred = Predictions({h: v[use] for h, v in result.logits.items()}, labels, seg[use])
    heads = [h for h in result.heads if (labels[h] >= 0).any()]
    if not heads:
        return {**out, "metrics": None}
    pred = Predictions({h: pred.logits[h] for h in heads}, {h: pred.labels[h] for h in heads}, pred.segments)
    return {**out, "metrics": evaluate_predictions(pred, {h: result.heads[h] for h in heads})}
