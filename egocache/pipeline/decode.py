"""Decode the frames that many clips of one video need with decord, each native frame at most once.

Clips are grouped into merged spans (clips whose frame ranges overlap or touch); spans are decoded
in time order, each with `get_batch` over the sorted unique frames it needs, so overlapping clips
share one decode and the reader only ever seeks forward. decord scales while it decodes (the reader
is opened at the size whose short side is `size`); the centre crop is a numpy slice (`crop=False`
keeps the whole frame, for crops elsewhere across its long side).

decord 0.6 facts this module relies on:
- `get_batch` continues from the reader's position: a jump inside the current keyframe interval
  decodes forward, a jump into another interval seeks to that interval's keyframe first. Frames
  decoded only to be skipped are neither colour-converted nor scaled, so a sparse sorted index list
  costs less than decoding the whole span.
- After a decoding error a reader stays broken (every later call fails), so a fresh one is opened.
- A reader whose output row padding is a whole multiple of its width (widths 16, 24, 32, 36, 48,
  72, 96, 144, ... depending on the CPU's memory alignment) returns frames with a wrong channel
  count; such widths are widened by one pixel before the crop.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

import decord
import numpy as np

from egocache.errors import DecodeError

_DECORD_ERRORS = (decord.DECORDError, RuntimeError)
_BATCH_FRAMES = 128          # frames per get_batch call: bounds the uncropped frames held at once
_ROW_ALIGNMENTS = (16, 32, 64)


@dataclass(frozen=True)
class DecodeStats:
    """What one `decode_clips` call cost.

    frames_decoded: native frames decord decodes for the call (wanted frames, frames skipped over
        between them, and keyframe-to-frame runs after each seek), modelled from decord's seek rule
        and the file's keyframe index; frames of spans that failed are not counted.
    frames_spanned: native frames in the union of the clips' [first, last] frame ranges.
    seconds: wall time of the call, opening the reader included.
    """

    frames_decoded: int
    frames_spanned: int
    seconds: float


@dataclass
class _Video:
    """An open decord reader and the facts about its file."""

    file_key: tuple[str, int, int]            # (absolute path, mtime_ns, size in bytes)
    reader: decord.VideoReader
    size: int | None                          # short side the reader scales to; None = native
    out_hw: tuple[int, int] | None            # (height, width) the reader returns; None = native
    threads: int
    num_frames: int
    fps: float
    keyframes: np.ndarray
    native_hw: tuple[int, int] | None = None   # (height, width) before scaling, once known
    position: int = 0                          # next frame the reader decodes without seeking


_cache_lock = threading.Lock()
_last_video: _Video | None = None              # per-process cache of the last opened reader


def _take_cached(file_key: tuple[str, int, int]) -> _Video | None:
    """Take the cached reader out of the cache if it reads the same file (thread-safe hand-over)."""
    global _last_video
    with _cache_lock:
        video = _last_video
        if video is None or video.file_key != file_key:
            return None
        _last_video = None
        return video


def _keep(video: _Video) -> None:
    """Make `video` the cached reader, dropping the previous one."""
    global _last_video
    with _cache_lock:
        _last_video = video


def clear_reader_cache() -> None:
    """Forget the cached reader (frees its decoder; the next call opens the file afresh)."""
    global _last_video
    with _cache_lock:
        _last_video = None


def _file_key(path: str) -> tuple[str, int, int]:
    """Identity of the file (path, mtime, size); DecodeError if it is missing or empty."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read video: {exc.strerror or exc}") from exc
    if not os.path.isfile(path):
        raise DecodeError(f"{path}: cannot read video: not a regular file")
    if st.st_size == 0:
        raise DecodeError(f"{path}: cannot read video: empty file (0 bytes)")
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def _reason(exc: BaseException) -> str:
    """decord's error message without its timestamp/source prefixes and stack trace."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = lines[0] if lines else type(exc).__name__
    return re.sub(r"(\[\d\d:\d\d:\d\d\] \S+:\d+: )+", "", first)


def _open(path: str, file_key: tuple[str, int, int], size: int | None,
          out_hw: tuple[int, int] | None, threads: int) -> _Video:
    """Open a decord reader (scaling to `out_hw` if given); DecodeError if the file is unusable."""
    height, width = out_hw if out_hw is not None else (-1, -1)
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height,
                                    num_threads=threads)
        fps = float(reader.get_avg_fps())
        keyframes = np.asarray(reader.get_key_indices(), dtype=np.int64)
    except _DECORD_ERRORS as exc:
        reason = _reason(exc)
        if reason.startswith("Error reading"):   # decord's message when ffmpeg cannot open the file
            reason = "ffmpeg cannot open it (not a video container, or a truncated one)"
        raise DecodeError(f"{path}: cannot open video: {reason}") from exc
    except AssertionError as exc:  # decord asserts a positive frame count after opening
        raise DecodeError(f"{path}: cannot open video: no frames ({exc})") from exc
    if not fps > 0:
        raise DecodeError(f"{path}: cannot open video: frame rate {fps} is not positive")
    return _Video(file_key, reader, size, out_hw, threads, len(reader), fps, keyframes)


def video_info(path: str) -> tuple[int, float]:
    """(frame count, frames per second) as decord indexes the video; DecodeError if unusable."""
    file_key = _file_key(path)
    video = _take_cached(file_key) or _open(path, file_key, None, None, 1)
    _keep(video)
    return video.num_frames, video.fps


def _unsafe_width(width: int) -> bool:
    """Whether decord misreads RGB rows of this width (row padding a multiple of the width)."""
    for align in _ROW_ALIGNMENTS:
        step = 1
        while True:     # ffmpeg widens the row to a multiple of `step` until its bytes align
            row = 3 * (-(-width // step) * step)
            if row % align == 0 or step >= align:
                break
            step *= 2
        if row != 3 * width and row % width == 0:
            return True
    return False


def reader_size(native_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(height, width) to decode at so the short side is `size`, aspect kept, width decord-safe."""
    h, w = native_hw
    if h <= w:
        out_h, out_w = size, max(size, round(w * size / h))
        while _unsafe_width(out_w):
            out_w += 1
    else:
        out_w = size
        while _unsafe_width(out_w):
            out_w += 1
        out_h = max(out_w, round(h * out_w / w))
    return out_h, out_w


def _sized_reader(path: str, size: int, threads: int) -> _Video:
    """A reader of `path` scaling to short side `size`, reused from the cache when it matches."""
    file_key = _file_key(path)
    video = _take_cached(file_key)
    if video is not None and video.size == size and video.threads == threads:
        return video
    if video is None:
        video = _open(path, file_key, None, None, threads)
    native_hw = video.native_hw
    if native_hw is None:
        try:
            native_hw = tuple(video.reader[0].shape[:2])
        except _DECORD_ERRORS as exc:
            raise DecodeError(f"{path}: cannot decode the first frame: {_reason(exc)}") from exc
    sized = _open(path, file_key, size, reader_size(native_hw, size), threads)
    sized.native_hw = native_hw
    return sized


def _reopen(path: str, video: _Video) -> _Video:
    """A fresh reader like `video` (decord readers stay broken after a decoding error)."""
    fresh = _open(path, video.file_key, video.size, video.out_hw, video.threads)
    fresh.native_hw = video.native_hw
    return fresh


def _keyframe_of(keyframes: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The keyframe at or before each frame (decord's rule: 0 before the first keyframe)."""
    if keyframes.size == 0:
        return np.zeros_like(frames)
    pos = np.searchsorted(keyframes, frames, side="right") - 1
    return np.where(pos < 0, 0, keyframes[np.maximum(pos, 0)])


def _frames_decoded(frames: np.ndarray, keyframes: np.ndarray, position: int) -> int:
    """Native frames decord decodes to return sorted unique `frames` starting at `position`."""
    if frames.size == 0:
        return 0
    prev = np.concatenate(([position], frames[:-1] + 1))
    key = _keyframe_of(keyframes, frames)
    forward = (frames > prev) & (key == _keyframe_of(keyframes, prev))
    cost = np.where(frames == prev, 1, np.where(forward, frames - prev + 1, frames - key + 1))
    return int(cost.sum())


class _DLPackView:
    """Lets numpy view a decord NDArray without copying (decord only offers a DLPack capsule)."""

    def __init__(self, array: decord.nd.NDArray) -> None:
        self._array = array

    def __dlpack__(self, stream: object = None, **_: object) -> object:
        return self._array.to_dlpack()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)                                          # kDLCPU, device 0


def _decode(path: str, video: _Video, frames: np.ndarray, crop: bool = True) -> np.ndarray:
    """Decode sorted unique `frames` and centre-crop them: uint8 (len(frames), size, size, 3); with
    `crop` False the whole frames, (len(frames), H, W, 3) at the reader's size."""
    assert video.size is not None and video.out_hw is not None
    size, (out_h, out_w) = video.size, video.out_hw
    if crop:
        y0, x0, side_h, side_w = (out_h - size) // 2, (out_w - size) // 2, size, size
    else:
        y0, x0, side_h, side_w = 0, 0, out_h, out_w
    out = np.empty((len(frames), side_h, side_w, 3), dtype=np.uint8)
    for a in range(0, len(frames), _BATCH_FRAMES):
        chunk = frames[a:a + _BATCH_FRAMES]
        batch = np.from_dlpack(_DLPackView(video.reader.get_batch(chunk.tolist())))
        video.position = int(chunk[-1]) + 1
        if batch.shape[1:] != (out_h, out_w, 3):
            raise DecodeError(f"{path}: decord returned frames of shape {batch.shape[1:]}, "
                              f"expected {(out_h, out_w, 3)}")
        out[a:a + len(chunk)] = batch[:, y0:y0 + side_h, x0:x0 + side_w]
    return out


def _merged_spans(bounds: dict[int, tuple[int, int]]) -> list[list[int]]:
    """Clip numbers grouped into spans of overlapping or touching frame ranges, in time order."""
    spans: list[list[int]] = []
    end = -2
    for c in sorted(bounds, key=lambda c: bounds[c]):
        lo, hi = bounds[c]
        if spans and lo <= end + 1:
            spans[-1].append(c)
            end = max(end, hi)
        else:
            spans.append([c])
            end = hi
    return spans


def decode_clips(path: str, per_clip_indices: list[np.ndarray], *, size: int, num_threads: int = 1,
                 crop: bool = True) -> tuple[list[np.ndarray | DecodeError], DecodeStats]:
    """Frames of many clips of one video, each needed native frame decoded at most once.

    Returns per clip uint8 (len(indices), size, size, 3) RGB (short side scaled to `size`, centre
    crop, frames in the clip's index order, duplicates allowed) or the DecodeError saying why that
    clip failed (frames outside the video, or frames that cannot be decoded); raises DecodeError if
    the file cannot be opened. `num_threads` is ffmpeg's decoding threads (0 = one per core).
    With `crop` False frames are not cropped: (len(indices), H, W, 3), short side `size` (a
    decord-unsafe width is one pixel wider, see reader_size).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    start = time.perf_counter()
    clips = [np.asarray(ix, dtype=np.int64).reshape(-1) for ix in per_clip_indices]
    video = _sized_reader(path, size, num_threads)
    n = video.num_frames
    assert video.out_hw is not None
    empty_hw = (size, size) if crop else video.out_hw
    results: list[np.ndarray | DecodeError] = [np.empty((0, *empty_hw, 3), np.uint8)] * len(clips)
    bounds: dict[int, tuple[int, int]] = {}
    for c, ix in enumerate(clips):
        if ix.size == 0:
            continue
        lo, hi = int(ix.min()), int(ix.max())
        if lo < 0 or hi >= n:
            results[c] = DecodeError(f"{path}: clip {c} needs frames {lo}..{hi} but the video has "
                                     f"{n} frames (0..{n - 1})")
        else:
            bounds[c] = (lo, hi)
    spans = _merged_spans(bounds)
    spanned = sum(max(bounds[c][1] for c in span) - bounds[span[0]][0] + 1 for span in spans)
    decoded = 0

    def decode_group(group: list[int]) -> bool:
        """Decode the frames of these clips into their result slots; False if decord failed."""
        nonlocal video, decoded
        frames = np.unique(np.concatenate([clips[c] for c in group]))
        cost = _frames_decoded(frames, video.keyframes, video.position)
        try:
            block = _decode(path, video, frames, crop)
        except _DECORD_ERRORS as exc:
            video = _reopen(path, video)
            for c in group:
                err = DecodeError(f"{path}: clip {c} frames {bounds[c][0]}..{bounds[c][1]} "
                                  f"cannot be decoded: {_reason(exc)}")
                err.__cause__ = exc
                results[c] = err
            return False
        decoded += cost
        for c in group:
            results[c] = block[np.searchsorted(frames, clips[c])]
        return True

    for span in spans:
        # The merged span in one pass; if it fails, clip by clip to isolate the failing clips.
        if not decode_group(span) and len(span) > 1:
            for c in span:
                decode_group([c])
    _keep(video)
    return results, DecodeStats(decoded, spanned, time.perf_counter() - start)
