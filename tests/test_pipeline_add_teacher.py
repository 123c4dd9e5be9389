"""`egocache extract --teacher B --cache C` on an existing cache adds teacher B as teachers/<name>."""

from __future__ import annotations

import hashlib
from pathlib import Path
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from egocache.cache import CacheDataset, open_cache, verify_cache
from egocache.cli import main
from extract_data import NUM_CLIPS, cli_args, make_dataset, read_arrays

# teacher B: a shallower mformer-tiny over 4 frames (another clip length, so another frame plan)
B_OPTIONS = ["--teacher-option", "depth=1", "--teacher-option", "num_frames=4"]


def root_files(cache) -> dict[str, str]:
    """sha256 of every file of the cache outside teachers/ and the extraction summary."""
    out = {}
    for folder, _, files in os.walk(cache):
        rel = os.path.relpath(folder, cache)
        if rel.split(os.sep)[0] == "teachers" or rel.startswith(os.path.join("_egocache", "extract")):
            continue
        for f in files:
            with open(os.path.join(folder, f), "rb") as fh:
                out[os.path.join(rel, f)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def added(tmp_path_factory):
    """A cache of mformer-tiny with teacher B added as 'short', and a fresh cache of teacher B alone."""
    tmp = tmp_path_factory.mktemp("add")
    ds = make_dataset(tmp / "ds")
    cache = tmp / "c.zarr"
    first = CliRunner().invoke(main, cli_args(ds, cache))
    assert first.exit_code == 0, first.output
    before = root_files(cache)
    result = CliRunner().invoke(main, [*cli_args(ds, cache), *B_OPTIONS, "--teacher-name", "short", "--json"])
    fresh = tmp / "b.zarr"
    alone = CliRunner().invoke(main, [*cli_args(ds, fresh), *B_OPTIONS])
    assert alone.exit_code == 0, alone.output
    return ds, cache, before, result, fresh


def test_added_teacher_equals_a_fresh_extraction_and_leaves_the_cache_alone(added):
    ds, cache, before, result, fresh = added
    assert result.exit_code == 0, result.output
    assert "adding mformer-tiny as teachers/short" in result.output
    summary = json.loads(result.stdout)
    assert (summary["group"], summary["clips_ok"], summary["shards_run"]) == ("short", NUM_CLIPS, NUM_CLIPS)
    assert root_files(cache) == before                 # frames, IMU, the first teacher: not rewritten
    group = read_arrays(os.path.join(cache, "teachers", "short"))
    alone = read_arrays(fresh)
    for name in ("features", "logits_verb", "logits_noun", "status"):
        np.testing.assert_array_equal(group[name], alone[name], err_msg=name)
    assert verify_cache(str(cache)).ok
    info = open_cache(str(cache))
    assert info.teachers["short"]["sampling"]["t"] == 4 and info.teachers["short"]["done_shards"] == NUM_CLIPS
    listed = CliRunner().invoke(main, ["info", str(cache)])
    assert "teacher +  short (mformer-tiny): feature 96-d, heads verb, noun; 7/7 shards, 7 ok, 0 failed" in listed.output
    ds_ = CacheDataset(str(cache), split="validation", read_frames=False, teachers=["mformer-tiny", "short"])
    batch = ds_[list(range(len(ds_)))]
    rows = ds_.rows
    np.testing.assert_array_equal(batch["teachers"]["short"]["feature"].numpy(), alone["features"][rows])
    np.testing.assert_array_equal(batch["teachers"]["mformer-tiny"]["feature"].numpy(), batch["feature"].numpy())


def test_adding_again_resumes_a_partial_group(added):
    ds, cache, _, _, _ = added
    marker = os.path.join(cache, "teachers", "short", "_egocache", "shards", "3", "zarr.json")
    os.remove(marker)
    assert not verify_cache(str(cache)).ok
    again = CliRunner().invoke(main, [*cli_args(ds, cache), *B_OPTIONS, "--teacher-name", "short", "--json"])
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert (summary["shards_run"], summary["shards_resumed"]) == (1, NUM_CLIPS - 1)
    assert verify_cache(str(cache)).ok


def test_refusals_name_the_problem(added, tmp_path):
    ds, cache, _, _, _ = added
    same_name = CliRunner().invoke(main, [*cli_args(ds, cache), *B_OPTIONS])
    assert same_name.exit_code != 0 and "the cache's own teacher has this name" in same_name.output
    assert "Traceback" not in same_name.output
    other = CliRunner().invoke(main, [*cli_args(ds, cache, csvs=(ds.train_csv,)), *B_OPTIONS,
                                      "--teacher-name", "x"])
    assert other.exit_code != 0 and "the annotations give other clips than the cache holds" in other.output
    changed = CliRunner().invoke(main, [*cli_args(ds, cache), "--teacher-option", "depth=1",
                                        "--teacher-name", "short"])
    assert changed.exit_code != 0 and "teacher group 'short' exists with different attributes" in changed.output


def test_an_object_score_teacher_is_added_with_its_auxiliary_output(added):
    ds, cache, _, _, _ = added
    res = CliRunner().invoke(main, [*cli_args(ds, cache), "--teacher", "objects-tiny", "--json"])
    assert res.exit_code == 0, res.output
    group = read_arrays(os.path.join(cache, "teachers", "objects-tiny"))
    score = group["aux_object_score"]
    assert score.shape == (NUM_CLIPS, group["logits_noun"].shape[1])
    np.testing.assert_allclose(score.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(score, np.exp(group["logits_noun"]) / np.exp(group["logits_noun"]).sum(1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    assert verify_cache(str(cache)).ok
    assert "aux object_score" in CliRunner().invoke(main, ["info", str(cache)]).output
    run = CliRunner().invoke(main, ["train-student", "--cache", str(cache), "--out", str(Path(cache).parent / "aux-run"),
                                    "--variant", "visonly-distill", "--frames", "1", "--epochs", "1", "--batch-size", "1",
                                    "--freeze-image-encoder", "--num-workers", "0", "--no-progress",
                                    "--aux", "objects-tiny/object_score:0.5", "--json"])
    assert run.exit_code == 0, run.output
    assert "aux_object_score" in (Path(cache).parent / "aux-run" / "metrics.json").read_text()
