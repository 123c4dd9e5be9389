"""Ego4D Forecasting + Hands & Objects JSON (fho_main.json style) -> segments, one per narrated action.

Layout read: {"videos": [{"video_uid", "video_metadata": {"fps"}, "annotated_intervals":
[{"narrated_actions": [{"uid", "narration_annotation_uid", "start_sec", "end_sec",
"critical_frames": {"pre_frame", "pnr_frame", "post_frame", ...} | null, "structured_verb",
"structured_noun"?, "frames"?, "is_valid_action", "is_rejected", "is_invalid_annotation"}]}]}]}.

A segment spans the interaction's pre_frame..post_frame, converted with the video's fps
(video_metadata.fps; Ego4D canonical videos are 30 fps when it is absent) so the video is never
opened here; without usable critical frames it falls back to start_sec..end_sec. The segment id is
uid, else narration_annotation_uid, else "<video_uid>:<interval>:<action>". The verb is
structured_verb; the noun is structured_noun, else the object-of-change's structured_noun on the
PNR frame's boxes, else -1. Rejected, invalid and not-valid actions are reported and skipped.
Class names come from a taxonomy JSON ({"verbs": [...], "nouns": [...]}) named
fho_lta_taxonomy.json or taxonomy.json next to the annotations (names outside it are problems),
else from the sorted set of names seen. The split is the action's or video's "split" field, else
the file name's (train / val), else "train". Videos: <root>/full_scale/<video_uid>.mp4;
IMU: <root>/imu/<video_uid>.csv (format "ego4d").
"""

from __future__ import annotations

import json
import math
import os

from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import (AdapterResult, Segment, check_heads, normalise_split,
                                               label_segments, split_from_name)

HEADS = ("verb", "noun")
EGO4D_FPS = 30.0
TAXONOMY_FILES = ("fho_lta_taxonomy.json", "taxonomy.json")
_TAXONOMY_KEYS = {"verb": "verbs", "noun": "nouns"}


def load_ego4d(annotations: list[str], root: str, heads: tuple[str, ...]) -> AdapterResult:
    """Segments, class names and problems of Ego4D FHO annotation files."""
    check_heads("ego4d", heads, HEADS)
    out = AdapterResult()
    taxonomy, tax_path = _taxonomy(annotations, heads)
    if tax_path:
        out.extra_files.append(tax_path)
    found: list[tuple[Segment, dict[str, str | None]]] = []
    for path in annotations:
        found += _read_file(path, root, out.problems)
    seen = {h: sorted({names[h] for _, names in found if names[h]}) for h in heads}
    names = {h: taxonomy.get(h) or seen[h] for h in heads}
    out.class_names = {h: names[h] for h in heads if names[h]}
    index = {h: {n: i for i, n in enumerate(out.class_names[h])} for h in out.class_names}
    label_segments(found, index, out, f"not in {tax_path}")
    return out


def _taxonomy(annotations: list[str], heads: tuple[str, ...]) -> tuple[dict[str, list[str]], str]:
    """Class names per head from the first taxonomy file next to an annotation file, if any."""
    for path in annotations:
        for name in TAXONOMY_FILES:
            candidate = os.path.join(os.path.dirname(os.path.abspath(path)), name)
            if os.path.isfile(candidate):
                data = _load_json(candidate)
                lists = {h: data.get(_TAXONOMY_KEYS[h]) for h in heads}
                if not all(isinstance(v, list) and all(isinstance(n, str) for n in v)
                           for v in lists.values() if v is not None):
                    raise ManifestError(f"{candidate}: taxonomy lists must be lists of names")
                return {h: v for h, v in lists.items() if v}, candidate
    return {}, ""


def _load_json(path: str) -> dict:
    """A JSON object from a file, or ManifestError naming the file and the parse error."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object at the top level")
    return data


def _read_file(path: str, root: str, problems: list[str]
               ) -> list[tuple[Segment, dict[str, str | None]]]:
    """Every narrated action of one FHO file as (segment without labels, label names)."""
    data = _load_json(path)
    videos = data.get("videos")
    if not isinstance(videos, list):
        raise ManifestError(f"{path}: no \"videos\" list (not an Ego4D FHO annotation file)")
    file_split = split_from_name(path)
    found = []
    for i, video in enumerate(videos):
        where_v = f"{path}:videos[{i}]"
        intervals = _items(video.get("annotated_intervals") if isinstance(video, dict) else None)
        actions = [(j, k, a) for j, iv in enumerate(intervals) if isinstance(iv, dict)
                   for k, a in enumerate(_items(iv.get("narrated_actions")))]
        uid = video.get("video_uid") if isinstance(video, dict) else None
        if not isinstance(uid, str) or not uid.strip():
            problems.append(f"{where_v}: no video_uid; {len(actions)} action(s) skipped")
            continue
        meta = video.get("video_metadata") or {}
        fps = _number(meta.get("fps")) if isinstance(meta, dict) else None
        fps = fps if fps and fps > 0 else EGO4D_FPS
        split = normalise_split(video.get("split")) or file_split
        video_path = os.path.join(root, "full_scale", uid + ".mp4")
        imu_path = (os.path.join(root, "imu", uid + ".csv"),)
        for j, k, action in actions:
            where = f"{where_v}.annotated_intervals[{j}].narrated_actions[{k}]"
            try:
                seg_id, start, stop, act_split, names = _action(action, fps, f"{uid}:{j}:{k}")
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            seg = Segment(seg_id, uid, video_path, act_split or split or "train", start, stop, {},
                          "ego4d", imu_path, where)
            found.append((seg, names))
    return found


def _action(action: object, fps: float, fallback_id: str
            ) -> tuple[str, float, float, str | None, dict[str, str | None]]:
    """(segment id, start s, stop s, split, {head: name}) of one action; ValueError if unusable."""
    if not isinstance(action, dict):
        raise ValueError("action is not a JSON object")
    if action.get("is_rejected") is True:
        raise ValueError("annotation rejected (is_rejected)")
    if action.get("is_invalid_annotation") is True:
        raise ValueError("annotation marked invalid (is_invalid_annotation)")
    if action.get("is_valid_action") is False:
        raise ValueError("not a valid action (is_valid_action is false)")
    verb = action.get("structured_verb")
    if not isinstance(verb, str) or not verb.strip():
        raise ValueError("no structured_verb")
    start, stop = _span(action, fps)
    seg_id = next((str(action[key]).strip() for key in ("uid", "narration_annotation_uid")
                   if isinstance(action.get(key), (str, int)) and str(action[key]).strip()), fallback_id)
    return seg_id, start, stop, normalise_split(action.get("split")), {"verb": verb.strip(),
                                                                       "noun": _noun(action)}


def _span(action: dict, fps: float) -> tuple[float, float]:
    """pre_frame..post_frame in seconds, else start_sec..end_sec."""
    frames = action.get("critical_frames")
    if isinstance(frames, dict):
        pre, post = _number(frames.get("pre_frame")), _number(frames.get("post_frame"))
        if pre is not None and post is not None:
            return pre / fps, post / fps
    start, stop = _number(action.get("start_sec")), _number(action.get("end_sec"))
    if start is None or stop is None:
        raise ValueError("no usable critical_frames pre_frame/post_frame nor start_sec/end_sec")
    return start, stop


def _noun(action: dict) -> str | None:
    """structured_noun, else the object of change's structured_noun on the PNR frame, else None."""
    noun = action.get("structured_noun")
    if isinstance(noun, str) and noun.strip():
        return noun.strip()
    for frame in _items(action.get("frames")):
        if isinstance(frame, dict) and frame.get("frame_type") == "pnr_frame":
            for box in _items(frame.get("boxes")):
                if not isinstance(box, dict) or box.get("object_type") != "object_of_change":
                    continue
                name = box.get("structured_noun")
                if isinstance(name, str) and name.strip():
                    return name.strip()
    return None


def _number(value: object) -> float | None:
    """A finite float from a JSON number or numeric string; None otherwise (bools are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _items(value: object) -> list:
    """A JSON list, or an empty list for null or anything else."""
    return value if isinstance(value, list) else []
