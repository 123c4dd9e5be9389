"""Annotations -> a manifest of clips: what to extract, from which video and IMU files, with what labels.

Adapters (epic100.py, ego4d.py, generic.py) turn annotation files into segments;
this module checks them, cuts them into clips and sorts the clips by video so each video is decoded
once, front to back. A training segment yields one clip at its centre (or `train_clips` evenly spaced
clips, more training data from few segments); a segment of any other split ("validation", "test",
...) yields `eval_clips` evenly spaced clips, whose predictions the benchmark averages per segment.

Rows that cannot be used (unparsable times, unknown labels, repeated segment ids, stop <= start,
rejected annotations) are skipped and listed in Manifest.problems as "file:row: reason"; nothing is
dropped silently. Missing video or IMU files are not problems here: extraction reports them per clip.
Facts the annotations do not hold (which verbs form motion pairs) come from the dataset metadata
file (meta.py) and travel with the manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import AdapterOptions, AdapterResult, Segment
from egocache.pipeline.datasets.ego4d import load_ego4d
from egocache.pipeline.datasets.epic100 import load_epic100
from egocache.pipeline.datasets.generic import load_generic
from egocache.pipeline.datasets.meta import read_dataset_meta
from egocache.pipeline.datasets.preflight import Preflight, make_preflight
from egocache.pipeline.datasets.selection import Selection, apply_selection, protocol_selection
from egocache.pipeline.datasets.sources import check_sources
from egocache.pipeline.imu import channel_units
from egocache.pipeline.sampling import segment_clip_centres

ADAPTERS = {"epic100": load_epic100, "ego4d": load_ego4d, "manifest": load_generic}
MANIFEST_VERSION = 2   # bump when the same files would give different clips


@dataclass(frozen=True)
class Clip:
    """One clip to extract: a teacher window centred at centre_s in one video (or RGB-frame folder)."""

    clip_id: str
    segment_id: str
    video_id: str
    video_path: str
    split: str
    centre_s: float
    segment_start_s: float
    segment_stop_s: float
    labels: dict[str, int]
    imu_format: str | None           # None: no IMU for this clip (--imu optional / none)
    imu_paths: tuple[str, ...]
    frames_fps: float | None = None  # frame rate of an RGB-frame folder source (None: a video file)


def clips_by_video(clips: Sequence[Clip]) -> dict[str, list[int]]:
    """Indices of `clips` grouped by video file (or frame folder), in order: each video is read once."""
    groups: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        groups.setdefault(clip.video_path, []).append(i)
    return groups


@dataclass
class Manifest:
    """The clips of a dataset, its class names per head, its fingerprint, the rows and videos it left
    out, the motion pairs its metadata file declares, the selection it applied, and its preflight."""

    dataset: str
    clips: list[Clip]
    class_names: dict[str, list[str]]
    sha256: str
    problems: list[str]
    motion_pairs: list[tuple[str, str]] = field(default_factory=list)
    selection: Selection = Selection()
    imu_units: dict[str, str] = field(default_factory=dict)
    preflight: Preflight | None = None

    @property
    def motion_pair_verbs(self) -> list[str] | None:
        """The motion-pair verbs, pair by pair (a, b, c, d, ...), or None when none are declared."""
        return [v for pair in self.motion_pairs for v in pair] or None


def load_manifest(dataset: str, annotations: list[str], root: str, *, eval_clips: int = 3,
                  train_clips: int = 1, dataset_meta: str | None = None,
                  adapter: AdapterOptions = AdapterOptions(), selection: Selection = Selection(),
                  protocol: str | None = None) -> Manifest:
    """Read annotation files of `dataset` ("epic100", "ego4d" or "manifest") into sorted clips.

    Each video's sources are checked on disk without decoding (sources.py), then `selection` (with
    `protocol`'s rules applied, selection.py) decides which segments are kept and in which split.
    `dataset_meta` is the dataset metadata file (default `<root>/egocache-dataset.json` if present).
    """
    if dataset not in ADAPTERS:
        raise ManifestError(f"unknown dataset {dataset!r} (known: {', '.join(ADAPTERS)})")
    if eval_clips < 1 or train_clips < 1:
        raise ManifestError(f"eval_clips and train_clips must be >= 1, got {eval_clips} and {train_clips}")
    if not annotations:
        raise ManifestError(f"{dataset}: no annotation files given")
    selection = protocol_selection(protocol, dataset, selection)
    heads = selection.heads
    if not heads or len(set(heads)) != len(heads):
        raise ManifestError(f"heads must be distinct and at least one, got {heads}")
    for path in annotations:
        if not os.path.isfile(path):
            raise ManifestError(f"{path}: annotation file not found")
    root = os.path.abspath(root)
    result: AdapterResult = ADAPTERS[dataset](list(annotations), root, tuple(heads), adapter)
    problems = list(result.problems)
    segments = _checked(result.segments, problems)
    sources = check_sources(segments, read_imu_span=selection.imu != "none")
    kept = apply_selection(segments, sources, selection, result.class_names, problems)
    clips = []
    for seg in kept:
        n = train_clips if seg.split == "train" else eval_clips
        centres = segment_clip_centres(seg.start_s, seg.stop_s, n)
        clips += [Clip(f"{seg.segment_id}/{k}", seg.segment_id, seg.video_id, seg.video_path, seg.split,
                       c, seg.start_s, seg.stop_s, dict(seg.labels), seg.imu_format, seg.imu_paths,
                       seg.frames_fps) for k, c in enumerate(centres)]
    clips.sort(key=lambda c: (c.video_path, c.centre_s, c.clip_id))
    meta = read_dataset_meta(root, dataset_meta)
    verbs = result.class_names.get("verb", [])
    pairs = [p for p in meta.motion_pairs if p[0] in verbs and p[1] in verbs]
    problems += [f"{meta.path}: motion pair {a}/{b} left out: "
                 f"{', '.join(v for v in (a, b) if v not in verbs)} not among the verb classes"
                 for a, b in meta.motion_pairs if (a, b) not in pairs]
    settings = {"eval_clips": eval_clips, "train_clips": train_clips, "protocol": protocol,
                "selection": dataclasses.asdict(selection), "adapter": dataclasses.asdict(adapter)}
    files = (list(annotations) + result.extra_files + ([meta.path] if meta.path else [])
             + ([selection.split_file] if selection.split_file else []))
    sha = _fingerprint(dataset, files, settings, clips)
    fmt = next((c.imu_format for c in clips if c.imu_format), None)
    preflight = make_preflight(dataset, sources, len(result.segments), kept, clips, result.class_names,
                               heads[0], len(problems), settings)
    return Manifest(dataset, clips, result.class_names, sha, problems, pairs, selection,
                    channel_units(fmt, meta.imu_units), preflight)


def _checked(segments: list[Segment], problems: list[str]) -> list[Segment]:
    """Segments with a unique id and a valid time span; the others become problem lines."""
    seen: dict[str, str] = {}
    kept = []
    for seg in segments:
        if seg.segment_id in seen:
            problems.append(f"{seg.where}: duplicate segment id {seg.segment_id!r} "
                            f"(first at {seen[seg.segment_id]})")
            continue
        seen[seg.segment_id] = seg.where
        if not (math.isfinite(seg.start_s) and math.isfinite(seg.stop_s)):
            problems.append(f"{seg.where}: segment time is not a finite number")
        elif seg.start_s < 0:
            problems.append(f"{seg.where}: segment starts before the video ({seg.start_s:.3f} s)")
        elif seg.stop_s <= seg.start_s:
            problems.append(f"{seg.where}: stop {seg.stop_s:.3f} s is not after "
                            f"start {seg.start_s:.3f} s")
        else:
            kept.append(seg)
    return kept


def _fingerprint(dataset: str, files: list[str], settings: dict, clips: list[Clip]) -> str:
    """sha256 of the settings, the bytes of every file read and the clips kept (paths and root left out:
    which videos have IMU on disk decides the clips, so the clip list is part of the fingerprint)."""
    h = hashlib.sha256(json.dumps({"version": MANIFEST_VERSION, "dataset": dataset, **settings},
                                  sort_keys=True, default=str).encode())
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    h.update(json.dumps([(c.clip_id, c.split, c.imu_format is not None) for c in clips]).encode())
    return h.hexdigest()
