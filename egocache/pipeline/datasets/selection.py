"""Which segments a manifest keeps and in which split: IMU coverage, protocols, split files, class counts.

Applied in this order to the adapters' segments, each step reporting what it leaves out (one line
per video or per class, never per clip):
1. sources: `imu` "required" leaves out the videos without IMU; `require_audio` those without audio.
2. splits: a split file (video, segment or clip id -> split) wins; else `eval_participants` sends their
   segments to validation and everyone else's to train; else the adapter's split. Segments with no
   split left (Ego4D's fho_main.json has none) are an error saying what to pass.
3. classes with fewer than `min_class_instances` segments (main head) are left out.
4. `class_split`: each class's segments are split at random into train and validation (the fraction
   given goes to validation), seeded by `split_seed`.

`PROTOCOLS` holds the paper's selections (EgoDistill App. B): EPIC-KITCHENS-100 keeps the videos with
IMU and audio, evaluates on the camera wearers P30, P35 and P37 and trains on everyone else, verb
labels; Ego4D keeps the Hands+Objects interactions (pre to post frame) with IMU and audio, classes
with at least 2 instances, and splits each class 70 % / 30 % at random.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from egocache.errors import ConfigError, ManifestError
from egocache.pipeline.datasets.common import Segment, csv_rows, normalise_split
from egocache.pipeline.datasets.sources import SourceCheck

IMU_MODES = ("required", "optional", "none")
PROTOCOL_NAMES = ("egodistill",)


@dataclass(frozen=True)
class Selection:
    """The selection rules of one manifest (see the module docstring)."""

    imu: str = "required"
    require_audio: bool = False
    split_file: str | None = None
    eval_participants: tuple[str, ...] = ()
    min_class_instances: int = 1
    class_split: float | None = None
    split_seed: int = 0
    heads: tuple[str, ...] = ("verb", "noun")
    allow_unsplit: bool = False      # keep segments without a split (ground truth for predict needs none)


def protocol_selection(protocol: str | None, dataset: str, base: Selection) -> Selection:
    """`base` with the named protocol's rules for `dataset` applied (ConfigError if it has none)."""
    if protocol is None:
        return base
    if protocol not in PROTOCOL_NAMES:
        raise ConfigError(f"--protocol: unknown protocol {protocol!r} (known: {', '.join(PROTOCOL_NAMES)})")
    if dataset == "epic100":
        return dataclasses.replace(base, imu="required", require_audio=True, heads=("verb",),
                                   eval_participants=base.eval_participants or ("P30", "P35", "P37"))
    if dataset == "ego4d":
        return dataclasses.replace(base, imu="required", require_audio=True, heads=("verb",),
                                   min_class_instances=max(base.min_class_instances, 2),
                                   class_split=0.3 if base.class_split is None else base.class_split)
    raise ConfigError(f"--protocol {protocol}: defined for epic100 and ego4d, not {dataset}")


def apply_selection(segments: list[Segment], sources: dict[str, SourceCheck], sel: Selection,
                    class_names: dict[str, list[str]], problems: list[str]) -> list[Segment]:
    """The segments `sel` keeps, with their final split and IMU; what it leaves out goes to `problems`."""
    segments = _by_sources(segments, sources, sel, problems)
    segments = _splits(segments, sel, problems)
    main = sel.heads[0] if sel.heads else "verb"
    if sel.min_class_instances > 1 and main in class_names:
        segments = _min_instances(segments, sel.min_class_instances, main, class_names[main], problems)
    if sel.class_split is not None:
        segments = _class_split(segments, sel.class_split, sel.split_seed, main)
    unsplit = [s for s in segments if not s.split]
    if unsplit and not sel.allow_unsplit:
        raise ManifestError(f"{len(unsplit)} segment(s) have no split (e.g. {unsplit[0].where}; Ego4D's "
                            "fho_main.json has no split field): pass --protocol egodistill, --split-file CSV "
                            "or --eval-participants")
    return segments


def _by_sources(segments: list[Segment], sources: dict[str, SourceCheck], sel: Selection,
                problems: list[str]) -> list[Segment]:
    """Drop or strip the IMU of segments whose video lacks IMU (per `sel.imu`), drop those without audio."""
    counts = Counter(s.video_id for s in segments)
    dropped: set[str] = set()
    for vid, check in sources.items():
        if sel.imu == "required" and check.imu is not None:
            problems.append(f"{vid}: {check.imu}; its {counts[vid]} segment(s) left out (--imu required)")
            dropped.add(vid)
        elif sel.require_audio and check.audio is False:
            problems.append(f"{vid}: {check.path} has no audio track; its {counts[vid]} segment(s) left out "
                            "(the protocol keeps videos with audio)")
            dropped.add(vid)
    out = []
    for s in segments:
        if s.video_id in dropped:
            continue
        if sel.imu == "none" or (sel.imu == "optional" and sources[s.video_id].imu is not None):
            s = dataclasses.replace(s, imu_format=None, imu_paths=())
        out.append(s)
    return out


def _splits(segments: list[Segment], sel: Selection, problems: list[str]) -> list[Segment]:
    """Segments with the split the split file or the evaluation participants give them."""
    if sel.split_file:
        table = read_split_file(sel.split_file)
        out = []
        for s in segments:
            split = table.get(s.segment_id) or table.get(s.video_id)
            if split is None:
                continue
            out.append(dataclasses.replace(s, split=split))
        left = len(segments) - len(out)
        if left:
            problems.append(f"{sel.split_file}: {left} segment(s) whose segment and video ids it does not list "
                            "are left out")
        return out
    if sel.eval_participants:
        wanted = set(sel.eval_participants)
        if not any(s.participant for s in segments):
            raise ManifestError("--eval-participants: these annotations name no camera wearer (participant)")
        return [dataclasses.replace(s, split="validation" if s.participant in wanted else "train")
                for s in segments]
    return segments


def read_split_file(path: str) -> dict[str, str]:
    """{video, segment or clip id: split} from a CSV with columns id (or video_id / segment_id) and split."""
    header, rows = csv_rows(path)
    key = next((c for c in ("id", "segment_id", "video_id", "clip_id") if c in header), None)
    if key is None or "split" not in header:
        raise ManifestError(f"{path}: a split file needs columns id (or segment_id / video_id) and split")
    out = {}
    for line, row in rows:
        ident, split = (row.get(key) or "").strip(), normalise_split(row.get("split"))
        if not ident or not split:
            raise ManifestError(f"{path}:{line}: empty id or split")
        if out.get(ident, split) != split:
            raise ManifestError(f"{path}:{line}: {ident} is given two splits ({out[ident]} and {split})")
        out[ident] = split
    return out


def _min_instances(segments: list[Segment], k: int, head: str, names: list[str],
                   problems: list[str]) -> list[Segment]:
    """Segments of the classes (of `head`) that have at least `k` segments."""
    counts = Counter(s.labels.get(head, -1) for s in segments)
    rare = sorted(c for c, n in counts.items() if c >= 0 and n < k)
    if rare:
        shown = ", ".join(f"{names[c]} ({counts[c]})" for c in rare[:10])
        problems.append(f"{len(rare)} {head} class(es) with fewer than {k} segments left out "
                        f"(--min-class-instances {k}): {shown}{' ...' if len(rare) > 10 else ''}")
    return [s for s in segments if counts[s.labels.get(head, -1)] >= k or s.labels.get(head, -1) < 0]


def _class_split(segments: list[Segment], fraction: float, seed: int, head: str) -> list[Segment]:
    """Each class's segments split at random: round(fraction * n) (at least 1 of 2+) to validation."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(segments):
        by_class[s.labels.get(head, -1)].append(i)
    rng = random.Random(seed)
    to_val: set[int] = set()
    for cls in sorted(by_class):
        rows = sorted(by_class[cls], key=lambda i: segments[i].segment_id)
        rng.shuffle(rows)
        n_val = max(1, round(fraction * len(rows))) if len(rows) >= 2 else 0
        to_val.update(rows[:n_val])
    return [dataclasses.replace(s, split="validation" if i in to_val else "train") for i, s in enumerate(segments)]
