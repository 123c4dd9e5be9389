"""benchmarks/ensemble_live.py at a tiny size: every mode's row, both ratios, live outputs equal to the cached.

Timings are noisy and not asserted; the speed figures belong in the benchmark's output only.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ensemble_live.py"
TINY = ["--videos", "2", "--duration", "12", "--video-width", "96", "--video-height", "64", "--frame-size", "32",
        "--batch-size", "2", "--steps", "1", "--warmup", "0", "--rounds", "1", "--added", "short"]


def load_script():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("ensemble_live", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prints_every_mode_and_both_ratios_with_live_outputs_equal_to_the_cached(capsys):
    load_script().main(TINY)
    out = capsys.readouterr().out
    assert "teachers mformer-tiny, short (depth=1, num_frames=4)" in out
    for mode in ("cache", "live-decode", "live-memory"):
        assert re.search(rf"^  {mode} +\d+\.\d\d \(", out, re.M), out
    ratios = dict(re.findall(r"^ratio cache/(live-decode|live-memory): (\d+\.\d+)$", out, re.M))
    assert set(ratios) == {"live-decode", "live-memory"} and all(float(v) > 0 for v in ratios.values()), out
    diff = re.search(r"live teacher outputs against the cached ones: max \|difference\| (\S+)", out)
    assert diff and float(diff.group(1)) <= 1e-4, out
    assert "GFLOPs per clip: student (train)" in out and "FLOPs-only live-memory ratio" in out


def test_unknown_added_teacher_is_refused(capsys):
    with pytest.raises(SystemExit):
        load_script().parse_args(["--added", "short,huge"])
    assert "--added: unknown teacher(s) huge; known: short, wide, sharp" in capsys.readouterr().err
