"""Format 1 caches (tests/data/v1-*.zarr, written by egocache before format 2 with cache_factory.make_cache)
still open, verify and read exactly like the same clips written today in format 2; format 2 stores its
fixed-size arrays uncompressed so rows are read straight from the shard files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache_factory import create, make_cache, shard_data
from egocache.cache import FORMAT_VERSION, CacheDataset, open_cache, read_attrs, verify_cache
from egocache.cache.schema import array_specs, direct_rows
from egocache.cli import main

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=["raw", "jpeg"])
def caches(request, tmp_path):
    """(format 1 copy, format 2 cache) holding the same clips."""
    old = tmp_path / "v1.zarr"
    shutil.copytree(DATA / f"v1-{request.param}.zarr", old)
    return str(old), make_cache(tmp_path / "v2.zarr", codec=request.param)


def test_format_1_caches_open_verify_and_describe_themselves(caches):
    old, new = caches
    assert read_attrs(old)["format_version"] == 1 and read_attrs(new)["format_version"] == FORMAT_VERSION == 2
    report = verify_cache(old)
    assert report.ok, report.problems
    a, b = open_cache(old), open_cache(new)
    assert (a.splits, a.status, a.done_shards, a.format_version) == (b.splits, b.status, b.done_shards, 1)
    result = CliRunner().invoke(main, ["info", old])
    assert result.exit_code == 0 and "format v1" in result.output


@pytest.mark.parametrize("split", ["train", "validation"])
def test_format_1_and_2_give_the_same_items(caches, split):
    old, new = caches
    a = CacheDataset(old, split=split, frames=4, first_last=True)
    b = CacheDataset(new, split=split, frames=4, first_last=True)
    assert a.rows.tolist() == b.rows.tolist() and a.segment_ids == b.segment_ids
    assert a._load().memory is not None and b._load().memory is None     # format 1 loads, format 2 reads rows
    idx = list(range(len(a)))[::-1]
    x, y = a[idx], b[idx]
    for key in ("frames", "first_last", "imu", "feature", "row", "segment"):
        torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)
    for part in ("logits", "label"):
        for h in x[part]:
            torch.testing.assert_close(x[part][h], y[part][h], rtol=0, atol=0)


def test_a_format_1_cache_resumes_in_format_1(tmp_path):
    path = tmp_path / "v1.zarr"
    shutil.copytree(DATA / "v1-raw.zarr", path)
    marker = path / "_egocache" / "shards" / "2" / "zarr.json"
    marker.unlink()                                          # shard 2 as if the extraction had been killed
    writer = create(path)                                    # the same clip table and attributes: a resume
    assert writer.attrs["format_version"] == 1 and writer.done_shards() == {0, 1}
    d = shard_data(writer, 2)
    writer.write_shard(2, d["features"], d["logits"], d["imu"], d["frames"], d["status"], d["errors"])
    assert verify_cache(str(path)).ok and json.loads(marker.read_text())["attributes"]["shard"] == 2


def test_format_2_rows_are_uncompressed_at_fixed_offsets(tmp_path):
    path = make_cache(tmp_path / "c.zarr")
    attrs = read_attrs(path)
    direct = {s.name for s in array_specs(attrs) if direct_rows(s, 2)}
    assert direct == {"features", "logits_verb", "logits_noun", "imu", "status", "start_s", "end_s",
                      "label_verb", "label_noun"}
    raw = np.fromfile(Path(path, "imu", "c", "1", "0", "0"), dtype="<f4").reshape(4, 422, 6)
    assert np.array_equal(raw[1], np.full((422, 6), 5.0, np.float32))       # row 5 = shard 1, row 1: value 5


def test_a_truncated_row_file_is_one_line_naming_it(tmp_path):
    path = make_cache(tmp_path / "c.zarr")
    ds = CacheDataset(path, split="validation", frames=1)
    file = Path(path, "features", "c", "2", "0")
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(Exception, match=r"features/c/2/0: file is \d+ bytes, expected \d+ \(damaged"):
        ds[[3]]
