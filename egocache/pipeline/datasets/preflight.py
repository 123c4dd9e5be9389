"""The preflight summary of a manifest: what the annotations name, what is on disk, what is kept.

`extract --dry-run` prints it (or its JSON with --json) and stops; a real extraction prints it first.
Built from the per-video source checks (sources.py) and the selected segments and clips, it never
decodes a frame.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from egocache.pipeline.datasets.common import Segment
from egocache.pipeline.datasets.sources import SourceCheck


@dataclass
class SplitCounts:
    """One split of the kept segments: videos, segments, clips and segments per class (main head)."""

    videos: int
    segments: int
    clips: int
    classes: dict[str, int] = field(default_factory=dict)


@dataclass
class Preflight:
    """Per video source facts and per split counts of a manifest (see the module docstring)."""

    dataset: str
    videos: int
    videos_found: int
    videos_missing: list[str]          # "video_id: why" for frame sources that cannot be used
    videos_with_imu: int
    videos_without_imu: list[str]      # "video_id: why"
    videos_without_audio: list[str]
    imu_flags: list[str]               # "video_id: what does not fit"
    splits: dict[str, SplitCounts]
    segments_annotated: int
    problems: int
    main_head: str
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (`extract --dry-run --json`)."""
        return asdict(self)

    def summary(self, max_lines: int = 10) -> str:
        """The human summary: videos on disk, IMU coverage, splits, and the first of each kind of issue."""
        lines = [f"preflight ({self.dataset}): {self.videos} videos named, {self.videos_found} found, "
                 f"{len(self.videos_missing)} missing; {self.videos_with_imu} with IMU, "
                 f"{len(self.videos_without_imu)} without; {len(self.videos_without_audio)} without audio"]
        for split, c in sorted(self.splits.items()):
            counts = sorted(c.classes.values())
            spread = f" ({counts[0]}-{counts[-1]} segments each)" if counts else ""
            lines.append(f"  {split:<10} {c.videos} videos, {c.segments} segments -> {c.clips} clips, "
                         f"{len(c.classes)} {self.main_head} classes{spread}")
        lines.append(f"  {self.segments_annotated} segments annotated, "
                     f"{sum(c.segments for c in self.splits.values())} kept; {self.problems} problem line(s)")
        for title, items in (("missing videos", self.videos_missing), ("videos without IMU", self.videos_without_imu),
                             ("IMU that does not fit its video", self.imu_flags)):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines += [f"    {item}" for item in items[:max_lines]]
                if len(items) > max_lines:
                    lines.append(f"    ... {len(items) - max_lines} more (--json lists all)")
        return "\n".join(lines)


def make_preflight(dataset: str, sources: dict[str, SourceCheck], annotated: int, kept: list[Segment],
                   clips: list[Any], class_names: dict[str, list[str]], main_head: str, problems: int,
                   settings: dict[str, Any]) -> Preflight:
    """The Preflight of a manifest from its source checks, kept segments and clips."""
    names = class_names.get(main_head, [])
    splits: dict[str, SplitCounts] = {}
    clip_counts = Counter(c.split for c in clips)
    for split in sorted({s.split for s in kept}):
        segs = [s for s in kept if s.split == split]
        classes = Counter(names[s.labels[main_head]] for s in segs
                          if 0 <= s.labels.get(main_head, -1) < len(names))
        splits[split] = SplitCounts(len({s.video_id for s in segs}), len(segs), clip_counts[split],
                                    dict(sorted(classes.items())))
    checks = list(sources.values())
    return Preflight(
        dataset=dataset, videos=len(checks), videos_found=sum(c.problem is None for c in checks),
        videos_missing=[f"{c.video_id}: {c.problem}" for c in checks if c.problem is not None],
        videos_with_imu=sum(c.imu is None for c in checks),
        videos_without_imu=[f"{c.video_id}: {c.imu}" for c in checks if c.imu is not None],
        videos_without_audio=[c.video_id for c in checks if c.audio is False],
        imu_flags=[f"{c.video_id}: {c.imu_flag}" for c in checks if c.imu_flag],
        splits=splits, segments_annotated=annotated, problems=problems, main_head=main_head, settings=settings)
