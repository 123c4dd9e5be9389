"""What `egocache predict` writes: per-window top-k CSV and JSON per model, and the timeline figure.

Every file goes through core/files.py (atomic). The timeline has one panel per model and head: the
probabilities over time of the classes that win most windows, ground-truth segments as coloured bands
named by their class (when annotations are given, with the per-segment top-1 in the panel's title),
and grey marks where a window has no prediction.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: predictions are written on servers without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from egocache.core.files import write_atomic, write_json_atomic, write_text_atomic  # noqa: E402
from egocache.deploy.runner import softmax  # noqa: E402
from egocache.deploy.stream import PassResult, Window  # noqa: E402
from egocache.deploy.truth import TruthSegment, window_segments  # noqa: E402

LINES_PER_PANEL = 8


def probabilities(result: PassResult) -> dict[str, np.ndarray]:
    """{head: (windows, C) softmax}, NaN rows where a window has no prediction."""
    out = {}
    for h, logits in result.logits.items():
        probs = np.full_like(logits, np.nan)
        ok = result.ok
        if ok.any():
            probs[ok] = softmax(logits[ok])
        out[h] = probs
    return out


def top_k(probs: np.ndarray, names: list[str], k: int) -> list[list[tuple[str, float]]]:
    """Per window the k most probable (class name, probability), empty where the window failed."""
    k = min(k, probs.shape[1])
    out = []
    for row in probs:
        if np.isnan(row).any():
            out.append([])
            continue
        order = np.argsort(-row, kind="stable")[:k]
        out.append([(names[c], float(row[c])) for c in order])
    return out


def _truth_names(windows: list[Window], truth: list[TruthSegment] | None, head: str) -> list[str]:
    """Per window the ground-truth class of `head` ("" outside every segment or unlabelled)."""
    if not truth:
        return [""] * len(windows)
    seg = window_segments(windows, truth)
    return [(truth[s].labels.get(head) or "") if s >= 0 else "" for s in seg]


def write_predictions(out: Path, prefix: str, result: PassResult, windows: list[Window], *, k: int,
                      truth: list[TruthSegment] | None, summary: dict[str, Any]) -> dict[str, Path]:
    """Write `<prefix>predictions.csv` and `.json` (top-k per head per window, summary in the JSON)."""
    probs = probabilities(result)
    tops = {h: top_k(p, result.heads[h], k) for h, p in probs.items()}
    gts = {h: _truth_names(windows, truth, h) for h in result.heads}
    header = ["window", "start_s", "end_s", "status"]
    header += [f"truth_{h}" for h in result.heads] if truth else []
    for h in result.heads:
        for r in range(1, min(k, len(result.heads[h])) + 1):
            header += [f"{h}_{r}", f"{h}_{r}_p"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    records = []
    for i, w in enumerate(windows):
        row: list[Any] = [w.index, f"{w.start_s:.3f}", f"{w.end_s:.3f}", result.errors[i] or "ok"]
        row += [gts[h][i] for h in result.heads] if truth else []
        for h in result.heads:
            cells = tops[h][i] or [("", float("nan"))] * min(k, len(result.heads[h]))
            row += [c for name, p in cells for c in (name, "" if np.isnan(p) else f"{p:.6f}")]
        writer.writerow(row)
        rec: dict[str, Any] = {"window": w.index, "start_s": round(w.start_s, 6), "end_s": round(w.end_s, 6),
                               "error": result.errors[i] or None,
                               "top": {h: [{"class": n, "p": p} for n, p in tops[h][i]] for h in result.heads}}
        if truth:
            rec["truth"] = {h: gts[h][i] or None for h in result.heads}
        records.append(rec)
    csv_path = write_text_atomic(out / f"{prefix}predictions.csv", buf.getvalue())
    json_path = write_json_atomic(out / f"{prefix}predictions.json", {**summary, "windows": records},
                                  sort_keys=False)
    return {f"{prefix}csv": csv_path, f"{prefix}json": json_path}


def _colour(names: list[str], name: str) -> Any:
    """A stable colour per class name of a head."""
    cmap = plt.get_cmap("tab20")
    return cmap(names.index(name) % 20) if name in names else (0.5, 0.5, 0.5, 1.0)


def plot_timeline(path: Path, passes: list[PassResult], windows: list[Window],
                  truth: list[TruthSegment] | None, accuracy: dict[str, Any]) -> Path:
    """Write the timeline PNG: per model and head, class probabilities over time and the ground truth."""
    panels = [(r, h) for r in passes for h in r.heads]
    centres = np.array([w.centre_s for w in windows])
    minutes = bool(len(centres)) and centres[-1] > 600
    t = centres / 60.0 if minutes else centres
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 2.6 * len(panels)), sharex=True, squeeze=False)
    for ax, (result, head) in zip(axes[:, 0], panels):
        names = result.heads[head]
        palette = names + sorted({s.labels[head] for s in truth or [] if s.labels.get(head)} - set(names))
        probs = probabilities(result)[head]
        ok = result.ok
        winners = np.bincount(np.nanargmax(probs[ok], axis=1), minlength=len(names)) if ok.any() else \
            np.zeros(len(names), int)
        shown = [c for c in np.argsort(-winners, kind="stable")[:LINES_PER_PANEL] if winners[c] > 0]
        for seg in truth or []:
            label = seg.labels.get(head)
            if label is None:
                continue
            a, b = (seg.start_s / 60.0, seg.stop_s / 60.0) if minutes else (seg.start_s, seg.stop_s)
            ax.axvspan(a, b, color=_colour(palette, label), alpha=0.18, lw=0)
            ax.text((a + b) / 2, 1.02, label, ha="center", va="bottom", fontsize=6, rotation=90,
                    color=_colour(palette, label), clip_on=False)
        for c in shown:
            ax.plot(t, probs[:, c], lw=1.2, color=_colour(names, names[c]), label=names[c])
        bad = ~ok
        if bad.any():
            ax.plot(t[bad], np.zeros(int(bad.sum())), "|", color="0.4", ms=8, label="no prediction")
        acc = accuracy.get(result.model, {}).get("metrics")
        head_acc = (acc or {}).get("heads", {}).get(head, {}).get("top1_acc")
        title = f"{result.model} ({result.description}): {head}"
        if truth:
            title += (f"; per-segment top-1 {100 * head_acc:.1f}% over {acc['heads'][head]['segments']} segments"
                      if head_acc is not None else "; not scored (no window in a segment labelled with its classes)")
        ax.set_title(title, fontsize=9, pad=28 if truth else 6)
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
        if shown or bad.any():
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel("time (min)" if minutes else "time (s)")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
