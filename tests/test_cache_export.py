"""export_hdf5 and `egocache export --hdf5`: same arrays (JPEG frames decoded) and attributes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from cache_factory import make_cache

from egocache.cache import FORMAT_VERSION, CacheDataset, export_hdf5
from egocache.cli import main


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_hdf5_round_trip_keeps_arrays_and_attributes(tmp_path, codec):
    path = make_cache(tmp_path / "c.zarr", codec=codec)
    out = export_hdf5(path, str(tmp_path / "c.h5"))
    g = zarr.open_group(path, mode="r")
    attrs = g.attrs.asdict()
    with h5py.File(out, "r") as h5:
        assert {k: json.loads(v) for k, v in h5.attrs.items()} == attrs
        for name in ("features", "logits_verb", "logits_noun", "imu", "status", "start_s", "label_noun"):
            np.testing.assert_array_equal(h5[name][:], g[name][:])
        for name in ("clip_id", "split", "error"):
            assert h5[name].asstr()[:].tolist() == np.asarray(g[name][:]).tolist()
        frames = h5["frames"][:]
    assert frames.dtype == np.uint8 and frames.shape == (10, 9, 16, 16, 3)
    ds = CacheDataset(path, split="validation", frames=4)
    b = ds[list(range(len(ds)))]
    want = frames[ds.rows][:, attrs["sampling"]["frames_for_n"]["4"]]
    np.testing.assert_array_equal(b["frames"].numpy(), want)   # same decoder, bit-identical
    assert not list(tmp_path.glob("*.tmp"))


def test_export_cli(tmp_path):
    path = make_cache(tmp_path / "c.zarr")
    result = CliRunner().invoke(main, ["export", path, "--hdf5", str(tmp_path / "o.h5")])
    assert result.exit_code == 0, result.output
    with h5py.File(tmp_path / "o.h5", "r") as h5:
        assert h5["frames"].shape == (10, 9, 16, 16, 3) and json.loads(h5.attrs["format_version"]) == FORMAT_VERSION
    bad = CliRunner().invoke(main, ["export", str(tmp_path), "--hdf5", str(tmp_path / "x.h5")])
    assert bad.exit_code == 1 and "zarr.json" in bad.output
