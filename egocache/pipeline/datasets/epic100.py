"""EPIC-KITCHENS-100 action recognition CSVs (EPIC_100_train.csv, EPIC_100_validation.csv) -> segments.

Segments span start_timestamp..stop_timestamp ("HH:MM:SS.ff"); ids are narration_id; the split
comes from the file name (validation / val, test, train), otherwise "train". Labels are verb_class
and noun_class; a file without them (the test timestamps) gives -1. Class names come from
EPIC_100_verb_classes.csv / EPIC_100_noun_classes.csv (columns id, key) next to the annotation
file; without them, from the rows' (class, name) pairs (most frequent name per id, "class_<i>"
for ids never seen, sized max id + 1). Videos are <root>/<P>/videos/<video_id>.MP4 (or .mp4), IMU
<root>/<P>/meta_data/<video_id>-accl.csv and -gyro.csv.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter

from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import (AdapterResult, Segment, check_heads, names_from_pairs,
                                               split_from_name, with_labels)

HEADS = ("verb", "noun")
REQUIRED = ("narration_id", "video_id", "start_timestamp", "stop_timestamp")
CLASS_FILES = {"verb": "EPIC_100_verb_classes.csv", "noun": "EPIC_100_noun_classes.csv"}
_TIMESTAMP = re.compile(r"^\s*(\d+):([0-5]?\d):([0-5]?\d(?:\.\d*)?)\s*$")


def parse_timestamp(text: str) -> float:
    """Seconds from "HH:MM:SS.ff" (any number of fraction digits); ValueError if malformed."""
    m = _TIMESTAMP.match(text or "")
    if not m:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def load_epic100(annotations: list[str], root: str, heads: tuple[str, ...]) -> AdapterResult:
    """Segments, class names and problems of EPIC-KITCHENS-100 action CSVs."""
    check_heads("epic100", heads, HEADS)
    out = AdapterResult()
    class_files = _class_files(annotations, heads)
    out.extra_files = sorted(set(class_files.values()))
    fixed = {h: _read_classes(p) for h, p in class_files.items()}
    pairs: dict[str, Counter] = {h: Counter() for h in heads}
    rows = []
    for path in annotations:
        rows += _read_rows(path, root, heads, pairs, out.problems)
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
    names: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"id", "key"} <= set(reader.fieldnames or ()):
            raise ManifestError(f"{path}: class file needs columns id and key")
        for row in reader:
            try:
                names[int(row["id"])] = row["key"]
            except (TypeError, ValueError) as e:
                raise ManifestError(f"{path}:{reader.line_num}: bad class id {row['id']!r}") from e
    if not names or min(names) < 0:
        raise ManifestError(f"{path}: no classes, or a negative class id")
    return [names.get(i, f"class_{i}") for i in range(max(names) + 1)]


def _read_rows(path: str, root: str, heads: tuple[str, ...], pairs: dict[str, Counter],
               problems: list[str]) -> list[Segment]:
    """Parse one EPIC CSV; labels are raw class ids here (checked against names by the caller)."""
    split = split_from_name(path) or "train"
    videos: dict[str, tuple[str, tuple[str, str]]] = {}
    segments = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
        if missing:
            raise ManifestError(f"{path}: not an EPIC-KITCHENS-100 action file "
                                f"(missing column(s) {', '.join(missing)})")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            try:
                seg = _segment(row, root, split, heads, videos, where)
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            for h in heads:
                if seg.labels[h] >= 0 and row.get(h):
                    pairs[h][(seg.labels[h], row[h].strip())] += 1
            segments.append(seg)
    return segments


def _segment(row: dict, root: str, split: str, heads: tuple[str, ...],
             videos: dict[str, tuple[str, tuple[str, str]]], where: str) -> Segment:
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
    if video_id not in videos:
        participant = (row.get("participant_id") or "").strip() or video_id.split("_")[0]
        videos[video_id] = _video_files(root, participant, video_id)
    video_path, imu_paths = videos[video_id]
    return Segment(seg_id, video_id, video_path, split, start, stop, labels, "epic100", imu_paths, where)


def _video_files(root: str, participant: str, video_id: str) -> tuple[str, tuple[str, str]]:
    """The video (.MP4, else .mp4, else the .MP4 name for extraction to report) and IMU paths."""
    base = os.path.join(root, participant, "videos", video_id)
    video = next((base + ext for ext in (".MP4", ".mp4") if os.path.isfile(base + ext)), base + ".MP4")
    meta = os.path.join(root, participant, "meta_data", video_id)
    return video, (meta + "-accl.csv", meta + "-gyro.csv")
