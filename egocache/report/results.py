"""One benchmark row per model (teacher or trained student) and its tables: Markdown, CSV, JSON."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from egocache.core.files import write_json_atomic, write_text_atomic

VIDEO_MINUTES = 50.0  # the paper's "typical 50-minute egocentric video"


@dataclass
class ModelResult:
    """Cost and accuracy of one model: what a row of the paper's Table 3 / a point of Figure 3 holds."""

    name: str                      # run directory name, or the teacher's registry name
    variant: str                   # "teacher" or a student variant
    frames: int | None             # student frames N; None for the teacher
    gflops: float                  # per clip, 1 multiply-add = 1 FLOP
    params_m: float                # millions of parameters
    latency_ms: float | None       # per clip at the benchmark batch size, median of repeats
    accuracy: dict[str, float | None] = field(default_factory=dict)  # top1, motion_pairs_top1, ...
    per_class: dict[str, float] = field(default_factory=dict)        # verb class name -> accuracy
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # accuracy key -> 95 % interval
    reliability: list[list[float]] = field(default_factory=list)  # main head's [confidence, accuracy, n] bins

    def video_seconds(self, clip_seconds: float) -> float | None:
        """Seconds to process a 50-minute video clip by clip (non-overlapping clips)."""
        if self.latency_ms is None:
            return None
        return VIDEO_MINUTES * 60.0 / clip_seconds * self.latency_ms / 1000.0


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _percent(r: ModelResult, key: str) -> str:
    """'64.6 [61.2, 68.3]': an accuracy in percent with its interval where the row has one."""
    value, ci = r.accuracy.get(key), r.intervals.get(key)
    if value is None:
        return "–"
    return f"{100 * value:.1f}" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")


def markdown_table(rows: Sequence[ModelResult], *, clip_seconds: float) -> str:
    """The report's main table: one row per model, ratios against the teacher."""
    teacher = next((r for r in rows if r.variant == "teacher"), None)
    head = ("| model | variant | N | GFLOPs | × fewer than teacher | params (M) | latency (ms/clip) "
            "| 50-min video (s) | top-1 (%) | motion-pair top-1 (%) | ECE (%) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        ratio = teacher.gflops / r.gflops if teacher and r.gflops > 0 else None
        lines.append(
            f"| {r.name} | {r.variant} | {r.frames or '–'} | {r.gflops:.3f} | {_fmt(ratio, '.1f')} "
            f"| {r.params_m:.2f} | {_fmt(r.latency_ms, '.2f')} | {_fmt(r.video_seconds(clip_seconds), '.1f')} "
            f"| {_percent(r, 'top1')} | {_percent(r, 'motion_pairs_top1')} | {_percent(r, 'ece')} |")
    return "\n".join(lines)


def write_csv(rows: Sequence[ModelResult], path: Path) -> Path:
    """results.csv: the table's numbers, one row per model, accuracy keys flattened (interval bounds as
    KEY_low / KEY_high)."""
    keys = sorted({k for r in rows for k in r.accuracy})
    bounds = sorted({k for r in rows for k in r.intervals})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["name", "variant", "frames", "gflops", "params_m", "latency_ms", *keys,
                     *[f"{k}_{end}" for k in bounds for end in ("low", "high")]])
    for r in rows:
        writer.writerow([r.name, r.variant, r.frames if r.frames is not None else "", f"{r.gflops:.6g}",
                         f"{r.params_m:.6g}", "" if r.latency_ms is None else f"{r.latency_ms:.6g}",
                         *["" if r.accuracy.get(k) is None else f"{r.accuracy[k]:.6g}" for k in keys],
                         *["" if k not in r.intervals else f"{r.intervals[k][i]:.6g}" for k in bounds for i in (0, 1)]])
    return write_text_atomic(path, text.getvalue())


def write_json(rows: Sequence[ModelResult], path: Path, **extra: object) -> Path:
    """report.json: every row in full plus run facts (device, batch size, cache)."""
    return write_json_atomic(path, {**extra, "models": [asdict(r) for r in rows]})
