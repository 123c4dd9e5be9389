"""The ablations' report: tables with intervals, the paper's orderings with verdicts, Fig. 3 and Fig. 4.

A verdict reads the paired bootstrap interval over segments of the seed-averaged difference (report/
intervals.py): "holds" when it lies above zero, "reversed" when below, "not resolved" when it spans zero.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egocache.core.files import write_json_atomic, write_text_atomic
from egocache.report.intervals import Estimate


@dataclass
class Row:
    """One setting's results: what it is, its cost, its accuracy overall and on the motion pairs."""

    table: str                   # "fig3", "table1", "table4" or "teacher"
    label: str
    variant: str
    frames: int | None
    selection: str
    gflops: float | None
    top1: Estimate
    motion: Estimate | None
    run: str                     # folder name under OUT/runs ("" for the teacher)
    paper: float | None = None   # the paper's EPIC figure for this row, where it has one
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Claim:
    """An ordering the paper states, measured as A - B with its intervals."""

    text: str
    diff: Estimate

    @property
    def verdict(self) -> str:
        """holds / reversed / not resolved, from the bootstrap interval over segments."""
        lo, hi = self.diff.segments or (self.diff.mean, self.diff.mean)
        return "holds" if lo > 0 else "reversed" if hi < 0 else "not resolved"


def _md_rows(rows: list[Row], *, check: dict[str, tuple[int, ...]] | None = None) -> list[str]:
    """Markdown table lines of `rows` (with Table 1's check marks when given)."""
    marks = ["KD", "L1", "GT", "L1-pre", "NCE-pre"] if check else []
    head = ["setting", *marks, "N", "GFLOPs", "top-1 (%)", "motion-pair top-1 (%)", "paper EPIC (%)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, *(("✓" if m else "–") for m in (check or {}).get(r.label, ()))]
        cells += [str(r.frames or "–"), "–" if r.gflops is None else f"{r.gflops:.3f}", r.top1.text(),
                  r.motion.text() if r.motion else "–", "–" if r.paper is None else f"{r.paper:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_report(out: Path, rows: list[Row], claims: list[Claim], *, title: str, facts: dict[str, Any],
                 check: dict[str, tuple[int, ...]], gains: dict[str, float], plots: dict[str, Path]) -> dict[str, Path]:
    """report.md, ablations.json, ablations.csv under `out`; returns the paths (plots included)."""
    md = [f"# {title}", "",
          "Figures: mean over seeds; ±: half-width of the 95 % t interval over seeds; [lo, hi]: 95 % paired "
          "bootstrap interval over validation segments (report/intervals.py).", ""]
    for table, heading in (("fig3", "Fig. 3: accuracy vs. GFLOPs (every variant and N)"),
                           ("table1", "Table 1: loss terms and pretraining losses (N=1)"),
                           ("table4", "Table 4: frame selection (EgoDistill, N=4)")):
        sel = [r for r in rows if r.table in (table, "teacher" if table == "fig3" else "")]
        if sel:
            md += [f"## {heading}", "", *_md_rows(sel, check=check if table == "table1" else None), ""]
    if claims:
        md += ["## The paper's orderings, as measured", "",
               "| ordering | difference (points) | verdict |", "|---|---|---|"]
        md += [f"| {c.text} | {c.diff.text()} | {c.verdict} |" for c in claims]
        md += ["", "A verdict reads the bootstrap interval: holds (above 0), reversed (below), not resolved "
                   "(spans 0).", ""]
    if gains:
        best = sorted(gains.items(), key=lambda kv: -kv[1])
        md += ["## Fig. 4: per-class gain of EgoDistill over VisOnly-Distill (N=1, mean over seeds)", "",
               ", ".join(f"{k} {100 * v:+.1f}" for k, v in best), ""]
    md += ["## Run facts", "", *[f"- {k}: {v}" for k, v in sorted(facts.items())], ""]
    md += [f"![{k}]({p.name})" for k, p in plots.items()]
    files = {"md": write_text_atomic(out / "report.md", "\n".join(md) + "\n")}
    files["json"] = write_json_atomic(out / "ablations.json", {
        **facts, "rows": [{"table": r.table, "label": r.label, "variant": r.variant, "frames": r.frames,
                           "selection": r.selection, "gflops": r.gflops, "run": r.run, "paper_epic": r.paper,
                           "top1": r.top1.to_dict(), "motion_pairs_top1": r.motion.to_dict() if r.motion else None,
                           **r.extra} for r in rows],
        "orderings": [{"ordering": c.text, "difference": c.diff.to_dict(), "verdict": c.verdict} for c in claims],
        "per_class_gain_n1": gains})
    files["csv"] = _write_csv(out / "ablations.csv", rows)
    return {**files, **plots}


def _write_csv(path: Path, rows: list[Row]) -> Path:
    """One line per row: the means and both intervals, overall and on the motion pairs."""
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["table", "label", "variant", "frames", "selection", "gflops", "seeds", "segments",
                "top1", "top1_seeds_lo", "top1_seeds_hi", "top1_segments_lo", "top1_segments_hi",
                "motion_top1", "motion_seeds_lo", "motion_seeds_hi", "motion_segments_lo", "motion_segments_hi",
                "paper_epic", "run"])
    for r in rows:
        def parts(e: Estimate | None) -> list[str]:
            if e is None:
                return [""] * 5
            return [f"{e.mean:.6g}", *[f"{v:.6g}" if v is not None else "" for v in
                                       (*(e.seeds or (None, None)), *(e.segments or (None, None)))]]
        w.writerow([r.table, r.label, r.variant, r.frames or "", r.selection,
                    "" if r.gflops is None else f"{r.gflops:.6g}", r.top1.n_seeds, r.top1.n_segments,
                    *parts(r.top1), *parts(r.motion), "" if r.paper is None else r.paper, r.run])
    return write_text_atomic(path, text.getvalue())


def plot_curves(rows: list[Row], out: Path) -> Path:
    """Fig. 3: top-1 against GFLOPs per variant over N, with the seed interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from egocache.core.files import write_atomic

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    teacher = [r for r in rows if r.table == "teacher"]
    for variant in dict.fromkeys(r.variant for r in rows if r.table == "fig3"):
        group = sorted((r for r in rows if r.table == "fig3" and r.variant == variant), key=lambda r: r.frames or 0)
        xs = [r.gflops or 0.0 for r in group]
        ys = [100 * r.top1.mean for r in group]
        err = [[100 * (r.top1.mean - r.top1.seeds[0]) if r.top1.seeds else 0.0 for r in group],
               [100 * (r.top1.seeds[1] - r.top1.mean) if r.top1.seeds else 0.0 for r in group]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=variant)
        for r, x, y in zip(group, xs, ys):
            ax.annotate(f"N={r.frames}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for r in (t for t in teacher if t.gflops is not None):
        ax.plot([r.gflops], [100 * r.top1.mean], marker="*", markersize=12, linestyle="none",
                label=f"teacher ({r.label})")
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per clip (log scale)")
    ax.set_ylabel("per-segment verb top-1 (%)")
    ax.set_title("Accuracy vs. computation (mean over seeds, 95 % t interval)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return out
