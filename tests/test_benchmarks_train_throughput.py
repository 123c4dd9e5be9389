"""benchmarks/train_throughput.py: paired rounds of loader and memory feeds, and the loader alone, in both modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"
TINY = ["--frame-size", "32", "--batch-size", "8", "--steps", "2", "--frozen-steps", "3", "--warmup", "1",
        "--num-workers", "1", "--device", "cpu"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *TINY, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_reports_median_paired_ratio_its_range_and_the_loaders_share_of_a_step() -> None:
    res = run("--clips", "40", "--rounds", "3", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert got["args"]["rounds"] == 3 and got["args"]["frozen_steps"] == 3
    for mode in ("trained-encoder", "frozen"):
        r = got[mode]
        assert 0 < r["ratio_min"] <= r["ratio"] <= r["ratio_max"]
        assert r["loader_steps_s"] > 0 and r["memory_steps_s"] > 0 and r["loader_alone_batches_s"] > 0
        assert abs(r["loading_share"] - r["memory_steps_s"] / r["loader_alone_batches_s"]) < 1e-9
        assert abs(r["clips_s"] - r["loader_steps_s"] * 8) < 1e-9


def test_too_few_clips_for_the_steps_is_one_line_naming_the_option() -> None:
    res = run("--clips", "16", "--rounds", "1")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines() == ["--clips 16 gives 2 batches; need 4"]
