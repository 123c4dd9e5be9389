"""Ego4D Forecasting + Hands & Objects JSON (fho_main.json style) -> segments, one per narrated action.

Layout read: {"videos": [{"video_uid", "video_metadata": {"fps"}, "annotated_intervals":
[{"narrated_actions": [{"uid", "narration_annotation_uid", "start_sec", "end_sec",
"critical_frames": {"pre_frame", "pnr_frame", "post_frame", ...} | null, "structured_verb",
"structured_noun"?, "frames"?, "is_valid_action", "is_rejected", "is_invalid_annotation"}]}]}]}.

A segment spans the interaction's pre_frame..post_frame: critical_frames are frame numbers of the
canonical video, which Ego4D normalises to 30 fps (EGO4D/hands-and-objects), so they are divided by
30 and the video is never opened here. An action without usable pre/post frames is skipped with a
reason, unless `narration_window` asks for its start_sec..end_sec instead (never silently). The
segment id is uid, else narration_annotation_uid, else "<video_uid>:<interval>:<action>". The verb is
structured_verb; the noun is structured_noun, else the object-of-change's structured_noun on the
PNR frame's boxes, else -1. Rejected, invalid and not-valid actions are reported and skipped.
Class names come from a taxonomy JSON ({"verbs": [...], "nouns": [...]}) named
fho_lta_taxonomy.json or taxonomy.json next to the annotations (names outside it are problems),
else from the sorted set of names seen. The split is the action's or video's "split" field, else
the file name's (train / val); fho_main.json has neither, so its segments get no split here (""):
a protocol or a split file must give one (selection.py), or the manifest is refused.
Videos: <root>/full_scale/<video_uid>.mp4; IMU: <root>/imu/<video_uid>.csv (format "ego4d"), for the
videos whose ego4d.json entry says has_imu (videos the metadata marks without IMU get none).
"""

from __future__ import annotations

import json
import math
import os

from egocache.core.files import read_text
from egocache.errors import ManifestError
from egocache.pipeline.datasets.common import (AdapterOptions, AdapterResult, Segment, check_heads,
                                               label_segments, normalise_split, split_from_name)

HEADS = ("verb", "noun")
EGO4D_FPS = 30.0                 # canonical videos (docs/data/videos.md); critical_frames count these
METADATA_FILE = "ego4d.json"
TAXONOMY_FILES = ("fho_lta_taxonomy.json", "taxonomy.json")
_TAXONOMY_KEYS = {"verb": "verbs", "noun": "nouns"}


def load_ego4d(annotations: list[str], root: str, heads: tuple[str, ...],
               options: AdapterOptions = AdapterOptions()) -> AdapterResult:
    """Segments, class names and problems of Ego4D FHO annotation files."""
    check_heads("ego4d", heads, HEADS)
    out = AdapterResult()
    taxonomy, tax_path = _taxonomy(annotations, heads)
    if tax_path:
        out.extra_files.append(tax_path)
    has_imu, meta_path = _imu_metadata(root, options.ego4d_metadata)
    if meta_path:
        out.extra_files.append(meta_path)
    found: list[tuple[Segment, dict[str, str | None]]] = []
    for path in annotations:
        found += _read_file(path, root, out.problems, options.narration_window, has_imu, meta_path)
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


def _imu_metadata(root: str, path: str | None) -> tuple[dict[str, bool] | None, str]:
    """{video_uid: has_imu} from ego4d.json (given, else <root>/ego4d.json if present), and its path."""
    if path is None:
        path = os.path.join(root, METADATA_FILE)
        if not os.path.isfile(path):
            return None, ""
    videos = _load_json(path).get("videos")
    if not isinstance(videos, list):
        raise ManifestError(f"{path}: no \"videos\" list (not the Ego4D metadata ego4d.json)")
    out = {}
    for i, v in enumerate(videos):
        if not isinstance(v, dict) or not isinstance(v.get("video_uid"), str) or not isinstance(v.get("has_imu"), bool):
            raise ManifestError(f"{path}: videos[{i}] needs a video_uid and a true/false has_imu")
        out[v["video_uid"]] = v["has_imu"]
    return out, path


def _load_json(path: str) -> dict:
    """A JSON object from a file, or ManifestError naming the file and the parse error."""
    try:
        data = json.loads(read_text(path, ManifestError))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object at the top level")
    return data


def _read_file(path: str, root: str, problems: list[str], narration_window: bool,
               has_imu: dict[str, bool] | None, meta_path: str) -> list[tuple[Segment, dict[str, str | None]]]:
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
        split = normalise_split(video.get("split")) or file_split
        video_path = os.path.join(root, "full_scale", uid + ".mp4")
        if has_imu is not None and uid not in has_imu:
            problems.append(f"{where_v}: video {uid} is not in {meta_path}; its IMU is taken as absent")
        with_imu = has_imu is None or has_imu.get(uid, False)
        imu_format, imu_path = ("ego4d", (os.path.join(root, "imu", uid + ".csv"),)) if with_imu else (None, ())
        for j, k, action in actions:
            where = f"{where_v}.annotated_intervals[{j}].narrated_actions[{k}]"
            try:
                seg_id, start, stop, act_split, names = _action(action, narration_window, f"{uid}:{j}:{k}")
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            seg = Segment(seg_id, uid, video_path, act_split or split or "", start, stop, {},
                          imu_format, imu_path, where)
            found.append((seg, names))
    return found


def _action(action: object, narration_window: bool, fallback_id: str
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
    start, stop = _span(action, narration_window)
    seg_id = next((str(action[key]).strip() for key in ("uid", "narration_annotation_uid")
                   if isinstance(action.get(key), (str, int)) and str(action[key]).strip()), fallback_id)
    return seg_id, start, stop, normalise_split(action.get("split")), {"verb": verb.strip(),
                                                                       "noun": _noun(action)}


def _span(action: dict, narration_window: bool) -> tuple[float, float]:
    """pre_frame..post_frame in seconds (canonical 30 fps frames); start_sec..end_sec only if asked."""
    frames = action.get("critical_frames")
    pre = post = None
    if isinstance(frames, dict):
        pre, post = _number(frames.get("pre_frame")), _number(frames.get("post_frame"))
    if pre is not None and post is not None and post > pre:
        return pre / EGO4D_FPS, post / EGO4D_FPS
    why = ("critical_frames is null" if frames is None else "critical_frames lacks a numeric pre_frame/post_frame"
           if pre is None or post is None else f"post_frame {post:g} is not after pre_frame {pre:g}")
    if not narration_window:
        raise ValueError(f"{why}; skipped (--ego4d-narration-window uses the narration's start_sec..end_sec)")
    start, stop = _number(action.get("start_sec")), _number(action.get("end_sec"))
    if start is None or stop is None:
        raise ValueError(f"{why} and no start_sec/end_sec")
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
