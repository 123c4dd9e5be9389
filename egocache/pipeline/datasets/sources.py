"""What each video of a manifest really has on disk, found without decoding a frame (the preflight).

For every video the annotations name: is its frame source there (a video file, opened with PyAV for
its container metadata only, or an RGB-frame folder, counted), how long is it, does it have an audio
track, does it have IMU (the files exist, or the Ego4D metadata's has_imu), and does the IMU span fit
the video (from the IMU files' first and last rows). EPIC's gpmd2csv loses the last 1-2 GPMF payloads,
so its IMU ends 2-3 s before the video: a source whose IMU ends more than IMU_TAIL_LOSS_MAX_S early,
starts more than IMU_LATE_START_S late, or runs more than IMU_OVERRUN_S past the end is flagged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from egocache.errors import ClipError
from egocache.pipeline.datasets.common import Segment

IMU_TAIL_LOSS_MAX_S = 4.0      # EPIC IMU ends 2-3 s early (gpmd2csv drops 1-2 payloads); more is flagged
IMU_LATE_START_S = 1.0
IMU_OVERRUN_S = 1.0


@dataclass
class SourceCheck:
    """One video's sources: frames (kind, path, whether usable, duration, rate, audio) and IMU."""

    video_id: str
    path: str
    kind: str                       # "video" or "rgb-frames"
    problem: str | None             # why the frame source cannot be used (None: it can)
    duration_s: float | None
    fps: float | None
    audio: bool | None              # None: not known (RGB frames have no audio track)
    imu: str | None                 # None: IMU present; else why there is none
    imu_span_s: tuple[float, float] | None
    imu_flag: str | None            # the IMU span does not fit the video (reported, not fatal)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)


def check_sources(segments: list[Segment], *, read_imu_span: bool = True) -> dict[str, SourceCheck]:
    """A SourceCheck per video of `segments` (the first segment of a video gives its paths)."""
    first: dict[str, Segment] = {}
    for seg in segments:
        first.setdefault(seg.video_id, seg)
    return {vid: _check(seg, read_imu_span) for vid, seg in sorted(first.items())}


def _check(seg: Segment, read_imu_span: bool) -> SourceCheck:
    """The SourceCheck of one video."""
    kind = "rgb-frames" if os.path.isdir(seg.video_path) else "video"
    problem, duration, fps, audio = None, None, None, None
    try:
        if kind == "rgb-frames":
            from egocache.pipeline.rgb_frames import folder_info

            n, fps = folder_info(seg.video_path, seg.frames_fps)
            duration = n / fps
        else:
            duration, fps, audio = _video_facts(seg.video_path)
    except ClipError as exc:
        problem = str(exc)
    imu, span, flag = _imu(seg, duration, read_imu_span)
    return SourceCheck(seg.video_id, seg.video_path, kind, problem, duration, fps, audio, imu, span, flag)


def _video_facts(path: str) -> tuple[float, float, bool]:
    """(duration s, frames per second, has an audio track) from a container's metadata (PyAV)."""
    import av

    from egocache.errors import DecodeError

    if not os.path.isfile(path):
        raise DecodeError(f"{path}: video file missing")
    if os.path.getsize(path) == 0:
        raise DecodeError(f"{path}: empty file (0 bytes)")
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = float(container.duration or 0) / 1e6
            audio = bool(container.streams.audio)
    except av.FFmpegError as exc:
        raise DecodeError(f"{path}: cannot open video ({exc})") from exc
    if not fps > 0 or not duration > 0:
        raise DecodeError(f"{path}: the container gives no frame rate or duration")
    return duration, fps, audio


def _imu(seg: Segment, duration: float | None, read_span: bool
         ) -> tuple[str | None, tuple[float, float] | None, str | None]:
    """(why there is no IMU or None, IMU span, flag when the span does not fit the video)."""
    from egocache.errors import IMUError
    from egocache.pipeline.imu import stream_span

    if seg.imu_format is None:
        return "no IMU for this video (none listed, or the dataset metadata says has_imu false)", None, None
    missing = [p for p in seg.imu_paths if not os.path.isfile(p) or os.path.getsize(p) == 0]
    if missing:
        return f"no IMU file {missing[0]}", None, None
    if not read_span:
        return None, None, None
    try:
        span = stream_span(seg.imu_format, seg.imu_paths)
    except IMUError as exc:
        return f"unreadable IMU ({exc})", None, None
    flag = None
    if duration is not None:
        start, end = span
        if end < duration - IMU_TAIL_LOSS_MAX_S:
            flag = (f"IMU ends at {end:.1f} s, {duration - end:.1f} s before the {duration:.1f}-s video "
                    f"(more than the {IMU_TAIL_LOSS_MAX_S:g} s a dropped GPMF payload explains)")
        elif end > duration + IMU_OVERRUN_S:
            flag = f"IMU runs to {end:.1f} s, past the {duration:.1f}-s video (another video's IMU?)"
        elif start > IMU_LATE_START_S:
            flag = f"IMU starts at {start:.1f} s, not with the video"
    return None, span, flag
