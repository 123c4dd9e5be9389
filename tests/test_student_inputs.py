"""What a run saves about its student's inputs (student/inputs.py: OUT/run.json) and how it is read back."""

from __future__ import annotations

import json
import shutil

import pytest

from cache_factory import make_test_cache
from egocache.cache import open_cache
from egocache.errors import CheckpointError
from egocache.student.config import TrainConfig
from egocache.student.inputs import RUN_INPUTS_FILE, StudentInputs, read_run_inputs
from egocache.student.train import train_student


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    cache = make_test_cache(root, n_train=16, n_val_segments=2, frame_counts=(1, 2))
    cfg = TrainConfig(cache=cache, out=str(root / "run"), variant="egodistill", frames=2, stage="distill", epochs=1,
                      batch_size=8, num_workers=0, device="cpu", freeze_image_encoder=True)
    train_student(cfg, progress=False, log=lambda msg: None)
    return cache, root / "run"


def test_train_student_writes_the_inputs_of_its_student(run):
    cache, out = run
    info = open_cache(cache)
    saved = json.loads((out / RUN_INPUTS_FILE).read_text())
    sam = info.sampling
    assert saved["positions"] == [sam["positions"][i] for i in sam["frames_for_n"]["2"]] == [0.25, 0.75]
    assert (saved["variant"], saved["frames"], saved["frame_size"], saved["needs_imu"]) == ("egodistill", 2, 32, True)
    assert saved["teacher_size"] == 0                                  # this test cache does not record it
    assert (saved["clip_frames"], saved["clip_stride"], saved["clip_seconds"]) == (16, 4, sam["clip_seconds"])
    assert (saved["imu_rate_hz"], saved["imu_window"], saved["imu_channels"]) == (198.0, 422, info.imu["channels"])
    assert saved["heads"] == info.heads and list(saved["heads"]) == ["verb", "noun"]
    inputs, where = read_run_inputs(out)
    assert where == str(out / RUN_INPUTS_FILE) and inputs.to_dict() == saved


def test_a_run_without_run_json_is_described_by_its_cache_while_it_exists(run, tmp_path):
    cache, out = run
    old = tmp_path / "old-run"
    shutil.copytree(out, old)
    (old / RUN_INPUTS_FILE).unlink()
    inputs, where = read_run_inputs(old)
    assert inputs == read_run_inputs(out)[0] and where == f"cache {cache} (the run has no {RUN_INPUTS_FILE})"
    cfg = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**cfg, "cache": str(tmp_path / "gone.zarr")}))
    with pytest.raises(CheckpointError, match="run.json: missing, and the run's cache .* --resume") as err:
        read_run_inputs(old)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not a student run folder"):
        read_run_inputs(tmp_path / "nothing")


def test_malformed_records_are_refused_naming_the_file(run):
    saved = json.loads((run[1] / RUN_INPUTS_FILE).read_text())
    with pytest.raises(CheckpointError, match="x.json: not an egocache student input record"):
        StudentInputs.from_dict({**saved, "format": 99}, "x.json")
    with pytest.raises(CheckpointError, match="x.json: student input record lacks frame_size"):
        StudentInputs.from_dict({k: v for k, v in saved.items() if k != "frame_size"}, "x.json")
    with pytest.raises(CheckpointError, match="x.json: 1 frame positions for N=2"):
        StudentInputs.from_dict({**saved, "positions": [0.5]}, "x.json")
