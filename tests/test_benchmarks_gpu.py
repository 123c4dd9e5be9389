"""benchmarks/gpu.sh --dry-run: the GPU script runs every step with its CPU stand-ins and writes its figures."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_writes_every_figure_with_cpu_stand_ins(tmp_path):
    out = tmp_path / "figures"
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--dry-run", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    log = (out / "gpu.log").read_text() if (out / "gpu.log").exists() else ""
    assert proc.returncode == 0 and "failed" not in proc.stderr, proc.stderr + log[-3000:]
    fig = json.loads((out / "gpu-figures.json").read_text())
    assert fig["machine"]["dry_run"] is True and fig["machine"]["gpus"] == []
    missing = [s for s in ("teacher", "latency", "extract", "loader", "ddp") if "missing" in fig[s]]
    assert not missing, log[-3000:]
    assert fig["teacher"]["teacher"] == "mformer-tiny" and fig["teacher"]["clips_s_batch4"] > 0
    assert "re-encoded at 192x108" in fig["extract"]["video"]
    assert fig["latency"]["teacher_ms_float32"] > 0 and fig["latency"]["student_ms_float32"] > 0
    assert 0 < fig["extract"]["teacher_busy_fraction"] <= 1 and fig["extract"]["clips"] > 0
    for n in ("n1", "n4"):
        assert fig["loader"][n]["trained-encoder"]["ratio"] > 0 and fig["loader"][n]["frozen"]["ratio"] > 0
    assert fig["ddp"]["processes"] == 2 and fig["ddp"]["backend"].startswith("gloo") and fig["ddp"]["steps_s"] > 0
    md = (out / "gpu-figures.md").read_text()
    assert md.startswith("### GPU figures (CPU stand-ins") and "torchrun train-student, 2 processes" in md
    assert "mformer-tiny clips/s, batch 2 / 4" in md and "Not measured" not in md
