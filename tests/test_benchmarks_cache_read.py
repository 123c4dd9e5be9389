"""benchmarks/cache_read.py: every reader reads the same frames, and a small run prints its table and ratios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cache_read  # noqa: E402


def test_the_readers_agree_and_a_small_run_prints_the_ratios(tmp_path: Path) -> None:
    caches, mm = cache_read.build(str(tmp_path), 40, ["raw"])
    del mm
    idx = np.array([1, 5, 6, 7, 30])
    want = cache_read.memmap_reader(str(tmp_path), "frames")(idx)["frames"]
    np.testing.assert_array_equal(cache_read.reused_reader(str(tmp_path))(idx), want)
    np.testing.assert_array_equal(cache_read.frames_reader(caches["raw"])(idx), want)
    res = subprocess.run([sys.executable, cache_read.__file__, "--clips", "40", "--codecs", "raw", "--rounds", "1",
                          "--batch", "8"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for label in ("memmap frames reused", "cache raw frames", "frames alone (raw): warm ratio",
                  "read ratio cache/memmap (raw frames, warm)"):
        assert label in out, out
