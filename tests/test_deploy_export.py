"""`egocache export RUN --onnx / --torchscript` (deploy/export.py) and `egocache predict --onnx`."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploy_data import make_chain
from egocache.cache import CacheDataset
from egocache.cli import main
from egocache.deploy import OnnxRunner, StudentRunner
from egocache.deploy.export import TORCHSCRIPT_INPUTS_FILE, export_student
from egocache.deploy.options import ExportOptions
from egocache.errors import CacheError, ConfigError
from egocache.student.inputs import StudentInputs


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_chain(tmp_path_factory.mktemp("deploy-export"), runs=("egodistill-n1", "egodistill-n2"))


@pytest.fixture(scope="module")
def exported(chain, tmp_path_factory):
    """Both runs exported to ONNX and TorchScript: {run name: [ExportResult onnx, torchscript]}."""
    out = tmp_path_factory.mktemp("exported")
    return {name: export_student(ExportOptions(source=run, onnx=str(out / f"{name}.onnx"),
                                               torchscript=str(out / f"{name}.pt")), log=lambda m: None)
            for name, run in chain.runs.items()}


@pytest.mark.parametrize("name", ["egodistill-n1", "egodistill-n2"])
def test_exports_match_the_torch_student_on_cache_clips_at_any_batch(chain, exported, name):
    onnx, script = exported[name]
    assert (onnx.kind, script.kind) == ("onnx", "torchscript")
    assert onnx.max_abs_diff <= 1e-4 and script.max_abs_diff <= 1e-4
    assert onnx.clips == 6 and onnx.split == "validation" and onnx.cache == chain.cache
    runner = StudentRunner.from_run(chain.runs[name], device="cpu")
    ort_runner = OnnxRunner(onnx.path)
    assert ort_runner.inputs == runner.inputs                      # the file describes itself
    extra = {TORCHSCRIPT_INPUTS_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # torch deprecates TorchScript; it still loads
        traced = torch.jit.load(script.path, _extra_files=extra)
    assert StudentInputs.from_dict(json.loads(extra[TORCHSCRIPT_INPUTS_FILE]), script.path) == runner.inputs
    ds = CacheDataset(chain.cache, split="validation", frames=runner.inputs.frames)
    for size in (1, 5):                                            # neither is the export's example batch (2)
        b = ds[list(range(size))]
        frames, imu = b["frames"].numpy(), b["imu"].numpy()
        want = runner.logits(frames, imu)
        got = ort_runner.logits(frames, imu)
        with torch.no_grad():
            scripted = traced(b["frames"], b["imu"])
        for h, s in zip(runner.inputs.heads, scripted):
            assert got[h].shape == (size, len(runner.inputs.heads[h]))
            assert np.abs(got[h] - want[h]).max() <= 1e-4 and np.abs(s.numpy() - want[h]).max() <= 1e-4


def test_export_cli_prints_the_difference_and_keeps_hdf5_for_caches(chain, tmp_path):
    res = CliRunner().invoke(main, ["export", chain.runs["egodistill-n1"], "--torchscript", str(tmp_path / "s.pt"),
                                    "--check-clips", "3"])
    assert res.exit_code == 0, res.output
    diff = float(re.search(r"\(torchscript\); max abs logit difference .* on 3 validation clips of .*: (\S+)",
                           res.output).group(1))
    assert diff <= 1e-4 and (tmp_path / "s.pt").is_file()
    res = CliRunner().invoke(main, ["export", chain.cache, "--hdf5", str(tmp_path / "c.h5")])
    assert res.exit_code == 0 and (tmp_path / "c.h5").is_file()


@pytest.mark.parametrize("args,message", [
    (["{cache}", "--onnx", "{tmp}/x.onnx"], "a cache; --onnx / --torchscript export a student run"),
    (["{run}", "--hdf5", "{tmp}/x.h5"], "a student run; --hdf5 exports a cache"),
    (["{run}"], "give --hdf5 (for a cache) or --onnx"),
    (["{cache}", "--hdf5", "{tmp}/x.h5", "--onnx", "{tmp}/x.onnx"], "give --hdf5 (for a cache) or --onnx"),
])
def test_export_refuses_a_source_of_the_wrong_kind(chain, tmp_path, args, message):
    argv = [a.format(cache=chain.cache, run=chain.runs["egodistill-n1"], tmp=tmp_path) for a in args]
    res = CliRunner().invoke(main, ["export", *argv])
    assert res.exit_code == 2 and message in res.output
    assert not list(tmp_path.iterdir())


def test_export_needs_a_cache_to_check_on(chain, tmp_path):
    with pytest.raises(CacheError, match="no cache here to check the export on; pass --cache"):
        export_student(ExportOptions(source=chain.runs["egodistill-n1"], onnx=str(tmp_path / "x.onnx"),
                                     cache=str(tmp_path)))
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ConfigError, match="--cache: checks an exported student"):
        ExportOptions(source=chain.cache, hdf5=str(tmp_path / "x.h5"), cache=chain.cache)


def test_predict_with_onnx_gives_the_torch_predictions(chain, exported, tmp_path):
    video = str(chain.video.video_path)
    outputs = {}
    for kind, source in (("torch", ["--run", chain.runs["egodistill-n2"]]),
                         ("onnx", ["--onnx", exported["egodistill-n2"][0].path])):
        res = CliRunner().invoke(main, ["predict", video, *source, *chain.imu_args(), "--out", str(tmp_path / kind),
                                        "--stride", "1.5", "--no-progress", "--device", "cpu"])
        assert res.exit_code == 0, res.output
        assert ("onnxruntime" in res.output) == (kind == "onnx")
        outputs[kind] = json.loads((tmp_path / kind / "predictions.json").read_text())
    torch_w, onnx_w = outputs["torch"]["windows"], outputs["onnx"]["windows"]
    assert len(torch_w) == len(onnx_w) == 6 and all(w["error"] is None for w in onnx_w)
    for a, b in zip(torch_w, onnx_w):
        for h in ("verb", "noun"):
            assert [c["class"] for c in a["top"][h]][:1] == [c["class"] for c in b["top"][h]][:1]
            np.testing.assert_allclose([c["p"] for c in a["top"][h]], [c["p"] for c in b["top"][h]], atol=1e-4)
