"""Extraction pass: planning, in-process vs two-worker dask equality, resume, lock, bad inputs, --strict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from egocache.cache import CacheDataset, extraction_lock
from egocache.errors import CacheError, CacheLockedError, ClipError, EgocacheError, ManifestError
from egocache.pipeline.extract import clip_table, extract, open_runner, read_summary
from egocache.pipeline.extract_worker import ShardJob, TeacherKey, _work_units
from egocache.pipeline.imu import imu_window, read_imu
from egocache.pipeline.datasets import load_manifest
from egocache.synth import MOTION_PAIRS
from extract_data import (CLIP_FAILURES, NO_IMU_VIDEOS, NUM_CLIPS, annotations, make_bad_dataset, make_dataset, options,
                          read_arrays)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The tiny synthetic dataset (2 videos, 7 clips), made once for the module."""
    return make_dataset(tmp_path_factory.mktemp("extract") / "ds")


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """An uninterrupted in-process extraction: (cache path, summary)."""
    cache = tmp_path_factory.mktemp("ref") / "ref.zarr"
    return cache, extract(options(dataset, cache))


def test_clip_table_matches_manifest(dataset):
    manifest = load_manifest("epic100", list(annotations(dataset)), dataset.root)
    table = clip_table(manifest.clips, ["verb", "noun"], 2.0)
    assert list(table["clip_id"]) == [c.clip_id for c in manifest.clips]
    assert np.allclose(table["end_s"] - table["start_s"], 2.0)
    assert list(table["label_verb"]) == [c.labels["verb"] for c in manifest.clips]
    assert sorted(set(table["split"])) == ["train", "validation"]


def test_extract_writes_every_clip_and_what_students_need(dataset, reference):
    cache, summary = reference
    assert (summary.clips, summary.clips_ok, summary.clips_failed) == (NUM_CLIPS, NUM_CLIPS, 0)
    assert summary.shards_run == NUM_CLIPS and summary.failures == [] and summary.manifest_problems == []
    assert 0 < summary.frames_spanned_per_clip <= summary.frames_decoded_per_clip
    assert summary.clips_per_s > 0 and set(summary.stage_seconds) == {"decode", "imu", "audio", "teacher", "write"}
    assert read_summary(str(cache)) == json.loads(json.dumps(summary.to_dict()))

    arrays = read_arrays(cache)
    assert (arrays["status"] == 1).all() and (arrays["error"] == "").all()
    assert arrays["frames"].shape == (NUM_CLIPS, 9, 32, 32, 3) and arrays["frames"].std() > 5
    assert arrays["features"].shape == (NUM_CLIPS, 96)
    assert (np.abs(arrays["features"]).sum(axis=1) > 0).all()

    manifest = load_manifest("epic100", list(annotations(dataset)), dataset.root)
    clip = manifest.clips[0]
    want = imu_window(read_imu(clip.imu_format, clip.imu_paths), clip.centre_s)
    assert np.array_equal(arrays["imu"][0], want)

    ds = CacheDataset(str(cache), split="validation", frames=4)
    info = ds.info
    assert info.heads == manifest.class_names
    assert info.teacher["name"] == "mformer-tiny" and info.teacher["checkpoint_sha256"] is None
    assert info.teacher["init_seed"] == 0 and info.feature_dim == 96
    assert info.source["manifest_sha256"] == manifest.sha256 and info.source["dataset"] == "epic100"
    pair_verbs = [v for pair in MOTION_PAIRS for v in pair if v in manifest.class_names["verb"]]
    assert info.source["motion_pair_verbs"] == pair_verbs and len(pair_verbs) == 6
    assert info.sampling["t"] == 8 and info.sampling["frame_size"] == 32
    assert info.imu["window"] == 422 and len(info.imu["channels"]) == 6
    assert len(ds) == 6 and ds[0]["frames"].shape == (4, 32, 32, 3)


def test_rerun_resumes_without_work(dataset, reference):
    cache, _ = reference
    before = read_arrays(cache)
    again = extract(options(dataset, cache))
    assert (again.shards_run, again.shards_resumed, again.clips_ok) == (0, NUM_CLIPS, NUM_CLIPS)
    after = read_arrays(cache)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_other_settings_into_same_cache_are_refused(dataset, reference):
    cache, _ = reference
    with pytest.raises(CacheError, match="differ"):
        extract(options(dataset, cache, frame_size=48))


def test_two_dask_workers_give_the_same_cache_bitwise(dataset, reference, tmp_path):
    ref, _ = reference
    summary = extract(options(dataset, tmp_path / "dask.zarr", workers=2))
    assert summary.clips_ok == NUM_CLIPS
    got, want = read_arrays(tmp_path / "dask.zarr"), read_arrays(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_two_dask_workers_write_a_cache_on_s3_equal_to_the_local_one(dataset, reference, s3_bucket):
    ref, _ = reference
    url = f"s3://{s3_bucket}/runs/c.zarr"
    summary = extract(options(dataset, url, workers=2))
    assert summary.clips_ok == NUM_CLIPS and summary.summary_file == f"{url}/_egocache/extract/zarr.json"
    got, want = read_arrays(url), read_arrays(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name]), name
    assert read_summary(url)["clips_ok"] == NUM_CLIPS
    rerun = extract(options(dataset, url, workers=2))
    assert rerun.shards_run == 0 and rerun.shards_resumed == NUM_CLIPS     # resume reads the markers there


def test_second_extraction_into_a_locked_cache_is_refused(dataset, tmp_path):
    cache = tmp_path / "locked.zarr"
    with extraction_lock(str(cache)):
        with pytest.raises(CacheLockedError, match="another extraction"):
            extract(options(dataset, cache))


def test_bad_inputs_fail_their_clips_with_reasons_and_the_run_goes_on(dataset, tmp_path):
    root, full_csv, _ = make_bad_dataset(dataset, tmp_path)
    summary = extract(options(dataset, tmp_path / "bad.zarr", annotations=(full_csv,), root=root))
    assert (summary.clips_ok, summary.clips_failed) == (1, len(CLIP_FAILURES))
    lines = {line.split("_0/0: ")[0]: line for line in summary.failures}
    assert set(lines) == set(CLIP_FAILURES)
    expected = {"P02_101": "No such file", "P02_102": "empty file", "P02_103": "cannot open video",
                "P02_104": "cannot open video", "P02_107": "needs frames .* but the video has 300"}
    for vid, pattern in expected.items():
        assert re.search(pattern, lines[vid]), lines[vid]
    problems = summary.manifest_problems
    assert len(problems) == 4
    assert any("unknown verb class 99" in p for p in problems)
    assert any("duplicate segment id" in p for p in problems)
    assert any(p.startswith("P02_105: no IMU file") and "--imu required" in p for p in problems)
    assert any(p.startswith("P02_106: unreadable IMU") and "P02_106-accl.csv" in p for p in problems)

    arrays = read_arrays(tmp_path / "bad.zarr")
    failed = arrays["status"] == 2
    assert failed.sum() == len(CLIP_FAILURES) and all(arrays["error"][failed] != "")
    assert not arrays["features"][failed].any() and not arrays["frames"][failed].any()
    assert arrays["features"][~failed].any() and arrays["imu_present"][~failed].all()


def test_imu_optional_keeps_clips_without_imu_flagged_and_none_reads_no_imu(dataset, tmp_path):
    root, full_csv, _ = make_bad_dataset(dataset, tmp_path)
    summary = extract(options(dataset, tmp_path / "opt.zarr", annotations=(full_csv,), root=root, imu="optional"))
    assert (summary.clips_ok, summary.clips_without_imu) == (1 + len(NO_IMU_VIDEOS), len(NO_IMU_VIDEOS))
    arrays = read_arrays(tmp_path / "opt.zarr")
    ok = arrays["status"] == 1
    assert arrays["imu_present"][ok].tolist().count(0) == 2 and not arrays["imu"][arrays["imu_present"] == 0].any()
    assert arrays["features"][ok].all(axis=1).all()           # teacher outputs and frames for every ok clip
    none = extract(options(dataset, tmp_path / "none.zarr", imu="none"))
    assert none.clips_ok == NUM_CLIPS and none.clips_without_imu == NUM_CLIPS
    assert CacheDataset(str(tmp_path / "none.zarr"), split="validation").info.imu["mode"] == "none"


def test_strict_stops_at_the_first_problem(dataset, tmp_path):
    root, full_csv, clips_csv = make_bad_dataset(dataset, tmp_path)
    with pytest.raises(ManifestError, match="unknown verb class 99.*--strict"):
        extract(options(dataset, tmp_path / "s1.zarr", annotations=(full_csv,), root=root, strict=True))
    with pytest.raises(ManifestError, match="P02_105: no IMU file.*--strict"):
        extract(options(dataset, tmp_path / "s2.zarr", annotations=(clips_csv,), root=root, strict=True))
    with pytest.raises(ClipError, match="P02_101_0/0: decode: .*--strict"):
        extract(options(dataset, tmp_path / "s3.zarr", annotations=(clips_csv,), root=root, strict=True,
                        imu="optional"))


def test_nothing_extracted_is_reported(dataset, tmp_path):
    root, _, clips_csv = make_bad_dataset(dataset, tmp_path)
    only_bad = Path(root) / "only_bad_train.csv"
    lines = Path(clips_csv).read_text().splitlines()
    only_bad.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    summary = extract(options(dataset, tmp_path / "none.zarr", annotations=(str(only_bad),), root=root))
    assert summary.clips_ok == 0 and summary.clips_failed == len(CLIP_FAILURES)


def test_existing_scheduler_is_used_and_gpu_runs_need_gpu_workers(dataset, reference, tmp_path):
    from dask.distributed import LocalCluster

    ref, _ = reference
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        summary = extract(options(dataset, tmp_path / "sched.zarr", scheduler=cluster.scheduler_address))
        with pytest.raises(EgocacheError, match="declares the resource GPU"):
            with open_runner(1, cluster.scheduler_address, "cuda"):
                pass
    assert summary.clips_ok == NUM_CLIPS
    got, want = read_arrays(tmp_path / "sched.zarr"), read_arrays(ref)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_work_units_keep_time_order_and_cut_only_between_segments(dataset):
    manifest = load_manifest("epic100", list(annotations(dataset)), dataset.root)
    job = ShardJob(cache="unused", shard=0, clips=tuple(manifest.clips),
                   teacher=TeacherKey("mformer-tiny", None, (), (), "cpu"), heads=(), frame_size=32,
                   positions=(0.5,), batch_size=1)
    units = _work_units(job, chunk=2)
    assert [r for _, rows in units for r in rows] == list(range(NUM_CLIPS))
    assert len(units) > 1
    for (_, a), (_, b) in zip(units, units[1:]):
        assert manifest.clips[a[-1]].segment_id != manifest.clips[b[0]].segment_id


def test_decoding_of_the_next_unit_overlaps_the_teacher(dataset, tmp_path, monkeypatch):
    import time

    import egocache.pipeline.extract_worker as worker

    events: list[tuple[str, float, float]] = []
    real_decode, real_teacher = worker._prepare_unit, worker.run_teacher_aux

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if name == "teacher":
                time.sleep(0.3)   # a slow teacher: the next unit's decode must run meanwhile
            events.append((name, t0, time.perf_counter()))
            return out
        return wrapper

    monkeypatch.setattr(worker, "_prepare_unit", timed("decode", real_decode))
    monkeypatch.setattr(worker, "run_teacher_aux", timed("teacher", real_teacher))
    monkeypatch.setattr(worker, "UNIT_BATCHES", 1)
    summary = extract(options(dataset, tmp_path / "c.zarr", shard_size=64, batch_size=1, progress=False))
    assert summary.clips_ok == NUM_CLIPS
    decodes = [e for e in events if e[0] == "decode"]
    teachers = [e for e in events if e[0] == "teacher"]
    assert len(decodes) > 1 and len(teachers) > 1
    # strictly sequential work would give disjoint intervals; decode-ahead makes them overlap
    overlapped = [d for d in decodes if any(d[1] < t[2] and t[1] < d[2] for t in teachers)]
    assert overlapped, f"no decode ran while the teacher ran: {events}"
