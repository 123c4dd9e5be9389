"""Two trained students compared on accuracy and calibration, with paired 95 % bootstrap intervals.

    python benchmarks/calibration_pair.py RUN_A RUN_B [--head verb] [--resamples 2000]

Reads each run's validation segment scores (RUN/segments.npz, written by train-student: the same
segments for every run of one cache) and prints, for A, B and A - B, top-1, ECE (15 bins), NLL and
Brier with a percentile bootstrap over the segments, resampled identically for both runs (paired),
so "A - B" tells whether a difference exceeds what the choice of validation segments explains. This
is how the seed-001 claim (an ensemble-distilled RGB-only student is more accurate *and* better
calibrated than the label-trained one) is measured in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from egocache.core.metrics import calibration
from egocache.report.intervals import BOOTSTRAP_SEED, CONFIDENCE, RESAMPLES

METRICS = ("top1", "ece", "nll", "brier")


def load(run: str, head: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(segment ids, scores (n, C), labels) of a run's validation segments, sorted by segment id."""
    d = np.load(Path(run) / "segments.npz", allow_pickle=False)
    order = np.argsort(d["segment_id"])
    return d["segment_id"][order], d[f"{head}_score"][order], d[f"{head}_label"][order]


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top-1 and calibration of segment probabilities against labels (labels -1 left out)."""
    known = labels >= 0
    cal = calibration(probs[known], labels[known])
    return {"top1": float((probs[known].argmax(1) == labels[known]).mean()), "ece": cal["ece"], "nll": cal["nll"],
            "brier": cal["brier"]}


def compare(run_a: str, run_b: str, head: str = "verb", resamples: int = RESAMPLES) -> dict[str, dict]:
    """{"a", "b", "a-b"}: each metric's value and its paired bootstrap interval over segments."""
    ids_a, p_a, y_a = load(run_a, head)
    ids_b, p_b, y_b = load(run_b, head)
    if not np.array_equal(ids_a, ids_b) or not np.array_equal(y_a, y_b):
        raise SystemExit(f"{run_a} and {run_b} were not evaluated on the same segments and labels")
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = {k: [] for k in ("a", "b", "a-b")}
    for _ in range(resamples):
        idx = rng.integers(0, len(y_a), len(y_a))
        sa, sb = scores(p_a[idx], y_a[idx]), scores(p_b[idx], y_b[idx])
        draws["a"].append(sa)
        draws["b"].append(sb)
        draws["a-b"].append({m: sa[m] - sb[m] for m in METRICS})
    full_a, full_b = scores(p_a, y_a), scores(p_b, y_b)
    point = {"a": full_a, "b": full_b, "a-b": {m: full_a[m] - full_b[m] for m in METRICS}}
    lo, hi = 100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2
    return {k: {m: {"value": point[k][m], "ci95": [float(np.percentile([d[m] for d in draws[k]], lo)),
                                                   float(np.percentile([d[m] for d in draws[k]], hi))]}
                for m in METRICS} for k in draws}


def main(argv: list[str] | None = None) -> None:
    """Print the comparison table (and JSON with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--head", default="verb")
    ap.add_argument("--resamples", type=int, default=RESAMPLES)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = compare(args.run_a, args.run_b, args.head, args.resamples)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    names = {"a": Path(args.run_a).name, "b": Path(args.run_b).name,
             "a-b": f"{Path(args.run_a).name} - {Path(args.run_b).name}"}
    print(f"{args.head}, {len(load(args.run_a, args.head)[0])} validation segments, "
          f"paired bootstrap ({args.resamples} resamples), 95 % intervals; top-1 and ECE in %")
    print(f"{'':<42}{'top-1':>22}{'ECE':>22}{'NLL':>22}{'Brier':>22}")
    for k in ("a", "b", "a-b"):
        cells = []
        for m in METRICS:
            scale = 100 if m in ("top1", "ece") else 1
            v, (a, b) = result[k][m]["value"] * scale, (x * scale for x in result[k][m]["ci95"])
            cells.append(f"{v:7.3f} [{a:6.3f}, {b:6.3f}]" if scale == 1 else f"{v:6.1f} [{a:5.1f}, {b:5.1f}]")
        print(f"{names[k]:<42}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
