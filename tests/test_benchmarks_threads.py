"""benchmarks/threads.py: the demo's teacher and ResNet-18 training steps on 1 thread and one per CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import threads  # noqa: E402


def test_each_model_trains_and_gets_one_line_with_its_ratio() -> None:
    before = torch.get_num_threads()
    for make in (threads.teacher_step, threads.encoder_step):
        assert threads.ms_per_step(make(), 1, 1) > 0
    assert torch.get_num_threads() == before
    res = subprocess.run([sys.executable, threads.__file__, "--steps", "1", "--rounds", "1"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 3 and all("speed-up" in line for line in lines[1:]), lines
