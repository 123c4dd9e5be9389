"""The frame selections of paper Table 4: which stored frames of a clip an N-frame student reads.

A cache records, per selection and N, the indices of its stored frame positions (root attrs
`sampling.frame_sets`); extraction stores the union. "random" lists a pool, of which each clip draws N
once, as a pure function of (seed, cache row), so the draw is the same in every epoch, process and
run with that seed (the evaluation's included).
"""

from __future__ import annotations

import numpy as np

GRID = 16   # the reference 16x4 clip: every 4th native frame at 30 fps
FRAME_SELECTIONS = ("uniform", "random", "first", "last", "center")   # paper Table 4


def selection_positions(selection: str, n: int, grid: int = GRID) -> list[float]:
    """Clip positions (fractions in [0, 1]) a frame selection reads for N=`n` frames (paper App. D, Table 4).

    "uniform": the centres of N equal parts, (k + 0.5) / N (the paper's default). "first", "last",
    "center": N consecutive frames of the clip's 16-frame grid (every 4th native frame at 30 fps,
    positions k / 15, the reference 16x4 teacher input) at its start, end or middle. "random": the
    whole grid, of which a student draws N per clip (`draw_frames`).
    """
    if selection not in FRAME_SELECTIONS:
        raise ValueError(f"unknown frame selection {selection!r}; known: {', '.join(FRAME_SELECTIONS)}")
    if n < 1 or (selection != "uniform" and n > grid):
        raise ValueError(f"frame selection {selection!r} needs 1 <= N <= {grid}, got {n}")
    step = [k / (grid - 1) for k in range(grid)]
    if selection == "uniform":
        return [(k + 0.5) / n for k in range(n)]
    if selection == "random":
        return step
    first = {"first": 0, "last": grid - n, "center": (grid - n) // 2}[selection]
    return step[first:first + n]


def draw_frames(rows: np.ndarray, pool: int, n: int, seed: int) -> np.ndarray:
    """(len(rows), n) sorted indices into a pool of `pool` frames: each row's random N, fixed by (seed, row)."""
    rows = np.asarray(rows, dtype=np.uint64)
    k = np.arange(pool, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (rows[:, None] * np.uint64(0x9E3779B97F4A7C15) + k[None] * np.uint64(0xBF58476D1CE4E5B9)
             + np.uint64(seed & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x94D049BB133111EB))
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):   # splitmix64 finaliser
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x ^= x >> np.uint64(31)
    return np.sort(np.argsort(x, axis=1, kind="stable")[:, :n], axis=1)


def selection_indices(sampling: dict, selection: str, n: int) -> list[int] | None:
    """Stored-frame indices a selection reads for N (the pool, for "random"); None if the cache lacks them.

    Caches without `frame_sets` (made before selections existed) store only "uniform" (`frames_for_n`).
    """
    sets = sampling.get("frame_sets") or {"uniform": sampling.get("frames_for_n", {})}
    idx = sets.get(selection, {}).get(str(n))
    return None if idx is None else [int(i) for i in idx]


def available_selections(sampling: dict) -> dict[str, list[int]]:
    """{selection: sorted N it stores} of a cache's sampling attrs."""
    sets = sampling.get("frame_sets") or {"uniform": sampling.get("frames_for_n", {})}
    return {sel: sorted(int(n) for n in by_n) for sel, by_n in sets.items()}
