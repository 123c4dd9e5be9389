"""CacheDataset / cache_loader: items and batches, frame codecs, direct vs zarr reads, workers, plain zarr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from cache_factory import FEAT, SIZE, make_cache

from egocache.cache import CacheDataset, cache_loader
from egocache.errors import CacheError


@pytest.fixture(scope="module")
def raw_cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("raw") / "c.zarr")


@pytest.fixture(scope="module")
def jpeg_cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("jpeg") / "c.zarr", codec="jpeg")


def expected_frame(row: int, k: int) -> np.ndarray:
    """The frame test_cache_writer.shard_data wrote for (row, stored index k)."""
    ramp = np.linspace(0, 60, SIZE)[None, :, None] + np.linspace(0, 40, SIZE)[:, None, None]
    return np.broadcast_to((row * 10 + k * 3 + ramp).astype(np.uint8), (SIZE, SIZE, 3))


def test_item_holds_frames_imu_teacher_outputs_labels_and_ids(raw_cache):
    ds = CacheDataset(raw_cache, split="train", frames=2)
    # rows 0..5 are train; row 4 (first of shard 1) failed, so it is not in the dataset
    assert ds.rows.tolist() == [0, 1, 2, 3, 5] and len(ds) == 5
    item = ds[3]
    assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(item["frames"][1].numpy(), expected_frame(3, 6))
    assert item["imu"].shape == (422, 6) and item["imu"].dtype == torch.float32
    assert item["feature"].shape == (FEAT,) and float(item["feature"][0]) == 3.0
    assert item["logits"]["noun"].shape == (5,) and float(item["logits"]["verb"][0]) == 1.5
    assert int(item["label"]["verb"]) == 0 and int(item["label"]["noun"]) == 2
    assert int(item["row"]) == 3 and ds.segment_ids[int(item["segment"])] == "tr3"
    assert "first_last" not in item
    assert ds.info.heads["verb"] == ["take", "put", "open"]


def test_batch_index_gives_leading_axis_and_first_last(raw_cache):
    ds = CacheDataset(raw_cache, split="validation", frames=4, first_last=True)
    assert ds.rows.tolist() == [6, 7, 8, 9] and ds.segment_ids == ["va0", "va1"]
    b = ds[[3, 0, 2]]
    assert b["frames"].shape == (3, 4, SIZE, SIZE, 3) and b["first_last"].shape == (3, 2, SIZE, SIZE, 3)
    assert b["row"].tolist() == [9, 6, 8] and b["segment"].tolist() == [1, 0, 1]
    np.testing.assert_array_equal(b["frames"][0, 3].numpy(), expected_frame(9, 7))
    np.testing.assert_array_equal(b["first_last"][1, 1].numpy(), expected_frame(6, 8))
    assert b["label"]["verb"].tolist() == [0, 0, 2] and b["imu"].shape == (3, 422, 6)
    with pytest.raises(IndexError):
        ds[[0, 4]]


def test_frames_false_skips_frames_and_bad_requests_are_refused(raw_cache):
    b = CacheDataset(raw_cache, split="train", read_frames=False)[[0, 1]]
    assert "frames" not in b and b["feature"].shape == (2, FEAT)
    with pytest.raises(CacheError, match="N=3"):
        CacheDataset(raw_cache, frames=3)
    with pytest.raises(CacheError, match="no split 'test'"):
        CacheDataset(raw_cache, split="test")


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_direct_shard_reads_equal_zarr_reads(raw_cache, jpeg_cache, codec):
    path = raw_cache if codec == "raw" else jpeg_cache
    fast = CacheDataset(path, split="validation", frames=4, first_last=True)
    slow = CacheDataset(path, split="validation", frames=4, first_last=True, direct=False)
    a, b = fast[[0, 1, 2, 3]], slow[[0, 1, 2, 3]]
    assert fast._load().frames.direct and not slow._load().frames.direct
    for key in ("frames", "first_last"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_jpeg_frames_decode_close_to_the_originals(jpeg_cache):
    b = CacheDataset(jpeg_cache, split="train", frames=4)[[0, 4]]
    want = np.stack([np.stack([expected_frame(r, k) for k in (1, 3, 5, 7)]) for r in (0, 5)])
    err = np.abs(b["frames"].numpy().astype(int) - want.astype(int)).mean()
    assert b["frames"].dtype == torch.uint8 and err < 3.0


def test_loader_with_two_workers_gives_the_same_batches(raw_cache):
    ds = CacheDataset(raw_cache, split="validation", frames=1, first_last=True)
    runs = []
    for workers in (0, 2):
        loader = cache_loader(ds, batch_size=3, shuffle=True, seed=7, num_workers=workers)
        runs.append([b for epoch in range(2) for b in loader])
    assert len(runs[0]) == len(runs[1]) == 4
    for x, y in zip(*runs):
        assert x["row"].tolist() == y["row"].tolist()
        torch.testing.assert_close(x["frames"], y["frames"], rtol=0, atol=0)
        torch.testing.assert_close(x["imu"], y["imu"])
    assert runs[0][0]["row"].tolist() != runs[0][2]["row"].tolist() or \
        runs[0][1]["row"].tolist() != runs[0][3]["row"].tolist()   # epochs reshuffle


def test_loader_drop_last_and_custom_sampler(raw_cache):
    ds = CacheDataset(raw_cache, split="train", read_frames=False)
    assert [len(b["row"]) for b in cache_loader(ds, batch_size=2, shuffle=False, seed=0, num_workers=0,
                                                 drop_last=True)] == [2, 2]
    sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    rows = [r for b in cache_loader(ds, batch_size=2, shuffle=False, seed=0, num_workers=0, sampler=sampler)
            for r in b["row"].tolist()]
    assert rows == [1, 3, 0]


PLAIN = textwrap.dedent("""
    import sys, json
    sys.modules["egocache"] = None          # egocache must not be importable here
    import zarr, dask.array as da, numpy as np, simplejpeg
    try:
        import egocache
        raise SystemExit("egocache importable")
    except ImportError:
        pass
    g = zarr.open_group(sys.argv[1], mode="r")
    a = g.attrs.asdict()
    feats = da.from_zarr(sys.argv[1], component="features").sum().compute()
    f = g["frames"][9][a["sampling"]["frames_for_n"]["1"][0]]   # one clip's row, then its N=1 frame
    if a["frames"]["codec"] == "jpeg":
        f = simplejpeg.decode_jpeg(f)
    status = g["status"][:].tolist()
    print(json.dumps({"feats": float(feats), "frame": int(np.asarray(f)[0, 0, 0]), "status": status,
                      "error": str(g["error"][4]), "shards": sorted(g["_egocache"]["shards"].group_keys()),
                      "n": a["layout"]["num_clips"]}))
""")


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_cache_opens_with_plain_zarr_and_dask_without_egocache(raw_cache, jpeg_cache, codec):
    path = raw_cache if codec == "raw" else jpeg_cache
    out = subprocess.run([sys.executable, "-c", PLAIN, path], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["n"] == 10 and got["status"][4] == 2 and got["error"].startswith("video.mp4")
    assert got["feats"] == pytest.approx(FEAT * sum(range(10)))
    assert abs(got["frame"] - int(expected_frame(9, 4)[0, 0, 0])) <= 3
    assert got["shards"] == ["0", "1", "2"]


def test_frame_selections_read_their_stored_frames(tmp_path):
    """first/last/center read their grid frames; random draws N of the 16 per clip, fixed by seed and row."""
    from cache_factory import make_test_cache
    from egocache.cache.selections import draw_frames

    path = make_test_cache(tmp_path, n_train=12, n_val_segments=2, frame_counts=(1, 4),
                           selections=("first", "last", "center", "random"))
    sets = CacheDataset(path).info.sampling["frame_sets"]
    for sel in ("uniform", "first", "last", "center"):
        got = CacheDataset(path, frames=4, selection=sel)[[0, 3]]["frames"][:, :, 0, 0, 0]
        assert got.tolist() == [sets[sel]["4"]] * 2
    ds = CacheDataset(path, frames=4, selection="random", selection_seed=7)
    got = ds[list(range(12))]["frames"][:, :, 0, 0, 0].numpy()
    pool = np.array(sets["random"]["4"])
    assert (got == pool[draw_frames(ds.rows, 16, 4, 7)]).all() and len({tuple(r) for r in got}) > 6
    assert (CacheDataset(path, frames=4, selection="random", selection_seed=7)[[5]]["frames"][0, :, 0, 0, 0].numpy()
            == got[5]).all()
    whole = CacheDataset(path, frames=4, selection="random", whole_pool=True)[[0]]["frames"]
    assert whole.shape[1] == 16 and whole[0, :, 0, 0, 0].tolist() == pool.tolist()
    with pytest.raises(CacheError, match="N=2 with frame selection 'first'.*first N in \\[1, 4\\]"):
        CacheDataset(path, frames=2, selection="first")
    old = make_test_cache(tmp_path, name="old.zarr", n_train=4, n_val_segments=1)
    with pytest.raises(CacheError, match="frame selection 'last'; the cache has uniform N in \\[1, 2\\]"):
        CacheDataset(old, frames=1, selection="last")


def test_a_shard_file_truncated_in_place_while_open_is_one_line_not_sigbus(tmp_path):
    from egocache.errors import CacheError

    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    ds = CacheDataset(path, split="train", frames=1)
    ds[[0, 1, 2]]                                        # maps the files of shard 0
    frames = os.path.join(path, "frames", "c", "0", "0", "0", "0", "0")
    with open(frames, "r+b") as fh:                     # in place, not by rename: the mapping sees it
        fh.truncate(100)
    with pytest.raises(CacheError, match=r"frames/c/0/0/0/0/0: file shrank from \d+ to 100 bytes"):
        ds[[0, 1, 2]]


def test_open_files_stay_within_the_limit_and_reads_stay_right(tmp_path):
    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    want = CacheDataset(path, split="validation", frames=1)[[0, 1, 2, 3]]
    ds = CacheDataset(path, split="validation", frames=1)
    files = ds._load().files
    files.max_open = 3                          # fewer than the files one batch touches
    got = ds[[0, 1, 2, 3]]
    assert len(files._open) <= 3 and len(files._maps) <= 3
    for key in ("frames", "imu", "feature"):
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())


def test_frame_entries_off_the_grid_or_missing_are_read_or_named_per_entry(tmp_path):
    """The raw reader gathers frames by each shard's chunk grid, parsed once per mapping: an entry that is
    valid but not on the back-to-back grid is read where it points, a missing one is one line, and a shard
    file mapped anew is parsed again."""
    from egocache.cache.frames import _MISSING
    from egocache.errors import CacheError

    path = make_cache(tmp_path / "c.zarr", fail_shard=None)
    ds = CacheDataset(path, split="train", frames=1)
    reader = ds._load().frames
    first = ds[[0, 1]]["frames"].numpy()                      # shard 0 mapped, its grid parsed
    r, k = reader.spec.chunk_rows, reader.spec.shape[1]
    name = os.path.join(path, "frames", "c", "0", "0", "0", "0", "0")
    data = bytearray(open(name, "rb").read())
    at = len(data) - (r * k * 16 + 4)
    entries = np.frombuffer(bytes(data[at:at + r * k * 16]), "<u8").reshape(r, k, 2).copy()
    row, pos = int(ds.rows[0]) % r, ds._stored[0]
    frame_bytes = SIZE * SIZE * 3
    off = int(entries[row, pos, 0]) + frame_bytes // 2         # in the data, between two chunks
    entries[row, pos] = (off, frame_bytes)

    def replace(table: np.ndarray) -> None:
        data[at:at + r * k * 16] = table.tobytes()
        with open(name + ".new", "wb") as fh:
            fh.write(bytes(data))
        os.replace(name + ".new", name)                      # a new file: a new mapping

    replace(entries)
    reader.files.close()                                     # the next read opens and maps the new file
    got = ds[[0, 1]]["frames"].numpy()
    want = np.frombuffer(bytes(data[off:off + frame_bytes]), np.uint8).reshape(SIZE, SIZE, 3)
    np.testing.assert_array_equal(got[0, 0], want)
    np.testing.assert_array_equal(got[1], first[1])
    entries[row, pos] = (_MISSING, _MISSING)
    replace(entries)
    reader.files.close()
    with pytest.raises(CacheError, match=rf"no frame stored for row {int(ds.rows[0])} position {pos}"):
        ds[[0, 1]]
    assert len(reader._grids) <= reader.files.max_open
