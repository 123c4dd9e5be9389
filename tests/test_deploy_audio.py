"""A listentolook student deployed (issue 13): the runner, `egocache export` and `egocache predict` feed it
the clip's log spectrogram, computed from the video's own audio track exactly as the cache holds it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from deploy_data import make_chain
from egocache.cache import CacheDataset
from egocache.cli import main
from egocache.deploy import OnnxRunner, StudentRunner
from egocache.deploy.export import export_student
from egocache.deploy.options import ExportOptions
from egocache.deploy.predict import student_model
from egocache.deploy.stream import Window, run_pass
from egocache.errors import ConfigError


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_chain(tmp_path_factory.mktemp("deploy-audio"), runs=("listentolook-n1",))


@pytest.fixture(scope="module")
def cached(chain):
    """The validation clips of the cache: frames, audio, and their centres."""
    ds = CacheDataset(chain.cache, split="validation", frames=1, read_audio=True)
    b = ds[list(range(len(ds)))]
    g = zarr.open_group(chain.cache, mode="r")
    rows = b["row"].numpy()
    centres = (np.asarray(g["start_s"][:])[rows] + np.asarray(g["end_s"][:])[rows]) / 2
    return b, centres


def test_the_runner_takes_spectrograms_and_names_what_is_missing(chain, cached):
    b, _ = cached
    runner = StudentRunner.from_run(chain.runs["listentolook-n1"], device="cpu")
    assert (runner.inputs.sensor, runner.inputs.sensor_shape) == ("audio", (201, 211))
    frames, audio = b["frames"].numpy(), b["audio"].numpy()
    probs = runner.predict(frames, audio=audio.astype(np.float32))
    assert probs["verb"].shape == (len(frames), 9) and np.allclose(probs["verb"].sum(1), 1, atol=1e-5)
    assert np.array_equal(runner.logits(frames, audio=audio)["verb"], runner.logits(frames, audio=audio)["verb"])
    with pytest.raises(ConfigError, match="audio: student variant listentolook needs the clips' log spectrograms"):
        runner.logits(frames)
    with pytest.raises(ConfigError, match="audio: expected float \\(6, 201, 211\\)"):
        runner.logits(frames, audio=audio[:, :, :100])


def test_predict_feeds_it_the_cached_spectrograms(chain, cached, tmp_path):
    b, centres = cached
    runner = StudentRunner.from_run(chain.runs["listentolook-n1"], device="cpu")
    model = student_model(runner)
    seen = []
    run = model.run
    model.run = lambda frames, audio: seen.append(audio) or run(frames, audio)
    windows = [Window(i, float(c), float(c) - 1.0, float(c) + 1.0) for i, c in enumerate(centres)]
    got = run_pass(str(chain.video.video_path), windows, model, batch_size=4)
    assert got.errors == [""] * len(windows) and got.seconds["audio"] > 0
    np.testing.assert_array_equal(np.concatenate(seen), b["audio"].numpy().astype(np.float32))
    res = CliRunner().invoke(main, ["predict", str(chain.video.video_path), "--run", chain.runs["listentolook-n1"],
                                    "--out", str(tmp_path), "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "predictions.json").read_text())
    assert summary["windows_failed"] == 0 and summary["seconds"]["audio"] > 0


def test_export_writes_an_audio_input_that_onnxruntime_and_torchscript_run(chain, cached, tmp_path):
    b, _ = cached
    onnx, script = export_student(ExportOptions(source=chain.runs["listentolook-n1"], onnx=str(tmp_path / "l.onnx"),
                                                torchscript=str(tmp_path / "l.pt")), log=lambda m: None)
    assert onnx.max_abs_diff <= 1e-4 and script.max_abs_diff <= 1e-4 and onnx.clips == 6
    ort = OnnxRunner(onnx.path)
    assert [i.name for i in ort.session.get_inputs()] == ["frames", "audio"]
    runner = StudentRunner.from_run(chain.runs["listentolook-n1"], device="cpu")
    frames, audio = b["frames"].numpy()[:5], b["audio"].numpy()[:5]
    want, have = runner.logits(frames, audio=audio), ort.logits(frames, audio=audio)
    assert all(np.abs(want[h] - have[h]).max() <= 1e-4 for h in want)
