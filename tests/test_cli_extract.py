"""`egocache extract` through the CLI: summary output, exit codes, lock, and kill -9 then resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from egocache.cache import extraction_lock
from egocache.cache.schema import committed_shards
from egocache.cli import main
from extract_data import CLIP_FAILURES, NUM_CLIPS, cli_args, make_bad_dataset, make_dataset, read_arrays


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The tiny synthetic dataset (2 videos, 7 clips), made once for the module."""
    return make_dataset(tmp_path_factory.mktemp("cli") / "ds")


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted `egocache extract --json` run: (cache path, CliRunner result)."""
    cache = tmp_path_factory.mktemp("ref") / "ref.zarr"
    result = CliRunner().invoke(main, [*cli_args(dataset, cache), "--json"])
    return cache, result


def test_json_summary_on_stdout(reference):
    cache, result = reference
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["clips"], summary["clips_ok"], summary["clips_failed"]) == (NUM_CLIPS, NUM_CLIPS, 0)
    assert summary["cache"] == str(cache) and summary["summary_file"].startswith(str(cache))
    assert summary["frames_decoded_per_clip"] >= summary["frames_spanned_per_clip"] > 0


def test_human_summary_and_json_file_when_resumed(dataset, reference, tmp_path):
    cache, _ = reference
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(main, [*cli_args(dataset, cache), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{NUM_CLIPS}/{NUM_CLIPS} clips ok" in result.output and "already done" in result.output
    assert json.loads(out.read_text())["shards_resumed"] == NUM_CLIPS


def test_failures_are_listed_and_strict_exits_1(dataset, tmp_path):
    root, _, clips_csv = make_bad_dataset(dataset, tmp_path)
    result = CliRunner().invoke(main, cli_args(dataset, tmp_path / "bad.zarr", (clips_csv,), root))
    assert result.exit_code == 0, result.output
    assert f"1/{1 + len(CLIP_FAILURES)} clips ok" in result.output and "P02_105: no IMU file" in result.output
    assert "P02_102_0/0: decode: " in result.output and "empty file" in result.output
    strict = CliRunner().invoke(main, [*cli_args(dataset, tmp_path / "strict.zarr", (clips_csv,), root),
                                       "--strict"])
    assert strict.exit_code == 1 and "P02_105: no IMU file" in strict.output and "--strict" in strict.output
    clip_strict = CliRunner().invoke(main, [*cli_args(dataset, tmp_path / "strict2.zarr", (clips_csv,), root),
                                            "--strict", "--imu", "optional"])
    assert clip_strict.exit_code == 1 and "P02_101_0/0" in clip_strict.output and "--strict" in clip_strict.output


def test_exit_1_when_nothing_succeeded(dataset, tmp_path):
    root, _, clips_csv = make_bad_dataset(dataset, tmp_path)
    lines = open(clips_csv).read().splitlines()
    only_bad = tmp_path / "only_bad_train.csv"
    only_bad.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    result = CliRunner().invoke(main, cli_args(dataset, tmp_path / "none.zarr", (str(only_bad),), root))
    assert result.exit_code == 1 and "no clip was extracted" in result.output


def test_locked_cache_is_refused(dataset, tmp_path):
    cache = tmp_path / "locked.zarr"
    with extraction_lock(str(cache)):
        result = CliRunner().invoke(main, cli_args(dataset, cache))
    assert result.exit_code == 1 and "another extraction is writing this cache" in result.output


@pytest.mark.parametrize("bad, option", [(["--frames", "1,x"], "--frames"),
                                         (["--teacher-option", "img_size"], "--teacher-option"),
                                         (["--device", "tpu"], "--device")])
def test_bad_option_values_are_usage_errors(dataset, tmp_path, bad, option):
    result = CliRunner().invoke(main, [*cli_args(dataset, tmp_path / "c.zarr"), *bad])
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(dataset, reference, tmp_path):
    ref, _ = reference
    cache = tmp_path / "killed.zarr"
    args = [sys.executable, "-m", "egocache", *cli_args(dataset, cache)]
    # one torch thread, as the in-process runs (tests/conftest.py): float sums then match bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 120
    try:
        while not committed_shards(str(cache)) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        _, err = proc.communicate()
    done = committed_shards(str(cache))
    assert proc.returncode == -signal.SIGKILL, err.decode()
    assert 1 <= len(done) < NUM_CLIPS, f"killed after {sorted(done)} shards"

    rerun = CliRunner().invoke(main, [*cli_args(dataset, cache), "--json"])
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)
    assert summary["shards_resumed"] >= len(done) and summary["clips_ok"] == NUM_CLIPS
    got, want = read_arrays(cache), read_arrays(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name]), name
