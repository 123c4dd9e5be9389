"""The online API (deploy/runner.py): a trained student on frames and IMU windows, in torch or onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploy_data import make_chain
from egocache.cache import CacheDataset
from egocache.cli import main
from egocache.deploy import OnnxRunner, StudentRunner
from egocache.deploy.runner import fit_frames
from egocache.errors import CheckpointError, ConfigError, DependencyError
from egocache.student.checkpoint import student_from_checkpoint


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_chain(tmp_path_factory.mktemp("deploy-runner"))


@pytest.fixture(scope="module")
def batch(chain):
    ds = CacheDataset(chain.cache, split="validation", frames=1)
    return ds[list(range(len(ds)))]


def test_runner_gives_the_students_outputs(chain, batch):
    runner = StudentRunner.from_run(chain.runs["egodistill-n1"], device="cpu")
    student, _ = student_from_checkpoint(f"{chain.runs['egodistill-n1']}/last.pt")
    with torch.no_grad():
        want = student({"frames": batch["frames"], "imu": batch["imu"]})["logits"]
    got = runner.logits(batch["frames"].numpy(), batch["imu"].numpy())
    probs = runner.predict(batch["frames"].numpy(), batch["imu"].numpy())
    for h in ("verb", "noun"):
        np.testing.assert_allclose(got[h], want[h].numpy(), atol=1e-5)     # the cache's IMU is centred already
        assert probs[h].shape == (len(batch["frames"]), len(runner.inputs.heads[h]))
        np.testing.assert_allclose(probs[h].sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probs[h].argmax(1), want[h].argmax(1).numpy())
    raw = batch["imu"].numpy() + np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0], np.float32)   # an uncentred window
    np.testing.assert_allclose(runner.logits(batch["frames"].numpy(), raw)["verb"], got["verb"], atol=1e-4)


def test_runner_checks_its_inputs_and_fits_camera_frames(chain, batch):
    runner = StudentRunner.from_run(chain.runs["egodistill-n1"], device="cpu")
    frames, imu = batch["frames"].numpy()[:2], batch["imu"].numpy()[:2]
    with pytest.raises(ConfigError, match="frames: expected uint8 RGB"):
        runner.predict(frames.astype(np.float32), imu)
    with pytest.raises(ConfigError, match=r"frames: .*N=1"):
        runner.predict(np.concatenate([frames, frames], axis=1), imu)
    with pytest.raises(ConfigError, match=r"imu: expected float \(2, 422, 6\)"):
        runner.predict(frames, imu[:, :100])
    with pytest.raises(ConfigError, match="imu: student variant egodistill needs"):
        runner.predict(frames)
    camera = np.random.default_rng(0).integers(0, 256, (2, 1, 72, 128, 3), dtype=np.uint8)
    fitted = fit_frames(camera, runner.inputs)
    assert fitted.shape == (2, 1, 32, 32, 3) and fitted.dtype == np.uint8
    np.testing.assert_array_equal(runner.predict(camera, imu)["verb"], runner.predict(fitted, imu)["verb"])
    visonly = StudentRunner.from_run(chain.runs["visonly-n1"], device="cpu")
    assert visonly.predict(frames)["verb"].shape == (2, 9)


def test_runner_refuses_a_checkpoint_that_is_not_there(chain, tmp_path):
    with pytest.raises(CheckpointError, match="best.pt: no such checkpoint in the run folder") as err:
        StudentRunner.from_run(tmp_path, weights="best")
    assert "validation clips" in str(err.value)


def test_onnx_without_onnxruntime_is_one_clear_line(chain, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)          # import onnxruntime now raises ImportError
    with pytest.raises(DependencyError, match=r"--onnx: needs the Python package onnxruntime.*egocache\[deploy\]"):
        OnnxRunner(tmp_path / "student.onnx")
    (tmp_path / "student.onnx").write_bytes(b"not used")
    res = CliRunner().invoke(main, ["predict", str(chain.video.video_path), "--onnx", str(tmp_path / "student.onnx"),
                                    "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 1 and "egocache[deploy]" in res.output and len(res.output.strip().splitlines()) == 1


def test_the_cli_builds_predict_and_export_options_without_torch():
    code = ("import sys; import egocache.cli, egocache.deploy.options; "
            "assert 'torch' not in sys.modules, 'the CLI imported torch'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
