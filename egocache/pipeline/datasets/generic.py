"""A generic manifest (CSV, or JSON lines for .jsonl / .ndjson) -> segments, for one's own data.

Columns (keys): video (path, relative to root or absolute), start and end (seconds from the video
start); optional: split (default "train"; "val" -> "validation"), id (default "<file stem>:<row>"),
video_id (default the video file's stem), one column per head (class names or integer ids; empty =
unlabelled, -1), imu (IMU file; two files separated by ";" for epic100) and imu_format ("epic100",
"ego4d" or "csv"; when empty: two files -> epic100, else "ego4d" if the CSV header has
canonical_timestamp_ms, else "csv"), participant (camera wearer, for splits by wearer) and fps (the
frame rate of an RGB-frame folder given as `video`; JPEG files frame_0000000001.jpg, ...). A head whose values are all integers is read as class ids
(names "class_<i>", sized max id + 1); otherwise its values are names and the classes are their
sorted set. A head that no file labels is left out of class_names.
"""

from __future__ import annotations

import json
import os
import re

from egocache.core.files import read_text
from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import (AdapterOptions, AdapterResult, Segment, csv_rows, label_segments,
                                               normalise_split, resolve)
from egocache.pipeline.imu import IMU_FORMATS, guess_imu_format

REQUIRED = ("video", "start", "end")
JSONL_EXTENSIONS = (".jsonl", ".ndjson")
_INT = re.compile(r"^-?\d+$")


def load_generic(annotations: list[str], root: str, heads: tuple[str, ...],
                 options: AdapterOptions = AdapterOptions()) -> AdapterResult:
    """Segments, class names and problems of generic manifest files."""
    out = AdapterResult()
    found: list[tuple[Segment, dict[str, str | None]]] = []
    formats: dict[str, str] = {}
    for path in annotations:
        stem = os.path.splitext(os.path.basename(path))[0]
        for where, line, rec in _records(path, out.problems):
            try:
                found.append(_segment(rec, root, heads, f"{stem}:{line}", where, formats))
            except ValueError as e:
                out.problems.append(f"{where}: {e}")
    index: dict[str, dict[str, int]] = {}
    for h in heads:
        values = [names[h] for _, names in found if names[h] is not None]
        if values and all(_INT.match(v) for v in values):
            out.class_names[h] = [f"class_{i}" for i in range(max(int(v) for v in values) + 1)]
            index[h] = {v: int(v) for v in values if int(v) >= -1}
        elif values:
            out.class_names[h] = sorted(set(values))
            index[h] = {n: i for i, n in enumerate(out.class_names[h])}
    label_segments(found, index, out, "is not a class id")
    return out


def _records(path: str, problems: list[str]):
    """Yield (where, line number, record dict) from a CSV or JSON-lines manifest."""
    if path.lower().endswith(JSONL_EXTENSIONS):
        for line, text in enumerate(read_text(path, ManifestError).split("\n"), start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{line}: not valid JSON ({e.msg})")
                continue
            if not isinstance(rec, dict):
                problems.append(f"{path}:{line}: not a JSON object")
                continue
            yield f"{path}:{line}", line, rec
        return
    header, rows = csv_rows(path)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ManifestError(f"{path}: manifest needs column(s) {', '.join(missing)}")
    for line, rec in rows:
        yield f"{path}:{line}", line, rec


def _text(value: object) -> str | None:
    """A cell or JSON value as stripped text; None when empty or null."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _segment(rec: dict, root: str, heads: tuple[str, ...], default_id: str, where: str,
             formats: dict[str, str]) -> tuple[Segment, dict[str, str | None]]:
    """One record as (segment without labels, {head: raw label}); ValueError names the problem."""
    missing = [k for k in REQUIRED if _text(rec.get(k)) is None]
    if missing:
        raise ValueError(f"empty or missing {', '.join(missing)}")
    times = []
    for key in ("start", "end"):
        try:
            times.append(float(_text(rec[key])))
        except ValueError:
            raise ValueError(f"{key} {rec[key]!r} is not a number of seconds") from None
    video = resolve(root, _text(rec["video"]))
    video_id = _text(rec.get("video_id")) or os.path.splitext(os.path.basename(video))[0]
    imu_paths = tuple(resolve(root, p) for p in (_text(rec.get("imu")) or "").split(";") if p.strip())
    imu_format = _text(rec.get("imu_format"))
    if imu_paths and imu_format is None:
        if len(imu_paths) == 2:
            imu_format = "epic100"
        else:
            if imu_paths[0] not in formats:
                formats[imu_paths[0]] = guess_imu_format(imu_paths[0])
            imu_format = formats[imu_paths[0]]
    if imu_format is not None and imu_format not in IMU_FORMATS:
        raise ValueError(f"imu_format {imu_format!r} is not one of {', '.join(IMU_FORMATS)}")
    if imu_format is not None and len(imu_paths) != (2 if imu_format == "epic100" else 1):
        raise ValueError(f"imu_format {imu_format} needs {2 if imu_format == 'epic100' else 1} "
                         f"imu path(s), got {len(imu_paths)}")
    split = normalise_split(rec.get("split")) or "train"
    fps_text = _text(rec.get("fps"))
    try:
        fps = float(fps_text) if fps_text is not None else None
    except ValueError:
        raise ValueError(f"fps {fps_text!r} is not a number") from None
    if fps is not None and not fps > 0:
        raise ValueError(f"fps {fps_text!r} must be positive")
    seg = Segment(_text(rec.get("id")) or default_id, video_id, video, split, times[0], times[1], {},
                  imu_format, imu_paths, where, _text(rec.get("participant")) or "", fps)
    return seg, {h: _text(rec.get(h)) for h in heads}
