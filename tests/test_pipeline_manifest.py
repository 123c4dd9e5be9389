"""Manifest adapters (EPIC-KITCHENS-100, Ego4D FHO, generic CSV/JSONL) on small files in tmp_path."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from egocache.errors import ManifestError
from files import write_csv
from egocache.pipeline.datasets.epic100 import parse_timestamp
from egocache.pipeline.imu import CHANNELS, imu_window, read_imu
from egocache.pipeline.datasets import load_manifest as _load_manifest
from egocache.pipeline.datasets.common import AdapterOptions
from egocache.pipeline.datasets.selection import Selection
from egocache.pipeline.sampling import segment_clip_centres
from egocache.synth import synthesize

EPIC_COLUMNS = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                "noun_class", "all_nouns", "all_noun_classes"]


def load_manifest(dataset, annotations, root, *, heads=("verb", "noun"), imu="optional", **kw):
    """load_manifest for adapter tests: these fixtures have no IMU files, so IMU is optional here."""
    selection = kw.pop("selection", Selection(imu=imu, heads=tuple(heads)))
    return _load_manifest(dataset, annotations, root, selection=selection, **kw)


def epic_row(nid, vid, start, stop, verb, vclass, noun, nclass):
    """One EPIC_100 row with the official 15 columns."""
    return [nid, vid.split("_")[0], vid, start, start, stop, 0, 0, f"{verb} {noun}", verb, vclass, noun,
            nclass, f"['{noun}']", f"[{nclass}]"]


@pytest.fixture
def epic(tmp_path):
    """An EPIC annotation dir with train and validation files, and a data root with one video."""
    ann = tmp_path / "ann"
    ann.mkdir()
    train = write_csv(ann / "EPIC_100_train.csv", EPIC_COLUMNS, [
        epic_row("P02_01_0", "P02_01", "00:00:10.00", "00:00:13.00", "open", 3, "door", 3),
        epic_row("P01_01_1", "P01_01", "00:01:05.50", "00:01:07.50", "take", 0, "plate", 2),
        epic_row("P01_01_0", "P01_01", "00:00:00.14", "00:00:03.37", "open", 3, "door", 3),
        epic_row("P01_01_2", "P01_01", "00:00:05.0", "0:00:05.0", "put", 1, "plate", 2),  # stop=start
        epic_row("P01_01_3", "P01_01", "00:00:0x.00", "00:00:07.00", "put", 1, "plate", 2),   # bad time
        epic_row("P01_01_0", "P01_01", "00:00:20.00", "00:00:21.00", "wash", 2, "cup", 4),  # dup id
        epic_row("P01_01_4", "P01_01", "00:00:30.00", "00:00:31.00", "put", "one", "cup", 4),
    ])
    val = write_csv(ann / "EPIC_100_validation.csv", EPIC_COLUMNS, [
        epic_row("P03_11_0", "P03_11", "00:00:01.00", "00:00:05.00", "put-down", 1, "cup", 4),
    ])
    root = tmp_path / "data"
    (root / "P01" / "videos").mkdir(parents=True)
    (root / "P01" / "videos" / "P01_01.mp4").write_bytes(b"")
    (root / "P01" / "meta_data").mkdir()
    for sensor, axis in (("accl", "Accl"), ("gyro", "Gyro")):
        write_csv(root / "P01" / "meta_data" / f"P01_01-{sensor}.csv", ["Milliseconds", *(axis + a for a in "XYZ")],
                  [[0.0, 0, 0, 0], [90000.0, 0, 0, 0]])
    return train, val, str(root)


def test_epic_clips_sorted_counted_and_labelled(epic):
    train, val, root = epic
    m = load_manifest("epic100", [train, val], root, eval_clips=3)
    assert m.dataset == "epic100"
    assert [c.clip_id for c in m.clips] == ["P01_01_0/0", "P01_01_1/0", "P02_01_0/0",
                                           "P03_11_0/0", "P03_11_0/1", "P03_11_0/2"]
    keys = [(c.video_path, c.centre_s) for c in m.clips]
    assert keys == sorted(keys)
    first = m.clips[0]
    assert first.video_path == os.path.join(root, "P01", "videos", "P01_01.mp4")     # lower-case found
    assert first.centre_s == pytest.approx((0.14 + 3.37) / 2)
    assert first.labels == {"verb": 3, "noun": 3} and first.split == "train"
    assert first.imu_format == "epic100"
    assert first.imu_paths == (os.path.join(root, "P01", "meta_data", "P01_01-accl.csv"),
                               os.path.join(root, "P01", "meta_data", "P01_01-gyro.csv"))
    assert m.clips[2].video_path == os.path.join(root, "P02", "videos", "P02_01.MP4")  # not there
    assert m.clips[2].imu_format is None                                               # no meta_data
    assert any(line.startswith("P02_01: no IMU file") for line in m.preflight.videos_without_imu)
    val_clips = [c for c in m.clips if c.segment_id == "P03_11_0"]
    assert {c.split for c in val_clips} == {"validation"}
    assert [c.centre_s for c in val_clips] == pytest.approx(segment_clip_centres(1.0, 5.0, 3))
    # no class files: names from the rows, sized max id + 1
    assert m.class_names["verb"] == ["take", "put", "wash", "open"]      # most frequent, ties by name
    assert m.class_names["noun"][:5] == ["class_0", "class_1", "plate", "door", "cup"]


def test_epic_problems_name_file_row_and_reason(epic):
    train, val, root = epic
    problems = load_manifest("epic100", [train, val], root).problems
    assert len(problems) == 4
    assert f"{train}:5: stop 5.000 s is not after start 5.000 s" in problems
    assert f"{train}:6: timestamp '00:00:0x.00' is not HH:MM:SS.ff" in problems
    assert f"{train}:7: duplicate segment id 'P01_01_0' (first at {train}:4)" in problems
    assert f"{train}:8: verb_class 'one' is not an integer" in problems


def test_epic_class_files_and_unknown_class(epic, tmp_path):
    train, val, root = epic
    ann = os.path.dirname(train)
    write_csv(os.path.join(ann, "EPIC_100_verb_classes.csv"), ["id", "key", "instances", "category"],
               [[0, "take", "['take']", "get"], [1, "put", "['put']", "leave"],
                [3, "open", "['open']", "a"]])
    m = load_manifest("epic100", [train, val], root, heads=("verb",))
    assert m.class_names == {"verb": ["take", "put", "class_2", "open"]}
    assert all(set(c.labels) == {"verb"} for c in m.clips)
    write_csv(os.path.join(ann, "EPIC_100_verb_classes.csv"), ["id", "key"], [[0, "take"], [1, "put"]])
    m2 = load_manifest("epic100", [train, val], root, heads=("verb",))
    assert any(p.startswith(f"{train}:2: unknown verb class 3") for p in m2.problems)
    assert m2.sha256 != m.sha256                       # class files are part of the fingerprint


def test_epic_fingerprint_and_file_errors(epic, tmp_path):
    train, val, root = epic
    a = load_manifest("epic100", [train, val], root)
    shutil.copytree(root, tmp_path / "elsewhere")                 # the same files under another root
    assert load_manifest("epic100", [train, val], str(tmp_path / "elsewhere")).sha256 == a.sha256
    assert load_manifest("epic100", [train, val], root, eval_clips=5).sha256 != a.sha256
    assert len(load_manifest("epic100", [train, val], root, eval_clips=5).clips) == len(a.clips) + 2
    bad = write_csv(tmp_path / "EPIC_100_other.csv", ["narration_id", "video_id"], [["a", "b"]])
    with pytest.raises(ManifestError, match="missing column.*start_timestamp"):
        load_manifest("epic100", [bad], root)
    with pytest.raises(ManifestError, match="cannot label action"):
        load_manifest("epic100", [train], root, heads=("verb", "action"))
    with pytest.raises(ManifestError, match="nope.csv: annotation file not found"):
        load_manifest("epic100", [str(tmp_path / "nope.csv")], root)
    with pytest.raises(ManifestError, match="unknown dataset 'kinetics'"):
        load_manifest("kinetics", [train], root)
    with pytest.raises(ManifestError, match="eval_clips"):
        load_manifest("epic100", [train], root, eval_clips=0)


@pytest.mark.parametrize("text,seconds", [("00:00:01.89", 1.89), ("01:02:03.5", 3723.5),
                                          ("0:00:07", 7.0), ("00:00:00.140", 0.14)])
def test_epic_timestamp_parsing(text, seconds):
    assert parse_timestamp(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "00:61:00.00", "1.5", "00:00:-1", "a:b:c"])
def test_epic_timestamp_rejects(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


def fho_action(uid, verb, *, pre=None, post=None, start=None, end=None, **extra):
    """A narrated action in fho_main.json style."""
    frames = None if pre is None else {"pre_frame": pre, "pnr_frame": (pre + post) // 2,
                                       "post_frame": post}
    return {"uid": uid, "narration_annotation_uid": "narr-1", "start_sec": start, "end_sec": end,
            "critical_frames": frames, "structured_verb": verb, "freeform_verb": verb,
            "is_valid_action": True, "is_rejected": False, "is_invalid_annotation": False, **extra}


def fho_file(path, videos) -> str:
    """Write an FHO annotation JSON."""
    with open(path, "w") as f:
        json.dump({"version": "v2", "videos": videos}, f)
    return str(path)


@pytest.fixture
def ego4d(tmp_path):
    """A messy FHO validation file and its data root."""
    box = {"object_type": "object_of_change", "structured_noun": "cup"}
    videos = [
        {"video_uid": "vid-b", "video_metadata": {"fps": 30}, "annotated_intervals": [
            {"narrated_actions": [
                fho_action("a1", "take_(pick,_grab,_get)", pre=300, post=390, structured_noun="knife"),
                fho_action("a2", "put_(place,_leave,_drop)", start=20.0, end=22.5,
                           frames=[{"frame_type": "pnr_frame", "boxes": [box]}]),
                fho_action("a3", "cut", pre=30, post=60, is_rejected=True),
                fho_action("a4", "cut", pre=30, post=60, is_valid_action=False),
                fho_action("a5", "cut", pre=30, post=60, is_invalid_annotation=True),
                fho_action("a6", None, start=1.0, end=2.0),
                fho_action("a7", "cut"),                                   # no times at all
                fho_action("a1", "cut", start=40.0, end=41.0),             # duplicate uid
                "garbage",
                fho_action("a8", "cut", start="50.5", end="52"),           # numbers as strings
                fho_action("a9", "cut", start=60.0, end=59.0),             # stop before start
            ]}, None, {"narrated_actions": None}]},
        {"video_uid": "vid-a", "video_metadata": {"fps": 60}, "split": "train", "annotated_intervals": [
            {"narrated_actions": [fho_action(None, "cut", pre=600, post=720)]}]},
        {"annotated_intervals": [{"narrated_actions": [fho_action("z", "cut", start=1, end=2)]}]},
    ]
    ann = tmp_path / "ann"
    ann.mkdir()
    (tmp_path / "ego4d" / "imu").mkdir(parents=True)
    write_csv(tmp_path / "ego4d" / "imu" / "vid-a.csv", EGO4D_IMU_HEADER, [[0, 0, 0, *[0] * 6], [0, 60000, 60000, *[0] * 6]])
    return fho_file(ann / "fho_main_val.json", videos), str(tmp_path / "ego4d")


EGO4D_IMU_HEADER = ["component_idx", "component_timestamp_ms", "canonical_timestamp_ms", "gyro_x", "gyro_y",
                    "gyro_z", "accl_x", "accl_y", "accl_z"]


def test_ego4d_messy_json(ego4d):
    path, root = ego4d
    m = load_manifest("ego4d", [path], root, eval_clips=2)
    assert m.class_names == {"verb": ["cut", "take_(pick,_grab,_get)"], "noun": ["knife"]}
    by_seg = {}
    for c in m.clips:
        by_seg.setdefault(c.segment_id, []).append(c)
    assert set(by_seg) == {"a1", "narr-1"}
    a1 = by_seg["a1"]
    assert len(a1) == 2 and a1[0].split == "validation"                      # split from the file name
    assert (a1[0].segment_start_s, a1[0].segment_stop_s) == (10.0, 13.0)     # canonical 30-fps frames
    assert a1[0].labels == {"verb": 1, "noun": 0}
    narr = by_seg["narr-1"]                                                  # uid null -> narration uid
    assert len(narr) == 1 and narr[0].split == "train"                      # video-level split
    assert (narr[0].segment_start_s, narr[0].segment_stop_s) == (20.0, 24.0)  # 600/30, 720/30 (not /60)
    assert narr[0].video_path == os.path.join(root, "full_scale", "vid-a.mp4")
    assert narr[0].imu_format == "ego4d" and narr[0].imu_paths == (os.path.join(root, "imu", "vid-a.csv"),)
    assert a1[0].imu_format is None                                          # vid-b has no IMU file
    assert m.clips[0].video_id == "vid-a"                                    # sorted by video path
    where = f"{path}:videos[0].annotated_intervals[0].narrated_actions"
    skipped = "; skipped (--ego4d-narration-window uses the narration's start_sec..end_sec)"
    expected = {f"{where}[1]: critical_frames is null{skipped}",
                f"{where}[2]: annotation rejected (is_rejected)",
                f"{where}[3]: not a valid action (is_valid_action is false)",
                f"{where}[4]: annotation marked invalid (is_invalid_annotation)",
                f"{where}[5]: no structured_verb",
                f"{where}[6]: critical_frames is null{skipped}",
                f"{where}[7]: critical_frames is null{skipped}",
                f"{where}[8]: action is not a JSON object",
                f"{where}[9]: critical_frames is null{skipped}",
                f"{where}[10]: critical_frames is null{skipped}",
                f"{path}:videos[2]: no video_uid; 1 action(s) skipped"}
    assert set(m.problems) == expected


def test_ego4d_narration_window_only_when_asked(ego4d):
    path, root = ego4d
    m = load_manifest("ego4d", [path], root, adapter=AdapterOptions(narration_window=True))
    spans = {c.segment_id: (c.segment_start_s, c.segment_stop_s) for c in m.clips}
    assert spans["a2"] == (20.0, 22.5) and spans["a8"] == (50.5, 52.0) and spans["a1"] == (10.0, 13.0)
    assert any("[6]: critical_frames is null and no start_sec/end_sec" in p for p in m.problems)


def test_ego4d_taxonomy_and_bad_files(ego4d, tmp_path):
    path, root = ego4d
    with open(os.path.join(os.path.dirname(path), "fho_lta_taxonomy.json"), "w") as f:
        json.dump({"verbs": ["cut", "take_(pick,_grab,_get)", "wash"], "nouns": ["knife", "cup"]}, f)
    m = load_manifest("ego4d", [path], root, heads=("verb",), adapter=AdapterOptions(narration_window=True))
    assert m.class_names == {"verb": ["cut", "take_(pick,_grab,_get)", "wash"]}
    taxonomy = os.path.join(os.path.dirname(path), "fho_lta_taxonomy.json")
    assert any(p.endswith(f"verb 'put_(place,_leave,_drop)' not in {taxonomy}") for p in m.problems)
    broken = tmp_path / "broken.json"
    broken.write_text("{\"videos\": [")
    with pytest.raises(ManifestError, match="broken.json: cannot read JSON"):
        load_manifest("ego4d", [str(broken)], root)
    other = fho_file(tmp_path / "other.json", None)
    with pytest.raises(ManifestError, match="no \"videos\" list"):
        load_manifest("ego4d", [other], root)


def test_generic_csv_and_jsonl(tmp_path):
    root = tmp_path / "root"
    (root / "imu").mkdir(parents=True)
    t = np.arange(0, 12, 0.005)
    with open(root / "imu" / "a.csv", "w") as f:
        f.write("t_s," + ",".join(CHANNELS) + "\n")
        np.savetxt(f, np.c_[t, np.outer(t, np.arange(1, 7))], delimiter=",", fmt="%.6f")
    (root / "imu" / "b.csv").write_text("component_idx,component_timestamp_ms,canonical_timestamp_ms,"
                                        "gyro_x,gyro_y,gyro_z,accl_x,accl_y,accl_z\n0,0,0,0,0,0,0,0,0\n"
                                        "0,9000,9000,0,0,0,0,0,0\n")
    for sensor, axis in (("accl", "Accl"), ("gyro", "Gyro")):
        write_csv(root / f"p-{sensor}.csv", ["Milliseconds", *(axis + a for a in "XYZ")], [[0, 0, 0, 0], [9000, 0, 0, 0]])
    header = ["video", "start", "end", "split", "verb", "imu", "id"]
    csv_path = write_csv(tmp_path / "mine.csv", header, [
        ["videos/a.mp4", 2.0, 4.5, "", "open", "imu/a.csv", "s1"],
        ["videos/a.mp4", 6.0, 9.0, "val", "close", "imu/a.csv", ""],
        [str(tmp_path / "abs.mp4"), 1.0, 3.0, "train", "", "imu/b.csv", "s3"],
        ["videos/c.mp4", "soon", 3.0, "train", "open", "", "s4"],
        ["videos/c.mp4", 1.0, 3.0, "train", "open", "x.csv;y.csv", "s1"],
    ])
    jsonl = tmp_path / "more.jsonl"
    jsonl.write_text("\n".join([
        json.dumps({"video": "videos/d.mp4", "start": 0, "end": 2, "verb": "open", "imu": "x.csv",
                    "imu_format": "wav"}),
        "{not json",
        json.dumps({"video": "videos/d.mp4", "start": 3, "end": 5, "verb": "stir", "id": "j2",
                    "imu": "p-accl.csv;p-gyro.csv"}),
        "",
        json.dumps({"start": 1, "end": 2}),
    ]) + "\n")
    m = load_manifest("manifest", [csv_path, str(jsonl)], str(root), eval_clips=2)
    assert m.class_names == {"verb": ["close", "open", "stir"]}             # no noun column anywhere
    ids = [c.clip_id for c in m.clips]
    assert ids == ["s3/0", "s1/0", "mine:3/0", "mine:3/1", "j2/0"]
    s3, s1, v0, _, j2 = m.clips
    assert s3.video_path == str(tmp_path / "abs.mp4") and s3.labels == {"verb": -1}
    assert s3.imu_format == "ego4d" and s1.imu_format == "csv" and j2.imu_format == "epic100"
    assert s1.video_path == str(root / "videos" / "a.mp4") and s1.video_id == "a"
    assert v0.split == "validation" and v0.labels == {"verb": 0}
    assert j2.imu_paths == (str(root / "p-accl.csv"), str(root / "p-gyro.csv"))
    assert set(m.problems) == {
        f"{csv_path}:5: start 'soon' is not a number of seconds",
        f"{csv_path}:6: duplicate segment id 's1' (first at {csv_path}:2)",
        f"{jsonl}:1: imu_format 'wav' is not one of epic100, ego4d, csv",
        f"{jsonl}:2: not valid JSON (Expecting property name enclosed in double quotes)",
        f"{jsonl}:5: empty or missing video"}
    window = imu_window(read_imu(s1.imu_format, s1.imu_paths), s1.centre_s)   # the clip's IMU is usable
    assert window.shape == (422, 6) and np.abs(window.mean(axis=0)).max() < 1e-5


def test_generic_integer_labels_and_missing_columns(tmp_path):
    path = write_csv(tmp_path / "ints.csv", ["video", "start", "end", "verb", "noun"], [
        ["v.mp4", 0, 2, 4, "-1"], ["v.mp4", 2, 4, 1, 0], ["v.mp4", 4, 6, -3, 0]])
    m = load_manifest("manifest", [path], str(tmp_path))
    assert m.class_names == {"verb": [f"class_{i}" for i in range(5)], "noun": ["class_0"]}
    assert [c.labels for c in m.clips] == [{"verb": 4, "noun": -1}, {"verb": 1, "noun": 0}]
    assert m.problems == [f"{path}:4: verb '-3' is not a class id"]
    assert m.clips[0].imu_format is None and m.clips[0].imu_paths == ()
    bad = write_csv(tmp_path / "bad.csv", ["video", "begin", "end"], [["v.mp4", 0, 1]])
    with pytest.raises(ManifestError, match="bad.csv: manifest needs column\\(s\\) start"):
        load_manifest("manifest", [bad], str(tmp_path))


def test_train_clips_spread_training_segments_and_change_the_fingerprint(tmp_path):
    ds = synthesize(str(tmp_path / "ds"), videos=2, seed=0, size=(64, 48), duration_s=10.0, imu_layout="epic100")
    one = load_manifest("epic100", [ds.train_csv, ds.validation_csv], ds.root)
    three = load_manifest("epic100", [ds.train_csv, ds.validation_csv], ds.root, train_clips=3)
    train_one = [c for c in one.clips if c.split == "train"]
    train_three = [c for c in three.clips if c.split == "train"]
    assert len(train_three) == 3 * len(train_one) > 0
    assert [c for c in three.clips if c.split != "train"] == [c for c in one.clips if c.split != "train"]
    for seg in {c.segment_id for c in train_three}:
        centres = sorted(c.centre_s for c in train_three if c.segment_id == seg)
        first = next(c for c in train_three if c.segment_id == seg)
        assert centres == pytest.approx(segment_clip_centres(first.segment_start_s, first.segment_stop_s, 3))
    assert one.sha256 != three.sha256
    with pytest.raises(ManifestError, match="train_clips"):
        load_manifest("epic100", [ds.train_csv], ds.root, train_clips=0)


def test_dataset_metadata_file_gives_motion_pairs(epic, tmp_path):
    train, val, root = epic
    assert load_manifest("epic100", [train, val], root).motion_pairs == []
    meta = tmp_path / "my-meta.json"
    meta.write_text(json.dumps({"motion_pairs": [["take", "put"]], "description": "mine"}))
    m = load_manifest("epic100", [train, val], root, dataset_meta=str(meta))
    assert m.motion_pairs == [("take", "put")] and m.motion_pair_verbs == ["take", "put"]
    # the default location is <root>/egocache-dataset.json; its bytes enter the fingerprint
    (tmp_path / "data" / "egocache-dataset.json").write_text(meta.read_text())
    default = load_manifest("epic100", [train, val], root)
    assert default.motion_pairs == [("take", "put")]
    meta.write_text(json.dumps({"motion_pairs": [["take", "put"]], "description": "changed"}))
    assert load_manifest("epic100", [train, val], root, dataset_meta=str(meta)).sha256 != default.sha256


@pytest.mark.parametrize("content, message", [
    ({"motion_pairs": [["take", "put"]], "colour": 1}, "unknown key"),
    ({"motion_pairs": [["take"]]}, "pairs"),
    ({"motion_pairs": [["take", "put"], ["put", "open"]]}, "more than one"),
    ([], "JSON object"),
])
def test_bad_dataset_metadata_is_refused_naming_the_file(epic, tmp_path, content, message):
    train, val, root = epic
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(content))
    with pytest.raises(ManifestError, match=message) as exc:
        load_manifest("epic100", [train, val], root, dataset_meta=str(meta))
    assert str(meta) in str(exc.value)


def test_motion_pairs_outside_the_classes_are_left_out_and_reported(epic, tmp_path):
    train, val, root = epic
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"motion_pairs": [["take", "put"], ["stir", "mix"]]}))
    m = load_manifest("epic100", [train, val], root, dataset_meta=str(meta))
    assert m.motion_pairs == [("take", "put")]
    assert any("stir/mix left out" in p and str(meta) in p for p in m.problems)


def test_synthetic_dataset_declares_its_motion_pairs(tmp_path):
    from egocache.synth import MOTION_PAIRS

    ds = synthesize(str(tmp_path / "syn"), videos=1, duration_s=8.0, size=(32, 32))
    m = load_manifest("epic100", [ds.train_csv], ds.root)
    assert m.motion_pairs == [tuple(p) for p in MOTION_PAIRS]
