"""Where does each model get the motion pairs right? Verb top-1 on the synthetic world's motion-pair
segments, split by how the head moved in them (synth.json `segment_head_motion`: informative = the head
turns with the object, weak = it barely moves, unrelated = a full turn along a random axis in a random
direction), with 95 % bootstrap intervals over the segments.

    python benchmarks/head_motion.py DATA RUNS CACHE

DATA is the `egocache synth` folder, RUNS a folder of `train-student` runs (each RUNS/NAME/segments.npz),
CACHE the cache they were trained from (the teacher's row comes from its validation logits). An N=1
student sees the direction of a motion pair only through the IMU, so only in the informative segments;
the teacher sees it in the frames, in every kind.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from egocache.report.hits import Hits, stack_runs, teacher_hits
from egocache.report.intervals import estimate


def by_kind(hits: Hits, kinds: dict[str, str], motion_ids: set[int], names: list[str]
            ) -> dict[str, tuple[int, float, tuple[float, float] | None]]:
    """{kind: (segments, top-1, 95 % segment interval or None when too few segments)} over the motion-pair
    segments of each head-motion kind in `names`."""
    out = {}
    kind_of = np.array([kinds.get(str(s), "") for s in hits.segment_ids])
    motion = np.isin(hits.labels, sorted(motion_ids))
    for kind in names:
        keep = (kind_of == kind) & motion
        if keep.any():
            est = estimate(hits.hits[keep])
            out[kind] = (int(keep.sum()), est.mean, est.segments)
    return out


def main() -> None:
    """Print one line per model."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("runs")
    ap.add_argument("cache")
    args = ap.parse_args()
    meta = json.loads((Path(args.data) / "synth.json").read_text())
    kinds = meta["segment_head_motion"]
    teacher = teacher_hits(args.cache, "verb")
    names = [v["key"] for v in meta["verbs"]]
    motion_ids = {names.index(v) for pair in meta["motion_pairs"] for v in pair}
    rows = {"teacher": teacher}
    for run in sorted(p for p in Path(args.runs).iterdir() if (p / "segments.npz").is_file()):
        rows[run.name] = stack_runs([run / "segments.npz"], "verb", names)
    for name, hits in rows.items():
        cells = by_kind(hits, kinds, motion_ids, list(meta["head_motion_shares"]))
        print(f"{name:20s} " + "  ".join(f"{k} ({n}) {100 * m:.1f} " + (
            f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "[too few segments]") for k, (n, m, ci) in cells.items()),
            flush=True)


if __name__ == "__main__":
    main()
