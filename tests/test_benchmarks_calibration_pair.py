"""benchmarks/calibration_pair.py: paired bootstrap of accuracy and calibration between two runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import calibration_pair  # noqa: E402


def write_run(path: Path, probs: np.ndarray, labels: np.ndarray, ids: list[str]) -> str:
    path.mkdir()
    np.savez(path / "segments.npz", verb_score=probs, verb_label=labels, segment_id=np.array(ids))
    return str(path)


def test_a_better_run_is_ahead_with_an_interval_and_a_mismatch_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    good = np.full((200, 3), 0.1)
    good[np.arange(200), labels] = 0.8                 # right and confident
    flat = np.full((200, 3), 1 / 3)                    # chance-level, calibrated at 1/3
    ids = [f"s{i:03d}" for i in range(200)]
    a = write_run(tmp_path / "a", good, labels, ids)
    b = write_run(tmp_path / "b", flat, labels[::-1], ids[::-1])   # another order: aligned by segment id
    res = calibration_pair.compare(a, b, resamples=200)
    assert res["a"]["top1"]["value"] == 1.0
    lo, hi = res["a-b"]["nll"]["ci95"]
    assert res["a-b"]["nll"]["value"] < 0 and hi < 0 and lo <= res["a-b"]["nll"]["value"]
    assert abs(res["a"]["ece"]["value"] - 0.2) < 1e-9          # confidence 0.8, accuracy 1.0
    calibration_pair.main([a, b, "--resamples", "50"])
    assert "a - b" in capsys.readouterr().out
    c = write_run(tmp_path / "c", good[:100], labels[:100], ids[:100])
    with pytest.raises(SystemExit, match="not evaluated on the same segments"):
        calibration_pair.compare(a, c, resamples=10)
