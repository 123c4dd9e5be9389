"""95 % intervals of per-segment accuracies: over seeds (Student t) and over segments (paired bootstrap).

Every accuracy the reports print is a mean over the validation segments (and over seeds, where a
figure has several). Two sources of noise, two intervals:
- seeds: the t interval of the per-seed accuracies (n - 1 degrees of freedom; none for one seed);
- segments: a percentile bootstrap that resamples the validation segments, the same draw for every
  seed's run (the runs are evaluated on the same segments), of the seed-averaged accuracy.
A difference between two models (an ordering) is bootstrapped the same way, paired by segment: the
ordering "A > B" holds at 95 % when the whole interval of A - B lies above zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
BOOTSTRAP_SEED = 0     # the intervals are reproducible: the same resampling for the same data


@dataclass(frozen=True)
class Estimate:
    """A mean and its 95 % intervals (None where there is nothing to resample)."""

    mean: float
    seeds: tuple[float, float] | None      # t interval over seeds (>= 2 seeds)
    segments: tuple[float, float] | None   # bootstrap over segments
    n_seeds: int
    n_segments: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {"mean": self.mean, "seeds_ci95": list(self.seeds) if self.seeds else None,
                "segments_ci95": list(self.segments) if self.segments else None,
                "n_seeds": self.n_seeds, "n_segments": self.n_segments}

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'48.5 ±2.1 [44.0, 52.9]': mean, half-width over seeds, bootstrap interval over segments."""
        out = f"{scale * self.mean:.{digits}f}"
        if self.seeds is not None:
            out += f" ±{scale * (self.seeds[1] - self.seeds[0]) / 2:.{digits}f}"
        if self.segments is not None:
            out += f" [{scale * self.segments[0]:.{digits}f}, {scale * self.segments[1]:.{digits}f}]"
        return out


def seed_interval(values: np.ndarray) -> tuple[float, float] | None:
    """The 95 % t interval of the mean of per-seed values; None for fewer than two."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def _bootstrap(columns: list[np.ndarray], statistic) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    """Percentile bootstrap interval of statistic(*columns), resampling rows (segments) jointly."""
    if len(columns[0]) < 2:
        return None
    res = stats.bootstrap(tuple(columns), statistic, paired=True, vectorized=True, n_resamples=RESAMPLES,
                          confidence_level=CONFIDENCE, method="percentile",
                          random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def estimate(hits: np.ndarray) -> Estimate:
    """Mean accuracy and its intervals from (segments, seeds) 0/1 hits (one column per seed's run)."""
    hits = np.asarray(hits, dtype=np.float64)
    if hits.ndim == 1:
        hits = hits[:, None]
    if hits.shape[0] == 0:
        raise ValueError("no segments to estimate an accuracy from")
    cols = [hits[:, k] for k in range(hits.shape[1])]
    mean = float(hits.mean())
    segs = _bootstrap(cols, lambda *c, axis=-1: np.mean([x.mean(axis=axis) for x in c], axis=0))
    return Estimate(mean=mean, seeds=seed_interval(hits.mean(axis=0)), segments=segs,
                    n_seeds=hits.shape[1], n_segments=hits.shape[0])


def difference(a: np.ndarray, b: np.ndarray) -> Estimate:
    """A's mean accuracy minus B's, paired by segment (rows), each averaged over its seeds (columns).

    Its seed interval pairs seed k of A with seed k of B when both have the same seeds, else is None.
    """
    a, b = (np.asarray(x, dtype=np.float64).reshape(len(x), -1) for x in (a, b))
    if len(a) != len(b):
        raise ValueError(f"paired difference needs the same segments, got {len(a)} and {len(b)}")
    ka = a.shape[1]
    cols = [a[:, k] for k in range(ka)] + [b[:, k] for k in range(b.shape[1])]

    def stat(*c: np.ndarray, axis: int = -1) -> np.ndarray:
        return (np.mean([x.mean(axis=axis) for x in c[:ka]], axis=0)
                - np.mean([x.mean(axis=axis) for x in c[ka:]], axis=0))

    seeds = seed_interval(a.mean(axis=0) - b.mean(axis=0)) if a.shape[1] == b.shape[1] else None
    return Estimate(mean=float(a.mean() - b.mean()), seeds=seeds, segments=_bootstrap(cols, stat),
                    n_seeds=min(a.shape[1], b.shape[1]), n_segments=len(a))
