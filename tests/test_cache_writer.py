"""Cache writer: create at final size, shard writes with done markers, resume, lock, format version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import simplejpeg
import zarr

from egocache.cache import (
    FORMAT_VERSION, STATUS_PENDING, CacheDataset, CacheWriter, extraction_lock, open_cache,
)
from cache_factory import FEAT, HEADS, SIZE, cache_attrs, clip_table, create, make_cache, shard_data, write
from egocache.errors import CacheError, CacheFormatError, CacheLockedError

def test_create_makes_every_array_at_final_length_with_shared_shard_boundaries(tmp_path):
    w = create(tmp_path / "c.zarr")
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert w.num_shards == 3 and w.shard_slice(2) == slice(8, 10)
    assert g["frames"].shape == (10, 9, SIZE, SIZE, 3) and g["frames"].dtype == np.uint8
    assert g["imu"].shape == (10, 422, 6) and g["logits_noun"].shape == (10, 5)
    for name in ("features", "logits_verb", "logits_noun", "imu", "frames", "status", "error"):
        assert g[name].shape[0] == 10
        assert (g[name].shards or g[name].chunks)[0] == 4, name
    assert g["frames"].chunks == (1, 1, SIZE, SIZE, 3)
    assert list(g["clip_id"][:3]) == ["tr0/0", "tr1/1", "tr2/2"]
    assert g["label_noun"][:].tolist() == [-1, 0, 1, 2, 3, 4, -1, 0, 1, 2]
    assert (g["status"][:] == STATUS_PENDING).all()
    a = g.attrs.asdict()
    assert a["format_version"] == FORMAT_VERSION
    assert a["teacher"]["heads"] == HEADS and a["teacher"]["feature_dim"] == FEAT
    assert a["sampling"]["frames_for_n"] == {"1": [4], "2": [2, 6], "4": [1, 3, 5, 7]}
    assert a["sampling"]["first_last"] == [0, 8] and a["sampling"]["t"] == 16
    assert a["imu"]["window"] == 422 and a["frames"]["codec"] == "raw"
    assert w.done_shards() == set()


def test_write_shard_commits_marker_with_checksums_and_records_failures(tmp_path):
    w = create(tmp_path / "c.zarr")
    write(w, 1, fail_first=True)
    assert w.done_shards() == {1}
    marker = json.load(open(tmp_path / "c.zarr" / "_egocache" / "shards" / "1" / "zarr.json"))["attributes"]
    assert marker["rows"] == [4, 8] and marker["ok"] == 3 and marker["failed"] == 1
    assert set(marker["checksums"]) == {"features", "logits_verb", "logits_noun", "imu", "frames",
                                        "status", "error"}
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert g["status"][:].tolist() == [0] * 4 + [2, 1, 1, 1] + [0, 0]
    assert g["error"][4] == "video.mp4: frames 900-963 outside 0-899"
    assert g["features"][5, 0] == 5.0
    assert not [f for f in os.listdir(tmp_path / "c.zarr" / "_egocache" / "shards" / "1") if "tmp" in f]


def test_resume_sees_only_committed_shards_and_gives_same_cache(tmp_path):
    w = create(tmp_path / "a.zarr")
    write(w, 0)
    write(w, 2)
    # a crash while writing shard 1: data partly written, no marker
    g = zarr.open_group(str(tmp_path / "a.zarr"), mode="r+")
    g["features"][4:8] = np.ones((4, FEAT), np.float32)
    again = create(tmp_path / "a.zarr")
    assert again.done_shards() == {0, 2}
    for i in sorted(set(range(again.num_shards)) - again.done_shards()):
        write(CacheWriter.open(str(tmp_path / "a.zarr")), i)
    make_cache(tmp_path / "b.zarr", fail_shard=None)
    a, b = (zarr.open_group(str(tmp_path / p), mode="r") for p in ("a.zarr", "b.zarr"))
    for name in ("features", "imu", "frames", "status", "logits_verb"):
        np.testing.assert_array_equal(a[name][:], b[name][:])


def test_create_over_existing_same_table_reopens_different_is_refused(tmp_path):
    make_cache(tmp_path / "c.zarr")
    assert create(tmp_path / "c.zarr").done_shards() == {0, 1, 2}
    other = clip_table()
    other["label_verb"] = (np.arange(10) + 1) % 3
    with pytest.raises(CacheError, match="different clip table"):
        create(tmp_path / "c.zarr", clips=other)
    with pytest.raises(CacheError, match="different attributes"):
        create(tmp_path / "c.zarr", frame_codec="jpeg")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(CacheError, match="not a cache"):
        create(tmp_path / "junk")


@pytest.mark.parametrize("bad, match", [
    (lambda d: d.update(frames=d["frames"].astype(np.int16)), "uint8"),
    (lambda d: d.update(imu=d["imu"][:, :100]), "imu has shape"),
    (lambda d: d["logits"].pop("noun"), "heads"),
    (lambda d: d.update(errors=["oops"] + d["errors"][1:]), "reason"),
    (lambda d: d.update(status=np.zeros(4, np.int8)), "status must be"),
])
def test_write_shard_refuses_bad_input(tmp_path, bad, match):
    w = create(tmp_path / "c.zarr")
    d = shard_data(w, 0)
    bad(d)
    with pytest.raises(CacheError, match=match):
        w.write_shard(0, d["features"], d["logits"], d["imu"], d["frames"], d["status"], d["errors"])
    assert w.done_shards() == set()


def test_create_refuses_missing_attrs_and_bad_table(tmp_path):
    attrs = cache_attrs()
    del attrs["imu"]["rate_hz"], attrs["sampling"]["t"]
    with pytest.raises(CacheError, match=r"imu.rate_hz.*sampling.t"):
        create(tmp_path / "a.zarr", attrs=attrs)
    dup = clip_table()
    dup["clip_id"][1] = dup["clip_id"][0]
    with pytest.raises(CacheError, match="duplicate clip_id"):
        create(tmp_path / "b.zarr", clips=dup)
    conflict = cache_attrs()
    conflict["teacher"]["feature_dim"] = 99
    with pytest.raises(CacheError, match="teacher.feature_dim"):
        create(tmp_path / "c.zarr", attrs=conflict)


def test_sampling_aliases_are_stored_as_t_and_stride(tmp_path):
    attrs = cache_attrs()
    attrs["sampling"] = {"clip_seconds": 2.1333, "teacher_frames": 8, "teacher_stride_at_30fps": 8}
    w = create(tmp_path / "c.zarr", attrs=attrs)
    assert (w.attrs["sampling"]["t"], w.attrs["sampling"]["stride"]) == (8, 8)


def test_incompatible_format_version_raises_cache_format_error(tmp_path):
    path = make_cache(tmp_path / "c.zarr")
    meta_file = os.path.join(path, "zarr.json")
    meta = json.load(open(meta_file))
    meta["attributes"]["format_version"] = FORMAT_VERSION + 1
    json.dump(meta, open(meta_file, "w"))
    with pytest.raises(CacheFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        open_cache(path)
    with pytest.raises(CacheFormatError):
        CacheWriter.open(path)


def test_extraction_lock_refuses_second_holder(tmp_path):
    path = str(tmp_path / "c.zarr")
    with extraction_lock(path):
        with pytest.raises(CacheLockedError, match="another extraction"):
            with extraction_lock(path):
                pass
    with extraction_lock(path):  # released after the first holder left
        pass


def test_extraction_lock_of_a_killed_process_is_released(tmp_path):
    path = str(tmp_path / "c.zarr")
    code = textwrap.dedent(f"""
        import sys, time
        from egocache.cache import extraction_lock
        with extraction_lock({path!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CacheLockedError):
            with extraction_lock(path):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with extraction_lock(path):
        pass


@pytest.mark.parametrize("codec", ["raw", "jpeg"])
def test_frames_shards_hold_each_clips_frames_back_to_back_and_zarr_reads_them(tmp_path, codec):
    """The writer encodes frames shards itself (zarr would scatter a clip's frames in Morton order): the
    index lists every inner chunk in (clip, position) order, back to back, ends with its crc32c, marks the
    rows past the array's end missing, and zarr decodes the same frames as those written."""
    import google_crc32c

    from egocache.cache.frames import _MISSING

    path = make_cache(tmp_path / "c.zarr", codec=codec)     # 10 clips in shards of 4: the last holds 2
    g = zarr.open_group(str(path), mode="r")
    r, k = 4, g["frames"].shape[1]
    for i, m in ((0, 4), (2, 2)):
        data = open(os.path.join(path, "frames", "c", str(i), *(["0"] * (g["frames"].ndim - 1))), "rb").read()
        index, crc = data[-(r * k * 16 + 4):-4], data[-4:]
        assert int.from_bytes(crc, "little") == google_crc32c.value(index)
        entries = np.frombuffer(index, "<u8").reshape(r * k, 2)
        off, nb = entries[:m * k, 0].astype(np.int64), entries[:m * k, 1].astype(np.int64)
        assert off[0] == 0 and (off[1:] == off[:-1] + nb[:-1]).all()          # back to back, clip by clip
        assert off[-1] + nb[-1] == len(data) - len(index) - 4
        assert (entries[m * k:] == _MISSING).all()
    w = CacheWriter.open(path)
    written = np.concatenate([shard_data(w, i)["frames"] for i in range(w.num_shards)])
    stored = g["frames"][:]
    if codec == "raw":
        np.testing.assert_array_equal(stored, written)
    else:
        decoded = np.stack([simplejpeg.decode_jpeg(bytes(b), colorspace="RGB") for b in stored.reshape(-1)])
        assert np.abs(decoded.astype(int) - written.reshape(decoded.shape).astype(int)).mean() < 3.0
        ds = CacheDataset(path, split="train", frames=4)
        np.testing.assert_array_equal(ds[list(range(len(ds)))]["frames"].numpy(),
                                      decoded.reshape(written.shape)[ds.rows][:, ds._stored])
