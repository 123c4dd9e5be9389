"""What every dataset adapter returns to load_manifest, and the small parsing rules they share."""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from egocache.core.files import read_text
from egocache.errors import ManifestError

SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validation": "validation",
                 "train": "train", "training": "train", "test": "test"}


@dataclass(frozen=True)
class Segment:
    """One annotated segment, before it is cut into clips; `where` is "file:row" for problems."""

    segment_id: str
    video_id: str
    video_path: str
    split: str
    start_s: float
    stop_s: float
    labels: dict[str, int]
    imu_format: str | None
    imu_paths: tuple[str, ...]
    where: str
    participant: str = ""             # camera wearer (EPIC participant_id), for splits by wearer
    frames_fps: float | None = None   # frame rate of an RGB-frame folder source (None: a video file)


FRAMES_SOURCES = ("auto", "video", "rgb-frames")


@dataclass(frozen=True)
class AdapterOptions:
    """What an adapter may be told beyond the files: where frames come from, what to do without
    usable Ego4D critical frames, where the Ego4D video metadata (has_imu) is."""

    frames_source: str = "auto"            # video, rgb-frames, or auto (the video if present, else frames)
    rgb_frames_fps: float | None = None    # release rate of RGB-frame folders (EPIC: 60 EK-55, 50 extension)
    narration_window: bool = False         # ego4d: use start_sec..end_sec when pre/post frames are unusable
    ego4d_metadata: str | None = None      # ego4d.json with videos[].has_imu (default <root>/ego4d.json)


@dataclass
class AdapterResult:
    """An adapter's segments (file order), class names per head, skipped rows, extra files read."""

    segments: list[Segment] = field(default_factory=list)
    class_names: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)


def with_labels(seg: Segment, labels: dict[str, int]) -> Segment:
    """A copy of `seg` with its final labels (a direct call: dataclasses.replace is slow here)."""
    return Segment(seg.segment_id, seg.video_id, seg.video_path, seg.split, seg.start_s, seg.stop_s,
                   labels, seg.imu_format, seg.imu_paths, seg.where, seg.participant, seg.frames_fps)


def label_segments(found: list[tuple[Segment, dict[str, str | None]]], index: dict[str, dict[str, int]],
                   out: AdapterResult, unknown: str) -> None:
    """Turn each segment's label names into class ids via `index`; a name not in it skips the segment.

    `unknown` ends the problem line for such a name (e.g. "not in taxonomy.json"); a missing name is -1.
    """
    for seg, names in found:
        bad = [f"{h} {names[h]!r} {unknown}" for h in index if names[h] is not None and names[h] not in index[h]]
        if bad:
            out.problems.append(f"{seg.where}: {'; '.join(bad)}")
            continue
        out.segments.append(with_labels(seg, {h: index[h][names[h]] if names[h] is not None else -1
                                              for h in index}))


def split_from_name(path: str) -> str | None:
    """The split a file's name announces ("EPIC_100_validation.csv" -> "validation"), if any."""
    tokens = re.split(r"[^a-z]+", os.path.splitext(os.path.basename(path))[0].lower())
    found = [SPLIT_ALIASES[t] for t in tokens if t in SPLIT_ALIASES]
    return found[-1] if found else None


def normalise_split(value: object) -> str | None:
    """A split value as stored in clips ("val" -> "validation"); None when empty."""
    text = str(value).strip() if value is not None else ""
    return SPLIT_ALIASES.get(text.lower(), text) if text else None


def check_heads(dataset: str, heads: tuple[str, ...], known: tuple[str, ...]) -> None:
    """Refuse heads an adapter cannot label."""
    unknown = [h for h in heads if h not in known]
    if unknown:
        raise ManifestError(f"{dataset} annotations define heads {', '.join(known)}; "
                            f"cannot label {', '.join(unknown)}")


def names_from_pairs(pairs: Counter) -> list[str]:
    """Class names indexed by id from (id, name) counts: the most frequent name, "class_<i>" if none."""
    best: dict[int, tuple[int, str]] = {}
    for (idx, name), n in pairs.items():
        if idx not in best or (-n, name) < (-best[idx][0], best[idx][1]):
            best[idx] = (n, name)
    size = max(best) + 1 if best else 0
    return [best[i][1] if i in best else f"class_{i}" for i in range(size)]


def csv_rows(path: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a CSV file read through core.files.read_text (BOM, CRLF and
    encoding handled; a non-UTF-8 byte is a ManifestError naming the file and line)."""
    reader = csv.DictReader(io.StringIO(read_text(path, ManifestError)))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    return header, [(reader.line_num, row) for row in reader]


def resolve(root: str, path: str) -> str:
    """An absolute, normalised path; relative paths are taken from `root`."""
    return os.path.abspath(os.path.join(root, os.path.expanduser(path.strip())))
