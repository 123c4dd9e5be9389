"""Teacher groups (cache/teachers.py): a second teacher's outputs beside the cache's own, over its clips."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr

from cache_factory import HEADS, make_cache
from egocache.cache import CacheDataset, open_cache, verify_cache
from egocache.cache.teachers import TeacherGroupWriter, list_groups, read_group_attrs
from egocache.errors import CacheError

GROUP_DIM = 5


def teacher_section(**extra):
    """A group teacher section: noun head only, 5-d features, one auxiliary output."""
    return {"name": "objects-test", "config": {}, "checkpoint_sha256": None, "feature_dim": GROUP_DIM,
            "heads": {"noun": HEADS["noun"]}, "aux": {"object_score": 5}, **extra}


def add_group(path, name="objects", fail_row=None):
    """Add a complete group whose values are derived from the row (row `fail_row` failed)."""
    w = TeacherGroupWriter.create(path, name, teacher=teacher_section(), sampling={"t": 1, "stride": 1})
    for i in range(w.num_shards):
        rows = np.arange(w.shard_slice(i).start, w.shard_slice(i).stop)
        m = len(rows)
        status = np.ones(m, np.int8)
        errors = [""] * m
        if fail_row is not None and fail_row in rows:
            status[list(rows).index(fail_row)], errors[list(rows).index(fail_row)] = 2, "decode: too short"
        w.write_shard(i, -rows[:, None] + np.zeros((m, GROUP_DIM), np.float32),
                      {"noun": rows[:, None] * 2.0 + np.zeros((m, 5), np.float32)},
                      {"object_score": np.full((m, 5), 0.2, np.float32)}, status, errors)
    return w


def test_group_is_listed_verified_and_read_next_to_the_cache_teacher(tmp_path):
    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    add_group(path, fail_row=7)
    assert list_groups(path) == ["objects"]
    report = verify_cache(path)
    assert report.ok, report.problems
    info = open_cache(path)
    assert info.teachers["objects"]["done_shards"] == info.num_shards
    assert info.teachers["objects"]["status"]["validation"] == {"ok": 3, "failed": 1, "pending": 0}
    assert "teacher +  objects (objects-test): feature 5-d, heads noun, aux object_score (5)" in info.summary()
    ds = CacheDataset(path, split="validation", read_frames=False, teachers=["tiny", "objects"])
    assert ds.skipped_by_teacher == {"objects": 1}
    rows = ds.rows.tolist()
    assert 7 not in rows and len(rows) == 3
    item = ds[list(range(len(ds)))]
    got = item["teachers"]["objects"]
    np.testing.assert_array_equal(got["feature"][:, 0].numpy(), -np.asarray(rows, np.float32))
    np.testing.assert_array_equal(got["logits"]["noun"][:, 0].numpy(), np.asarray(rows) * 2.0)
    assert set(got["logits"]) == {"noun"} and got["aux"]["object_score"].shape == (3, 5)
    own = item["teachers"]["tiny"]          # the cache's own teacher, by its name
    np.testing.assert_array_equal(own["feature"].numpy(), item["feature"].numpy())
    # plain zarr opens the group without egocache
    g = zarr.open_group(os.path.join(path, "teachers", "objects"), mode="r")
    assert g["features"].shape == (10, GROUP_DIM)


def test_group_damage_is_found_and_named(tmp_path):
    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    add_group(path)
    chunk = os.path.join(path, "teachers", "objects", "features", "c", "1", "0")
    with open(chunk, "r+b") as fh:
        fh.write(b"\x01\x02")
    report = verify_cache(path)
    assert not report.ok
    assert any(p.startswith("teacher objects: shard 1") and "features" in p and "checksum" in p
               for p in report.problems), report.problems
    os.remove(os.path.join(path, "teachers", "objects", "_egocache", "shards", "2", "zarr.json"))
    assert any("teacher objects: shard 2" in p and "no done marker" in p for p in verify_cache(path).problems)


def test_group_resumes_and_refuses_what_does_not_fit(tmp_path):
    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    w = TeacherGroupWriter.create(path, "objects", teacher=teacher_section(), sampling={"t": 1, "stride": 1})
    assert w.done_shards() == set()
    add_group(path)            # same attributes: reopens and writes the shards
    assert TeacherGroupWriter.open(path, "objects").done_shards() == {0, 1, 2}
    with pytest.raises(CacheError, match="exists with different attributes"):
        TeacherGroupWriter.create(path, "objects", teacher=teacher_section(feature_dim=6), sampling={})
    with pytest.raises(CacheError, match="the cache's own teacher has this name"):
        TeacherGroupWriter.create(path, "tiny", teacher=teacher_section(), sampling={})
    bad_heads = teacher_section(heads={"noun": ["a", "b"]})
    with pytest.raises(CacheError, match="subset of the cache's heads"):
        TeacherGroupWriter.create(path, "other", teacher=bad_heads, sampling={})
    with pytest.raises(CacheError, match="no teacher 'nope' in this cache; its teachers: tiny, objects"):
        read_group_attrs(path, "nope")
    with pytest.raises(CacheError, match="auxiliary outputs"):
        w.write_shard(0, np.zeros((4, GROUP_DIM)), {"noun": np.zeros((4, 5))}, {}, np.ones(4), [""] * 4)
    with pytest.raises(CacheError, match="features of ok row 0 is not finite"):
        w.write_shard(0, np.full((4, GROUP_DIM), np.nan), {"noun": np.zeros((4, 5))},
                      {"object_score": np.zeros((4, 5))}, np.ones(4), [""] * 4)


def test_edited_group_attributes_fail_verify(tmp_path):
    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    add_group(path)
    meta_path = os.path.join(path, "teachers", "objects", "zarr.json")
    meta = json.load(open(meta_path))
    meta["attributes"]["teacher"]["feature_dim"] = 7
    json.dump(meta, open(meta_path, "w"))
    problems = verify_cache(path).problems
    assert any(p.startswith("teacher objects:") for p in problems), problems
