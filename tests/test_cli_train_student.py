"""`egocache train-student`: CLI wiring, clear errors, kill -9 and --resume, and no teacher import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cache_factory import make_test_cache
from egocache.cli import main
from egocache.student.checkpoint import load_student_checkpoint



@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return make_test_cache(tmp_path_factory.mktemp("cache"), n_train=32, n_val_segments=4)


def args(cache: str, out: Path, *extra: str) -> list[str]:
    return ["train-student", "--cache", cache, "--out", str(out), "--batch-size", "8", "--num-workers", "0",
            "--no-progress", *extra]


def test_cli_trains_and_prints_a_json_summary(cache, tmp_path):
    res = CliRunner().invoke(main, args(cache, tmp_path / "run", "--variant", "visonly", "--frames", "1",
                                        "--epochs", "1", "--lr", "3e-4", "--milestones", "1", "--json"))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["stages"] == ["distill"] and summary["epoch"] == 1 and 0 <= summary["top1_acc"] <= 1
    cfg = load_student_checkpoint(tmp_path / "run" / "last.pt")["config"]
    assert (cfg["lr"], cfg["milestones"], cfg["variant"]) == (3e-4, [1], "visonly")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["epochs"] == 1


@pytest.mark.parametrize("extra,message", [
    (["--variant", "visonly", "--frames", "3"], "no stored frames for N=3"),
    (["--variant", "visonly-distill", "--frames", "1", "--stage", "pretrain"], "no pretrain stage"),
    (["--variant", "visonly", "--frames", "1", "--milestones", "a,b"], "Invalid value"),
    (["--variant", "visonly", "--frames", "1", "--alpha", "2"], "Invalid value for '--alpha'"),
    (["--variant", "visonly", "--frames", "1", "--batch-size", "64"], "fewer than one batch of 64"),
])
def test_cli_refuses_bad_requests_with_one_line(cache, tmp_path, extra, message):
    res = CliRunner().invoke(main, args(cache, tmp_path / "run", *extra))
    assert res.exit_code in (1, 2) and message in res.output
    assert not (tmp_path / "run" / "last.pt").exists()


def _wrapped(argv: list[str]) -> list[str]:
    """python -c running the CLI in-process, then failing if any teacher module was imported."""
    code = ("import sys; from egocache.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad = [m for m in sys.modules if m.startswith('egocache.pipeline.teachers')]\n"
            "assert not bad, f'training imported teacher modules {bad}'\n")
    return [sys.executable, "-c", code, *argv]


def test_kill_mid_epoch_and_resume_gives_the_uninterrupted_metrics(cache, tmp_path):
    """SIGKILL right after the first mid-epoch checkpoint; --resume must reproduce metrics.json exactly."""
    out = tmp_path / "run"
    argv = args(cache, out, "--variant", "egodistill", "--frames", "1", "--stage", "distill", "--epochs", "2",
                "--checkpoint-every", "2", "--seed", "3")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(_wrapped(argv), env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    reference = (out / "metrics.json").read_text()
    os.rename(out, tmp_path / "uninterrupted")

    proc = subprocess.Popen(_wrapped(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_student_checkpoint(out / "last.pt")
    assert killed_at["batch"] > 0 and not (out / "metrics.json").exists()  # really mid-epoch

    resumed = subprocess.run(_wrapped(argv + ["--resume"]), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at epoch 1 batch {killed_at['batch']}" in resumed.stderr
    assert (out / "metrics.json").read_text() == reference
    assert (out / "metrics.csv").read_text() == (tmp_path / "uninterrupted" / "metrics.csv").read_text()
