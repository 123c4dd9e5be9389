"""The report's figures: accuracy against GFLOPs (paper Fig. 3) and per-class gain (paper Fig. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers without a display
import matplotlib.pyplot as plt  # noqa: E402

from egocache.core.files import write_atomic  # noqa: E402
from egocache.report.results import ModelResult  # noqa: E402

_MARKERS = {"teacher": "*", "egodistill": "o", "visonly-distill": "s", "visimu": "^", "visonly": "v",
            "listentolook": "D"}


def plot_accuracy_vs_gflops(rows: Sequence[ModelResult], out: Path, *, metric: str = "top1") -> Path:
    """One point per model and frame count, log-scale GFLOPs on x, per-segment top-1 on y."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    by_variant: dict[str, list[ModelResult]] = {}
    for row in rows:
        if row.accuracy.get(metric) is not None:
            by_variant.setdefault(row.variant, []).append(row)
    for variant, group in sorted(by_variant.items()):
        group = sorted(group, key=lambda r: r.gflops)
        xs = [r.gflops for r in group]
        ys = [100.0 * r.accuracy[metric] for r in group]
        ax.plot(xs, ys, marker=_MARKERS.get(variant, "x"), markersize=11 if variant == "teacher" else 7,
                linestyle="-" if len(group) > 1 else "none", label=variant)
        for r, x, y in zip(group, xs, ys):
            if r.frames:
                ax.annotate(f"N={r.frames}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per clip (log scale; 1 multiply-add = 1 FLOP)")
    ax.set_ylabel(f"per-segment {metric} (%)")
    ax.set_title("Accuracy vs. computation")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return out


def plot_per_class_gain(gains: dict[str, float], out: Path, *, title: str) -> Path:
    """Bar chart of per-class accuracy gain (percentage points), sorted, as in the paper's Fig. 4."""
    items = sorted(gains.items(), key=lambda kv: kv[1], reverse=True)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(items) + 1.5), 3.8))
    names = [k for k, _ in items]
    values = [100.0 * v for _, v in items]
    ax.bar(range(len(items)), values, color=["tab:green" if v >= 0 else "tab:red" for v in values])
    ax.set_xticks(range(len(items)), names, rotation=60, ha="right", fontsize=8)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("accuracy gain (points)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return out


def plot_reliability(rows: Sequence[ModelResult], out: Path) -> Path:
    """Reliability diagram: per confidence bin, accuracy against mean confidence, one line per model, the
    diagonal for perfect calibration; each model's ECE in its label."""
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for r in rows:
        if not r.reliability:
            continue
        conf, acc, count = zip(*r.reliability)
        ece = r.accuracy.get("ece")
        ax.plot(conf, acc, marker=_MARKERS.get(r.variant, "x"), markersize=4,
                label=f"{r.name} (ECE {100 * ece:.1f})" if ece is not None else r.name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability, per segment)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability (main head, validation segments)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return out
