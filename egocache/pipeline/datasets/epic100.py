"""EPIC-KITCHENS-100 action recognition CSVs (EPIC_100_train.csv, EPIC_100_validation.csv) -> segments.

Segments span start_timestamp..stop_timestamp ("HH:MM:SS.ff"; start_frame/stop_frame count frames of
the RGB-frame release, not of the video, and are not used); ids are narration_id; the split comes
from the file name (validation / val, test, train), otherwise "train" (a protocol or split file may
reassign it, see selection.py). Labels are verb_class and noun_class; a file without them is refused
unless it is a test file (the test timestamps are unlabelled), so a missing column never turns into
labels -1 silently. Class names come from EPIC_100_verb_classes.csv / EPIC_100_noun_classes.csv
(columns id, key) next to the annotation file; without them, from the rows' (class, name) pairs
(most frequent name per id, "class_<i>" for ids never seen, sized max id + 1).

Files (the download scripts' layout under EPIC-KITCHENS/): videos <root>/<P>/videos/<video_id>.MP4
(or .mp4), RGB frames <root>/<P>/rgb_frames/<video_id>/frame_0000000001.jpg (read at the release's
rate: 50 fps for the extension videos PXX_1YY, 60 for the others, unless told otherwise), IMU
<root>/<P>/meta_data/<video_id>-accl.csv and -gyro.csv (extension videos only; which videos really
have them is checked by sources.py).
"""

from __future__ import annotations

import os
import re
from collections import Counter

from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import (AdapterOptions, AdapterResult, Segment, check_heads, csv_rows,
                                               names_from_pairs, split_from_name, with_labels)

HEADS = ("verb", "noun")
REQUIRED = ("narration_id", "video_id", "start_timestamp", "stop_timestamp")
CLASS_FILES = {"verb": "EPIC_100_verb_classes.csv", "noun": "EPIC_100_noun_classes.csv"}
_TIMESTAMP = re.compile(r"^\s*(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)\s*$")
_EXTENSION_VIDEO = re.compile(r"^P\d+_1\d\d$")
RGB_FPS = {"extension": 50.0, "ek55": 60.0}   # the RGB-frame release's rates (maintainers, annotations#34)


def parse_timestamp(text: str) -> float:
    """Seconds from "HH:MM:SS.ff" (any number of fraction digits); ValueError if malformed."""
    m = _TIMESTAMP.match(text or "")
    if not m:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def is_extension_video(video_id: str) -> bool:
    """Whether an EPIC video id belongs to the EPIC-100 extension (PXX_1YY), the videos with IMU."""
    return bool(_EXTENSION_VIDEO.match(video_id))


def load_epic100(annotations: list[str], root: str, heads: tuple[str, ...],
                 options: AdapterOptions = AdapterOptions()) -> AdapterResult:
    """Segments, class names and problems of EPIC-KITCHENS-100 action CSVs."""
    check_heads("epic100", heads, HEADS)
    out = AdapterResult()
    class_files = _class_files(annotations, heads)
    out.extra_files = sorted(set(class_files.values()))
    fixed = {h: _read_classes(p) for h, p in class_files.items()}
    pairs: dict[str, Counter] = {h: Counter() for h in heads}
    rows = []
    for path in annotations:
        rows += _read_rows(path, root, heads, pairs, out.problems, options)
    names = {h: fixed.get(h) or names_from_pairs(pairs[h]) for h in heads}
    out.class_names = {h: names[h] for h in heads if names[h]}
    present = set(out.class_names)
    for seg in rows:
        bad = [f"unknown {h} class {seg.labels[h]} ({class_files[h] if h in fixed else 'rows'} "
               f"define {len(out.class_names[h])})" for h in present
               if seg.labels[h] >= len(out.class_names[h])]
        if bad:
            out.problems.append(f"{seg.where}: {'; '.join(bad)}")
        else:
            labels = {h: seg.labels[h] for h in heads if h in present}
            out.segments.append(with_labels(seg, labels))
    return out


def _class_files(annotations: list[str], heads: tuple[str, ...]) -> dict[str, str]:
    """The class CSV per head found next to the first annotation file that has one."""
    found: dict[str, str] = {}
    for path in annotations:
        for h in heads:
            candidate = os.path.join(os.path.dirname(os.path.abspath(path)), CLASS_FILES[h])
            if h not in found and os.path.isfile(candidate):
                found[h] = candidate
    return found


def _read_classes(path: str) -> list[str]:
    """Names indexed by id from an EPIC class CSV (columns id, key)."""
    header, rows = csv_rows(path)
    if not {"id", "key"} <= set(header):
        raise ManifestError(f"{path}: class file needs columns id and key")
    names: dict[int, str] = {}
    for line, row in rows:
        try:
            names[int(row["id"])] = row["key"]
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{line}: bad class id {row['id']!r}") from e
    if not names or min(names) < 0:
        raise ManifestError(f"{path}: no classes, or a negative class id")
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


def _read_rows(path: str, root: str, heads: tuple[str, ...], pairs: dict[str, Counter],
               problems: list[str], options: AdapterOptions) -> list[Segment]:
    """Parse one EPIC CSV; labels are raw class ids here (checked against names by the caller)."""
    split = split_from_name(path) or "train"
    header, rows = csv_rows(path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ManifestError(f"{path}: not an EPIC-KITCHENS-100 action file "
                            f"(missing column(s) {', '.join(missing)})")
    unlabelled = [f"{h}_class" for h in heads if f"{h}_class" not in header]
    if unlabelled and split != "test":
        raise ManifestError(f"{path}: no {', '.join(unlabelled)} column, so its {split} segments would have no "
                            f"labels; only a test file (e.g. EPIC_100_test_timestamps.csv) may be unlabelled")
    videos: dict[str, tuple[str, tuple[str, str], float | None]] = {}
    segments = []
    for line, row in rows:
        where = f"{path}:{line}"
        try:
            seg = _segment(row, root, split, heads, videos, where, options)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        for h in heads:
            if seg.labels[h] >= 0 and row.get(h):
                pairs[h][(seg.labels[h], row[h].strip())] += 1
        segments.append(seg)
    return segments


def _segment(row: dict, root: str, split: str, heads: tuple[str, ...],
             videos: dict[str, tuple[str, tuple[str, str], float | None]], where: str,
             options: AdapterOptions) -> Segment:
    """One row as a segment; ValueError names what is wrong with it."""
    video_id = (row.get("video_id") or "").strip()
    seg_id = (row.get("narration_id") or "").strip()
    if not video_id or not seg_id:
        raise ValueError("empty video_id or narration_id")
    start = parse_timestamp(row.get("start_timestamp", ""))
    stop = parse_timestamp(row.get("stop_timestamp", ""))
    labels = {}
    for h in heads:
        text = (row.get(f"{h}_class") or "").strip()
        try:
            labels[h] = int(text) if text else -1
        except ValueError:
            raise ValueError(f"{h}_class {text!r} is not an integer") from None
        if labels[h] < -1:
            raise ValueError(f"{h}_class {labels[h]} is negative")
    participant = (row.get("participant_id") or "").strip() or video_id.split("_")[0]
    if video_id not in videos:
        videos[video_id] = video_files(root, participant, video_id, options)
    source, imu_paths, frames_fps = videos[video_id]
    return Segment(seg_id, video_id, source, split, start, stop, labels, "epic100", imu_paths, where,
                   participant, frames_fps)


def video_files(root: str, participant: str, video_id: str, options: AdapterOptions
                ) -> tuple[str, tuple[str, str], float | None]:
    """(frame source, IMU paths, RGB-frame rate or None for a video) of one EPIC video.

    The source is the video (.MP4, else .mp4) or the RGB-frame folder, as `options.frames_source`
    says ("auto": the video if it exists, else the folder if it exists, else the video's name, which
    extraction reports as missing).
    """
    base = os.path.join(root, participant, "videos", video_id)
    video = next((base + ext for ext in (".MP4", ".mp4") if os.path.isfile(base + ext)), base + ".MP4")
    folder = os.path.join(root, participant, "rgb_frames", video_id)
    use_folder = options.frames_source == "rgb-frames" or (
        options.frames_source == "auto" and not os.path.isfile(video) and os.path.isdir(folder))
    fps = options.rgb_frames_fps or RGB_FPS["extension" if is_extension_video(video_id) else "ek55"]
    meta = os.path.join(root, participant, "meta_data", video_id)
    return (folder, (meta + "-accl.csv", meta + "-gyro.csv"), fps) if use_folder else \
        (video, (meta + "-accl.csv", meta + "-gyro.csv"), None)
