"""Per-video teacher outputs (cache/videos.py): objects-tiny's video_object_score, the mean object_score of
each video's clips, written by extraction, checked by verify, listed by info, read per clip by the
reader and distilled by train-student --aux."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from egocache.cache import CacheDataset, verify_cache
from egocache.cache import videos
from egocache.cache.store import open_store
from egocache.cli import main
from egocache.pipeline.teachers import teacher_spec
from egocache.pipeline.teachers.base import TeacherSpec
from extract_data import NUM_CLIPS, cli_args, make_dataset, read_arrays

GROUP = os.path.join("teachers", "objects-tiny")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache of mformer-tiny with objects-tiny added (it declares video_object_score)."""
    tmp = tmp_path_factory.mktemp("videos")
    ds = make_dataset(tmp / "ds")
    path = tmp / "c.zarr"
    first = CliRunner().invoke(main, cli_args(ds, path))
    assert first.exit_code == 0, first.output
    added = CliRunner().invoke(main, [*cli_args(ds, path), "--teacher", "objects-tiny"])
    assert added.exit_code == 0, added.output
    return ds, path, added.output


def expected(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted video ids, ok clips per video, mean object_score per video) recomputed here."""
    root, group = read_arrays(path), read_arrays(path / GROUP)
    ids = np.unique(root["video_id"])
    ok = group["status"] == 1
    means = np.stack([group["aux_object_score"][(root["video_id"] == v) & ok].astype(np.float64).mean(0) for v in ids])
    counts = np.array([((root["video_id"] == v) & ok).sum() for v in ids])
    return ids, counts, means.astype(np.float32)


def test_the_spec_declares_it_and_refuses_undeclared_sources():
    spec = teacher_spec("objects-tiny", heads={"noun": 12})
    assert spec.aux_video == {"video_object_score": "object_score"}
    assert json.loads(json.dumps(spec.to_dict()))["aux_video"] == spec.aux_video
    with pytest.raises(ValueError, match="must average its aux outputs"):
        TeacherSpec(name="t", tag="", num_frames=1, frame_stride=1, img_size=8, mean=(0, 0, 0), std=(1, 1, 1),
                    bgr=False, feature_dim=2, heads={"noun": 3}, aux={"a": 3}, aux_video={"v": "b"})
    with pytest.raises(ValueError, match="input 'depth'"):
        TeacherSpec(name="t", tag="", num_frames=1, frame_stride=1, img_size=8, mean=(0, 0, 0), std=(1, 1, 1),
                    bgr=False, feature_dim=2, heads={"noun": 3}, input="depth")


def test_extraction_writes_the_mean_of_each_video_and_info_lists_it(cache):
    _, path, output = cache
    assert "per-video outputs video_object_score: 2 videos" in output
    ids, counts, means = expected(path)
    stored = read_arrays(path / GROUP / "videos")
    assert stored["video_id"].tolist() == ids.tolist() and stored["clips"].tolist() == counts.tolist()
    assert counts.sum() == NUM_CLIPS
    np.testing.assert_allclose(stored["video_object_score"], means, rtol=0, atol=1e-7)
    np.testing.assert_allclose(stored["video_object_score"].sum(1), 1.0, rtol=1e-5)     # still distributions
    assert verify_cache(str(path)).ok
    listed = CliRunner().invoke(main, ["info", str(path)]).output
    assert "aux object_score (12); per video video_object_score (12)" in listed


def test_the_reader_gives_every_clip_its_videos_row(cache):
    _, path, _ = cache
    ids, _, means = expected(path)
    for split in ("train", "validation"):
        ds = CacheDataset(str(path), split=split, read_frames=False, teachers=["objects-tiny"])
        batch = ds[list(range(len(ds)))]
        got = batch["teachers"]["objects-tiny"]["aux"]
        videos_of = read_arrays(path)["video_id"][ds.rows]
        want = means[np.searchsorted(ids, videos_of)]
        np.testing.assert_allclose(got["video_object_score"].numpy(), want, rtol=0, atol=1e-7)
        assert got["object_score"].shape == want.shape                      # the per-clip output beside it
        one = ds[0]["teachers"]["objects-tiny"]["aux"]["video_object_score"]
        assert one.shape == (want.shape[1],)


def test_verify_recomputes_them_and_a_rerun_writes_them_again(cache, tmp_path):
    ds, path, _ = cache
    broken = tmp_path / "b.zarr"
    shutil.copytree(path, broken)
    store = open_store(str(broken / GROUP))
    from egocache.cache.info import zarr_group

    import zarr

    arr = zarr.open_group(store.child("videos").zarr_store(read_only=False), mode="r+")["video_object_score"]
    arr[0, 0] = arr[0, 0] + 0.25
    report = verify_cache(str(broken))
    assert not report.ok and any("teacher objects-tiny: videos/video_object_score: differs from the mean" in p
                                 for p in report.problems)
    os.remove(broken / GROUP / "videos" / "zarr.json")
    report = verify_cache(str(broken))
    assert any("per-video outputs video_object_score are not written" in p for p in report.problems)
    with pytest.raises(Exception, match="not written.*run the same extract command again"):
        videos.read(store, json.loads((broken / GROUP / "zarr.json").read_text())["attributes"])
    again = CliRunner().invoke(main, [*cli_args(ds, broken), "--teacher", "objects-tiny"])
    assert again.exit_code == 0, again.output
    assert "per-video outputs video_object_score: 2 videos" in again.output and verify_cache(str(broken)).ok
    assert zarr_group(store.child("videos"))()["clips"][:].sum() == NUM_CLIPS


def test_train_student_distils_the_per_video_target(cache, tmp_path):
    _, path, _ = cache
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train-student", "--cache", str(path), "--out", str(out), "--variant",
                                    "visonly-distill", "--frames", "1", "--epochs", "1", "--batch-size", "1",
                                    "--freeze-image-encoder", "--num-workers", "0", "--no-progress",
                                    "--aux", "objects-tiny/video_object_score:0.5"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert "aux_video_object_score" in json.dumps(metrics)
    bad = CliRunner().invoke(main, ["train-student", "--cache", str(path), "--out", str(tmp_path / "x"),
                                    "--variant", "visonly-distill", "--aux", "video_score:0.5", "--no-progress"])
    assert bad.exit_code != 0 and "objects-tiny/video_object_score" in bad.output


def test_they_are_written_verified_and_read_on_s3_as_in_a_folder(cache, s3_bucket):
    from egocache.pipeline.extract import write_video_outputs

    _, path, _ = cache
    url = f"s3://{s3_bucket}/videos.zarr"
    src, dst = open_store(str(path)), open_store(url)
    for key, _ in src.walk():
        if not key.startswith(f"{GROUP}/videos/"):               # the per-video outputs are written there
            dst.write(key, src.read(key))
    assert any("per-video outputs video_object_score are not written" in p for p in verify_cache(url).problems)
    lines: list[str] = []
    status = read_arrays(path / GROUP)["status"]
    write_video_outputs(url, status, group="objects-tiny", log=lines.append)
    assert lines and "2 videos" in lines[0] and verify_cache(url).ok
    here = CacheDataset(str(path), split="validation", read_frames=False, teachers=["objects-tiny"])
    there = CacheDataset(url, split="validation", read_frames=False, teachers=["objects-tiny"])
    a, b = (d[list(range(len(d)))]["teachers"]["objects-tiny"]["aux"]["video_object_score"] for d in (here, there))
    assert np.array_equal(a.numpy(), b.numpy())
    write_video_outputs(url, np.zeros_like(status), group="objects-tiny", log=lines.append)   # pending: waits
    assert "written once every clip is extracted (7 pending)" in lines[-1]
