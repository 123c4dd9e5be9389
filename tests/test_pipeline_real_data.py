"""Real EPIC-KITCHENS-100 and Ego4D as they are on disk, on small fixtures that reproduce each fact:
EK-55 videos without IMU in both splits, the paper's protocols, split files, RGB-frame folders at 50 and
60 fps, every EPIC frame rate and shape, gpmd2csv IMU that ends early, Ego4D without splits, with null
critical frames, has_imu metadata and backwards timestamps. The CLI runs end to end on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from egocache.cache import CacheDataset
from egocache.cli import main
from egocache.errors import EgocacheError, ManifestError
from egocache.pipeline.datasets.epic100 import RGB_FPS, video_files
from egocache.pipeline.datasets.common import AdapterOptions
from egocache.pipeline.extract import extract
from egocache.pipeline.frames import FramePlan
from egocache.pipeline.options import ExtractOptions
from egocache.synth import EPIC_COLUMNS, synthesize
from files import write_csv
from media import write_epic_imu, write_video

TINY = dict(teacher="mformer-tiny", frame_size=32, frames=(1,), shard_size=4, batch_size=4, device="cpu",
            progress=False)


def epic_row(nid: str, vid: str, start: float, stop: float, verb: int) -> dict[str, object]:
    """One EPIC_100 row (official columns) for segment `nid` of `vid`, seconds given as numbers."""
    def ts(x: float) -> str:
        return f"00:{int(x) // 60:02d}:{x % 60:05.2f}"

    return {"narration_id": nid, "participant_id": vid.split("_")[0], "video_id": vid,
            "narration_timestamp": ts(start), "start_timestamp": ts(start), "stop_timestamp": ts(stop),
            "start_frame": 0, "stop_frame": 0, "narration": "x", "verb": f"v{verb}", "verb_class": verb,
            "noun": "n", "noun_class": 0, "all_nouns": "['n']", "all_noun_classes": "[0]"}


def epic_dataset(root: Path, videos: dict[str, dict], *, seconds: float = 12.0) -> tuple[str, str]:
    """EPIC files for `videos` {id: {split, imu, audio, fps}}: videos, gpmd2csv IMU where asked, CSVs."""
    rows: dict[str, list] = {"train": [], "validation": []}
    for vid, spec in videos.items():
        p = vid.split("_")[0]
        write_video(root / p / "videos" / f"{vid}.MP4", seconds=seconds, fps=spec.get("fps", 50.0),
                    audio=spec.get("audio", True))
        if spec.get("imu", True):
            write_epic_imu(root / p / "meta_data", vid, seconds, dropped_payloads=spec.get("dropped", 2))
        rows[spec["split"]] += [epic_row(f"{vid}_{k}", vid, 1.5 + 3.0 * k, 3.8 + 3.0 * k, k % 3) for k in range(3)]
    return (write_csv(root / "EPIC_100_train.csv", EPIC_COLUMNS, rows["train"]),
            write_csv(root / "EPIC_100_validation.csv", EPIC_COLUMNS, rows["validation"]))


@pytest.fixture(scope="module")
def epic(tmp_path_factory):
    """EK-55 videos (PXX_YY, no meta_data) in both splits beside extension videos (PXX_1YY) with IMU."""
    root = tmp_path_factory.mktemp("epic") / "EPIC-KITCHENS"
    csvs = epic_dataset(root, {
        "P01_01": {"split": "train", "imu": False, "fps": 59.94},
        "P01_101": {"split": "train"},
        "P30_01": {"split": "validation", "imu": False, "fps": 59.94},
        "P30_101": {"split": "validation"},
        "P35_102": {"split": "train", "audio": False},
        "P37_103": {"split": "train"},
    })
    return root, csvs


def test_imu_required_leaves_out_ek55_videos_with_one_line_each_and_preflight_counts(epic):
    root, csvs = epic
    opts = ExtractOptions(dataset="epic100", annotations=csvs, root=str(root), cache="unused", **TINY)
    manifest = opts.load_manifest()
    assert {c.video_id for c in manifest.clips} == {"P01_101", "P30_101", "P35_102", "P37_103"}
    lines = [p for p in manifest.problems if "--imu required" in p]
    assert sorted(p.split(":")[0] for p in lines) == ["P01_01", "P30_01"]
    assert all("P01_01-accl.csv" in p or "P30_01-accl.csv" in p for p in lines)
    pf = manifest.preflight
    assert (pf.videos, pf.videos_found, pf.videos_with_imu, len(pf.videos_without_imu)) == (6, 6, 4, 2)
    assert pf.videos_without_audio == ["P35_102"]
    assert pf.splits["train"].videos == 3 and pf.splits["validation"].segments == 3
    assert "6 videos named, 6 found, 0 missing; 4 with IMU, 2 without" in pf.summary()


def test_imu_optional_keeps_their_clips_flagged_and_imu_students_skip_them(epic, tmp_path):
    from egocache.student.config import TrainConfig, check_cache

    root, csvs = epic
    cache = tmp_path / "opt.zarr"
    summary = extract(ExtractOptions(dataset="epic100", annotations=csvs, root=str(root), cache=str(cache),
                                     imu="optional", **TINY))
    assert summary.clips_failed == 0 and summary.clips_without_imu == 3 + 3 * 3   # P01_01: 3 x 1, P30_01: 3 x 3
    group = zarr.open_group(str(cache), mode="r")
    present = np.asarray(group["imu_present"][:])
    assert not np.asarray(group["imu"][:])[present == 0].any()       # no made-up IMU values
    assert group.attrs["imu"]["mode"] == "optional"
    assert CacheDataset(str(cache), split="train", require_imu=True).skipped_without_imu == 3
    facts, _ = check_cache(TrainConfig(cache=str(cache), out=str(tmp_path / "r"), variant="egodistill",
                                       stage="distill"))
    vis, _ = check_cache(TrainConfig(cache=str(cache), out=str(tmp_path / "v"), variant="visonly"))
    assert facts.skipped_without_imu == {"train": 3, "validation": 9} and facts.train_clips == 9
    assert vis.skipped_without_imu == {"train": 0, "validation": 0} and vis.train_clips == 12


def test_dry_run_checks_sources_prints_per_split_counts_and_decodes_nothing(epic, tmp_path, monkeypatch):
    from egocache.pipeline import decode

    root, csvs = epic

    def no_decoding(*args, **kwargs):
        raise AssertionError("the preflight decoded a frame")

    monkeypatch.setattr(decode, "decode_clips", no_decoding)
    args = ["extract", "--teacher", "mformer-tiny", "--dataset", "epic100", "--annotations", csvs[0],
            "--annotations", csvs[1], "--root", str(root), "--cache", str(tmp_path / "c.zarr"), "--dry-run"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "preflight (epic100): 6 videos named" in result.output and "validation" in result.output
    assert "P01_01: no IMU file" in result.output and not (tmp_path / "c.zarr").exists()
    as_json = CliRunner().invoke(main, [*args, "--json"])
    report = json.loads(as_json.stdout)
    assert report["splits"]["train"]["classes"] == {"v0": 3, "v1": 3, "v2": 3}
    assert report["videos_with_imu"] == 4


def test_epic_protocol_keeps_imu_and_audio_videos_and_splits_by_wearer(epic, tmp_path):
    root, csvs = epic
    cache = tmp_path / "protocol.zarr"
    result = CliRunner().invoke(main, ["extract", "--teacher", "mformer-tiny", "--dataset", "epic100",
                                       "--annotations", csvs[0], "--annotations", csvs[1], "--root", str(root),
                                       "--cache", str(cache), "--protocol", "egodistill", "--frame-size", "32",
                                       "--frames", "1", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "P35_102: " in result.output and "no audio track" in result.output
    ds_val = CacheDataset(str(cache), split="validation", read_frames=False)
    group = zarr.open_group(str(cache), mode="r")
    videos = np.asarray(group["video_id"][:]).tolist()
    splits = dict(zip(videos, np.asarray(group["split"][:]).tolist()))
    # P30 and P37 are evaluation wearers wherever their rows came from; P01 trains; P35 has no audio
    assert splits == {"P01_101": "train", "P30_101": "validation", "P37_103": "validation"}
    assert list(ds_val.info.heads) == ["verb"]                         # verb labels only
    assert ds_val.info.source["protocol"] == "egodistill"
    assert ds_val.info.imu["units"]["accl_x"] == "m/s^2" and ds_val.info.imu["units"]["gyro_z"] == "rad/s"


def test_a_teacher_checkpoint_with_more_heads_serves_a_verb_only_protocol(epic, tmp_path):
    from egocache.pipeline.teachers import create_teacher, save_teacher_checkpoint

    root, csvs = epic
    ckpt = save_teacher_checkpoint(create_teacher("mformer-tiny", heads={"verb": 3, "noun": 1}), tmp_path / "t.pyth",
                                   cfg={})
    base = dict(dataset="epic100", annotations=csvs, root=str(root), protocol="egodistill", **TINY)
    extract(ExtractOptions(cache=str(tmp_path / "c.zarr"), checkpoint=str(ckpt), **base))
    group = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    assert "logits_verb" in group and "logits_noun" not in group and group["logits_verb"].shape[1] == 3
    other = save_teacher_checkpoint(create_teacher("mformer-tiny", heads={"verb": 5}), tmp_path / "o.pyth", cfg={})
    with pytest.raises(EgocacheError, match=r"o.pyth: the teacher's heads verb:5 do not give the dataset's verb "
                                            r"\(3 classes\)"):
        extract(ExtractOptions(cache=str(tmp_path / "d.zarr"), checkpoint=str(other), **base))


def test_split_file_assigns_splits_and_leaves_out_what_it_does_not_list(epic, tmp_path):
    root, csvs = epic
    split_file = write_csv(tmp_path / "splits.csv", ["video_id", "split"],
                           [["P01_101", "validation"], ["P37_103", "train"]])
    m = ExtractOptions(dataset="epic100", annotations=csvs, root=str(root), cache="unused",
                       split_file=split_file, **TINY).load_manifest()
    assert {(c.video_id, c.split) for c in m.clips} == {("P01_101", "validation"), ("P37_103", "train")}
    assert any("segment(s) whose segment and video ids it does not list are left out" in p for p in m.problems)


# --- Ego4D --------------------------------------------------------------------------------------------
def fho_action(uid: str, verb: str, pre: float | None, post: float | None) -> dict:
    """One narrated action of fho_main.json (critical frames are canonical 30-fps frame numbers)."""
    frames = None if pre is None else {"pre_frame": pre, "pnr_frame": (pre + post) / 2, "post_frame": post}
    return {"uid": uid, "start_sec": 0.0, "end_sec": 8.0, "structured_verb": verb, "critical_frames": frames,
            "is_valid_action": True, "is_rejected": False, "is_invalid_annotation": False}


@pytest.fixture(scope="module")
def ego4d(tmp_path_factory):
    """fho_main.json (no split field) over three videos, ego4d.json saying which have IMU."""
    root = tmp_path_factory.mktemp("ego4d") / "v2"
    actions = {"uid-a": [fho_action(f"a{k}", ["cut", "take", "put"][k % 3], 30 + 50 * k, 75 + 50 * k)
                         for k in range(6)] + [fho_action("a-null", "cut", None, None)],
               "uid-b": [fho_action(f"b{k}", ["cut", "take", "wash"][k % 3], 30 + 60 * k, 75 + 60 * k)
                         for k in range(3)],
               "uid-c": [fho_action("c0", "cut", 30, 75)]}
    (root / "imu").mkdir(parents=True)
    t = np.arange(0, 12, 0.005)
    for uid in actions:
        write_video(root / "full_scale" / f"{uid}.mp4", seconds=12.0, fps=30.0)
        if uid != "uid-c":
            write_csv(root / "imu" / f"{uid}.csv", ["component_idx", "component_timestamp_ms",
                                                    "canonical_timestamp_ms", "gyro_x", "gyro_y", "gyro_z",
                                                    "accl_x", "accl_y", "accl_z"],
                      [[0, f"{x * 1000:.1f}", f"{x * 1000:.1f}", *np.round(np.sin([x, 2 * x, 3 * x, x, x, x]), 6)]
                       for x in t])
    (root / "annotations").mkdir()
    fho = root / "annotations" / "fho_main.json"
    fho.write_text(json.dumps({"videos": [{"video_uid": uid, "annotated_intervals": [{"narrated_actions": acts}]}
                                          for uid, acts in actions.items()]}))
    (root / "ego4d.json").write_text(json.dumps({"videos": [{"video_uid": "uid-a", "has_imu": True},
                                                            {"video_uid": "uid-b", "has_imu": True},
                                                            {"video_uid": "uid-c", "has_imu": False}]}))
    return root, str(fho)


def test_ego4d_without_a_split_source_is_refused_saying_what_to_pass(ego4d):
    root, fho = ego4d
    with pytest.raises(ManifestError, match="have no split .*--protocol egodistill, --split-file CSV"):
        ExtractOptions(dataset="ego4d", annotations=(fho,), root=str(root), cache="x", **TINY).load_manifest()


def test_ego4d_protocol_selection_and_a_seeded_per_class_split(ego4d, tmp_path):
    root, fho = ego4d

    def manifest(seed: int):
        return ExtractOptions(dataset="ego4d", annotations=(fho,), root=str(root), cache="x", protocol="egodistill",
                              split_seed=seed, **TINY).load_manifest()

    m = manifest(0)
    segments = {c.segment_id: c for c in m.clips}
    assert "a-null" not in segments and any("a-null" in p or "critical_frames is null" in p for p in m.problems)
    assert not any(c.video_id == "uid-c" for c in m.clips)           # has_imu false in ego4d.json
    assert any(p.startswith("uid-c: no IMU") for p in m.problems)
    verbs = m.class_names["verb"]
    kept = {verbs[c.labels["verb"]] for c in m.clips}
    assert kept == {"cut", "take", "put"}                             # wash has 1 instance (< 2)
    by_class: dict[str, set] = {}
    for seg in {c.segment_id: c for c in m.clips}.values():
        by_class.setdefault(verbs[seg.labels["verb"]], set()).add(seg.split)
    assert all(s == {"train", "validation"} for s in by_class.values())  # each class split 70/30
    assert (segments["a0"].segment_start_s, segments["a0"].segment_stop_s) == (1.0, 2.5)   # frames / 30
    assert {c.segment_id: c.split for c in manifest(0).clips} == {c.segment_id: c.split for c in m.clips}
    others = [{c.segment_id: c.split for c in manifest(s).clips} for s in (1, 2, 3)]
    assert any(o != {c.segment_id: c.split for c in m.clips} for o in others)
    assert m.selection.split_seed == 0 and m.selection.class_split == 0.3 and m.selection.heads == ("verb",)


def test_ego4d_windows_over_backwards_timestamps_fail_unless_kept(ego4d, tmp_path):
    root, fho = ego4d
    imu = root / "imu" / "uid-a.csv"
    lines = imu.read_text().splitlines()
    imu_back = tmp_path / "root"
    shutil.copytree(root, imu_back)
    header, body = lines[0], lines[1:]
    body = body[:600] + body[500:700] + body[600:]                    # 2.5-3.5 s written twice
    (imu_back / "imu" / "uid-a.csv").write_text("\n".join([header, *body]) + "\n")
    split_file = write_csv(tmp_path / "s.csv", ["video_id", "split"], [["uid-a", "train"], ["uid-b", "validation"]])
    base = dict(dataset="ego4d", annotations=(str(imu_back / "annotations" / "fho_main.json"),),
                root=str(imu_back), split_file=split_file, **TINY)
    strict = extract(ExtractOptions(cache=str(tmp_path / "a.zarr"), **base))
    assert any("timestamps run backwards over 2.500-3.495 s" in f for f in strict.failures)
    kept = extract(ExtractOptions(cache=str(tmp_path / "b.zarr"), imu_keep_backwards=True, **base))
    assert kept.clips_failed == 0, kept.failures


# --- frames: RGB-frame folders, frame rates, shapes -------------------------------------------------
def test_rgb_frame_folders_give_the_videos_features_within_codec_loss(tmp_path):
    ds = synthesize(str(tmp_path / "syn"), videos=2, size=(96, 64), duration_s=12.0, fps=50.0, rgb_frames=True)
    base = dict(dataset="epic100", annotations=(ds.train_csv, ds.validation_csv), root=ds.root, **TINY)
    extract(ExtractOptions(cache=str(tmp_path / "video.zarr"), frames_source="video", **base))
    extract(ExtractOptions(cache=str(tmp_path / "rgb.zarr"), frames_source="rgb-frames", **base))
    a, b = (np.asarray(zarr.open_group(str(tmp_path / n), mode="r")["features"][:]) for n in ("video.zarr", "rgb.zarr"))
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    # H.264 at 96x64 and JPEG q95 both lose detail (mean pixel difference ~5-11/255): features agree
    # to cosine >= 0.98 per clip (measured 0.994-0.997)
    assert cos.min() >= 0.98 and len(cos) == 8
    # auto-detection: without the video the folder is read
    shutil.move(ds.videos[0].epic_video, tmp_path / "moved.MP4")
    auto = ExtractOptions(cache="x", **base).load_manifest()
    assert {c.video_path for c in auto.clips if c.video_id == ds.videos[0].video_id} == {ds.videos[0].rgb_frames}
    assert {c.frames_fps for c in auto.clips if c.video_id == ds.videos[0].video_id} == {RGB_FPS["extension"]}
    # a folder with a hole is reported per video, not a crash
    hole = Path(ds.videos[0].rgb_frames) / "frame_0000000100.jpg"
    hole.unlink()
    summary = extract(ExtractOptions(cache=str(tmp_path / "hole.zarr"), **base))
    assert summary.clips_failed > 0 and all("has holes" in f for f in summary.failures)


def test_ek55_folders_read_at_60_fps_and_extension_folders_at_50(tmp_path):
    root = tmp_path / "EPIC"
    for vid in ("P05_03", "P05_103"):
        (root / "P05" / "rgb_frames" / vid).mkdir(parents=True)
    auto = AdapterOptions()
    assert video_files(str(root), "P05", "P05_03", auto)[2] == 60.0
    assert video_files(str(root), "P05", "P05_103", auto)[2] == 50.0
    assert video_files(str(root), "P05", "P05_03", AdapterOptions(rgb_frames_fps=30.0))[2] == 30.0
    assert video_files(str(root), "P05", "P05_03", AdapterOptions(frames_source="video"))[2] is None


@pytest.mark.parametrize("fps, size", [(59.94, (64, 48)), (50.0, (64, 48)), (29.97, (64, 48)), (47.95, (64, 48)),
                                       (90.0, (64, 48)), (59.94, (48, 96)), (59.94, (72, 54))])
def test_every_epic_frame_rate_and_shape_extracts_the_planned_frames(tmp_path, fps, size):
    from egocache.pipeline.decode import decode_clips

    video = write_video(tmp_path / "v.mp4", seconds=5.0, fps=fps, size=size, audio=False)
    manifest = write_csv(tmp_path / "m.csv", ["video", "start", "end", "split", "verb"],
                         [["v.mp4", 1.0, 3.2, "train", "a"], ["v.mp4", 2.0, 4.0, "validation", "b"]])
    cache = tmp_path / "c.zarr"
    summary = extract(ExtractOptions(dataset="manifest", annotations=(manifest,), root=str(tmp_path),
                                     cache=str(cache), imu="none", eval_clips=1, **TINY))
    assert summary.clips_failed == 0
    group = zarr.open_group(str(cache), mode="r")
    centres = (np.asarray(group["start_s"][:]) + np.asarray(group["end_s"][:])) / 2
    stored = np.asarray(group["frames"][:])
    positions = group.attrs["sampling"]["positions"]
    for row, centre in enumerate(centres):
        plan = FramePlan(8, 8, 64, tuple(positions), 32)
        union, _, s_pos = plan.native_frames(float(centre), fps)
        expected = decode_clips(video, [union[s_pos]], size=plan.decode_size)[0][0]
        from egocache.pipeline.frames import resize_frames

        np.testing.assert_array_equal(stored[row], resize_frames(expected, 32))


def test_preflight_flags_imu_that_ends_far_before_its_video(tmp_path):
    root = tmp_path / "EPIC-KITCHENS"
    csvs = epic_dataset(root, {"P01_101": {"split": "train"}, "P02_101": {"split": "train", "dropped": 9},
                               "P03_101": {"split": "validation"}}, seconds=14.0)
    m = ExtractOptions(dataset="epic100", annotations=csvs, root=str(root), cache="x", **TINY).load_manifest()
    assert [f.split(":")[0] for f in m.preflight.imu_flags] == ["P02_101"]
    assert "IMU ends at 5.0 s, 9.0 s before the 14.0-s video" in m.preflight.imu_flags[0]
