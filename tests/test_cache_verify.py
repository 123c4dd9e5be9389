"""verify_cache and `egocache verify`: a sound cache passes; each kind of damage is named."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner
from cache_factory import create, make_cache, write

from egocache.cache import verify_cache
from egocache.cli import main


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("v") / "c.zarr")


@pytest.fixture
def cache(pristine, tmp_path):
    path = str(tmp_path / "c.zarr")
    shutil.copytree(pristine, path)
    return path


def flip_byte(file: str, at: int) -> None:
    """Invert one byte of a file in place."""
    with open(file, "r+b") as fh:
        fh.seek(at)
        b = fh.read(1)
        fh.seek(at)
        fh.write(bytes([b[0] ^ 0xFF]))


def test_sound_cache_passes(cache):
    report = verify_cache(cache)
    assert report.ok and report.problems == []
    assert report.checked["shards_committed"] == 3 and report.checked["files_hashed"] == 3 * 7 + 8
    result = CliRunner().invoke(main, ["verify", cache])
    assert result.exit_code == 0 and result.output.startswith("OK")


def test_flipped_byte_in_a_frames_shard_is_named(cache):
    shard = os.path.join(cache, "frames", "c", "1", "0", "0", "0", "0")
    flip_byte(shard, 1000)
    report = verify_cache(cache)
    assert not report.ok
    assert report.problems == [f"shard 1 (rows 4-7) array frames: checksum mismatch in {shard} "
                               "(file corrupted or changed after commit)"]
    result = CliRunner().invoke(main, ["verify", cache, "--json"])
    assert result.exit_code == 1 and json.loads(result.output)["ok"] is False


def test_flipped_byte_in_a_clip_table_chunk_is_named(cache):
    flip_byte(os.path.join(cache, "clip_id", "c", "0"), 5)
    report = verify_cache(cache)
    assert not report.ok and "array clip_id: checksum mismatch" in report.problems[0]


def test_missing_shard_file_is_named(cache):
    os.unlink(os.path.join(cache, "imu", "c", "2", "0", "0"))
    report = verify_cache(cache)
    assert report.problems == [f"shard 2 (rows 8-9) array imu: missing file {cache}/imu/c/2/0/0"]
    result = CliRunner().invoke(main, ["verify", cache])
    assert result.exit_code == 1 and "missing file" in result.output


def test_truncated_root_attribute_file_is_named(cache):
    meta = os.path.join(cache, "zarr.json")
    with open(meta, "r+") as fh:
        fh.truncate(40)
    report = verify_cache(cache)
    assert not report.ok and report.problems[0].startswith(f"root attributes: {meta}: unreadable or corrupt JSON")
    assert CliRunner().invoke(main, ["verify", cache]).exit_code == 1


def test_corrupt_array_metadata_is_named(cache):
    with open(os.path.join(cache, "features", "zarr.json"), "w") as fh:
        fh.write('{"shape": [10, 8')
    report = verify_cache(cache)
    assert not report.ok and report.problems[0].startswith("array features:")
    assert "corrupt JSON" in report.problems[0]


def test_wrong_shape_in_array_metadata_is_named(cache):
    meta_file = os.path.join(cache, "status", "zarr.json")
    meta = json.load(open(meta_file))
    meta["shape"] = [11]
    json.dump(meta, open(meta_file, "w"))
    problems = verify_cache(cache).problems
    assert problems[0] == f"array status: shape is [11], expected [10] ({meta_file})"
    assert problems[-1] == f"array status: metadata {meta_file} was changed after the cache was created"


def test_incomplete_shard_without_marker_is_named(tmp_path):
    w = create(tmp_path / "c.zarr")
    write(w, 0)
    write(w, 2)
    report = verify_cache(str(tmp_path / "c.zarr"))
    assert report.problems == ["shard 1 (rows 4-7): incomplete, no done marker (extraction did not "
                               "finish; rerun it to resume)"]


def test_corrupt_done_marker_is_named(cache):
    with open(os.path.join(cache, "_egocache", "shards", "0", "zarr.json"), "w") as fh:
        fh.write("{")
    report = verify_cache(cache)
    assert not report.ok and "done marker of shard 0 is corrupt" in report.problems[0]


def test_frame_sets_that_do_not_index_their_selection_are_named():
    from egocache.cache.selections import FRAME_SELECTIONS
    from egocache.cache.verify import check_attr_consistency
    from egocache.pipeline.sampling import student_positions

    positions, sets, fl = student_positions((1, 4), True, FRAME_SELECTIONS)
    sampling = {"positions": positions, "frames_for_n": {str(n): v for n, v in sets["uniform"].items()},
                "first_last": fl, "frame_sets": {s: {str(n): v for n, v in b.items()} for s, b in sets.items()}}
    attrs = {"sampling": sampling, "imu": {"channels": ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"]},
             "teacher": {"heads": {"verb": ["a"]}}}
    assert check_attr_consistency(attrs) == []
    sampling["frame_sets"]["last"]["4"] = sets["first"][4]
    sampling["frame_sets"]["nearest"] = {"1": [0]}
    problems = check_attr_consistency(attrs)
    assert len(problems) == 2 and "frame_sets[last][4]" in problems[0] and "unknown frame selection 'nearest'" in problems[1]
