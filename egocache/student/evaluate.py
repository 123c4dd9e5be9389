"""A student's evaluation pass over cached clips, and its metric files (metrics are core/metrics.py).

Metric files: OUT/metrics/epoch_XXX.json per epoch, OUT/metrics.json at the end, OUT/metrics.csv
(one row per epoch, rebuilt from the per-epoch files so a resumed run writes the same table), and
OUT/segments.npz, the last evaluation's per-segment scores (what intervals over segments resample).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from egocache.core.files import write_atomic, write_text_atomic
from egocache.core.metrics import Predictions, segment_labels, segment_scores

SEGMENTS_FILE = "segments.npz"


def epoch_metrics_path(out: Path, epoch: int) -> Path:
    """OUT/metrics/epoch_XXX.json for the 1-based `epoch`."""
    return out / "metrics" / f"epoch_{epoch:03d}.json"


def _flatten(metrics: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of an epoch's metrics: scalars at the top and per head, no per-class tables."""
    row = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    for name, value in metrics.get("losses", {}).items():
        row[f"loss_{name}"] = value
    for head, values in metrics.get("heads", {}).items():
        row.update({f"{head}_{k}": v for k, v in values.items() if not isinstance(v, (dict, list))})
    return row


def write_metrics_csv(out: Path) -> Path:
    """Rebuild OUT/metrics.csv from every OUT/metrics/epoch_XXX.json, one row per epoch."""
    rows = [_flatten(json.loads(p.read_text())) for p in sorted((out / "metrics").glob("epoch_*.json"))]
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(out / "metrics.csv", text.getvalue())


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Iterable[dict[str, Any]], device: torch.device, *,
            progress: bool = False) -> Predictions:
    """Run `model` (batch -> {"logits": {head: (B,C)}}) in eval mode over `loader`; clip-level predictions."""
    model.eval()
    logits: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[np.ndarray]] = {}
    segments: list[np.ndarray] = []
    for batch in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False, file=sys.stderr):
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        out = model(inputs)
        for head, value in out["logits"].items():
            logits.setdefault(head, []).append(value.float().cpu().numpy())
            labels.setdefault(head, []).append(batch["label"][head].numpy())
        segments.append(batch["segment"].numpy())
    return Predictions(logits={h: np.concatenate(v) for h, v in logits.items()},
                       labels={h: np.concatenate(v) for h, v in labels.items()},
                       segments=np.concatenate(segments) if segments else np.zeros(0, np.int64))


def write_segment_predictions(out: Path, pred: Predictions, segment_ids: list[str], *, average: str) -> Path:
    """OUT/segments.npz: "segment_id" (S,) and per head "<head>_label" (S,) and "<head>_score" (S, C) float32.

    `segment_ids` names the segment codes of `pred`; scores are averaged per segment as the metrics are.
    """
    arrays: dict[str, np.ndarray] = {}
    codes = None
    for head, logits in pred.logits.items():
        codes, scores = segment_scores(logits, pred.segments, average=average)
        _, labels = segment_labels(pred.labels[head], pred.segments)
        arrays[f"{head}_label"], arrays[f"{head}_score"] = labels, scores.astype(np.float32)
    arrays["segment_id"] = np.asarray([segment_ids[c] for c in codes] if codes is not None else [], dtype=str)

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return write_atomic(Path(out) / SEGMENTS_FILE, save)


def read_segment_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a segments.npz (as write_segment_predictions wrote them)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
