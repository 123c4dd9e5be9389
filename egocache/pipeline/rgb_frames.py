"""RGB-frame folders as a clip source: EPIC-KITCHENS' `<P>/rgb_frames/<video_id>/frame_0000000001.jpg`.

Many EPIC users hold this release (JPEG frames 256 px high) rather than the videos; the official
MotionFormer EPIC loader reads it too. A folder is read at the release's own frame rate (60 fps for the
EK-55 videos, 50 for the extension; the caller says which), frame k of our 0-based plan being the file
numbered k + 1. Each needed frame is decoded once (simplejpeg, DCT-domain downscaling when the frame is
at least twice the wanted size), scaled so its short side is `size` (bilinear, antialiased) and
centre-cropped (or kept whole, `crop=False`), as the video decoder's frames are.
"""

from __future__ import annotations

import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import simplejpeg

from egocache.errors import DecodeError
from egocache.pipeline.decode import DecodeStats

FRAME_NAME = "frame_{:010d}.jpg"
_FRAME_FILE = re.compile(r"frame_(\d{10})\.jpg$")
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def is_frame_folder(path: str) -> bool:
    """Whether `path` is a folder (of RGB frames) rather than a video file."""
    return os.path.isdir(path)


@lru_cache(maxsize=64)
def _count(path: str, mtime_ns: int) -> int:
    """Number of frames in a folder: the highest frame number, checked to have no holes."""
    numbers = sorted(int(m.group(1)) for e in os.scandir(path) if (m := _FRAME_FILE.match(e.name)))
    if not numbers:
        raise DecodeError(f"{path}: no frame_XXXXXXXXXX.jpg files in the RGB-frame folder")
    if numbers[0] != 1 or numbers[-1] != len(numbers):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        raise DecodeError(f"{path}: RGB-frame folder has holes (frames 1..{numbers[-1]}, "
                          f"{len(missing)} missing, first {FRAME_NAME.format(missing[0])})")
    return numbers[-1]


def folder_info(path: str, fps: float | None) -> tuple[int, float]:
    """(frame count, frames per second) of an RGB-frame folder; DecodeError if it is unusable."""
    if fps is None or not fps > 0:
        raise DecodeError(f"{path}: an RGB-frame folder needs its release frame rate (none given)")
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read RGB-frame folder: {exc.strerror or exc}") from exc
    return _count(path, mtime), float(fps)


def scale_crop(img: np.ndarray, size: int, crop: bool = True) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): short side scaled to `size` (bilinear, antialiased), centre
    crop; with `crop` False the whole scaled frame."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape[:2]
    if h <= w:
        out_h, out_w = size, max(size, round(w * size / h))
    else:
        out_h, out_w = max(size, round(h * size / w)), size
    if (h, w) != (out_h, out_w):
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
        img = x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    if not crop:
        return img
    y0, x0 = (out_h - size) // 2, (out_w - size) // 2
    return img[y0:y0 + size, x0:x0 + size]


def _decode_one(path: str, index: int, size: int, crop: bool) -> np.ndarray:
    """Frame `index` (0-based) of a folder at short side `size`; DecodeError naming the file."""
    file = os.path.join(path, FRAME_NAME.format(index + 1))
    try:
        with open(file, "rb") as fh:
            data = fh.read()
        img = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size)
    except OSError as exc:
        raise DecodeError(f"{file}: cannot read frame: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise DecodeError(f"{file}: not a decodable JPEG ({exc})") from exc
    return scale_crop(img, size, crop)


def _threads() -> ThreadPoolExecutor:
    """The process's JPEG decoding pool (simplejpeg releases the GIL while decoding)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="egocache-jpeg")
        return _pool


def decode_folder_clips(path: str, per_clip_indices: list[np.ndarray], *, size: int, fps: float | None,
                        crop: bool = True) -> tuple[list[np.ndarray | DecodeError], DecodeStats]:
    """Frames of many clips of one RGB-frame folder, each needed frame decoded once.

    The same contract as decode.decode_clips: per clip uint8 (len(indices), size, size, 3) (with
    `crop` False the whole frames at short side `size`) or the DecodeError saying why that clip
    failed; raises DecodeError if the folder is unusable.
    """
    start = time.perf_counter()
    n, _ = folder_info(path, fps)
    clips = [np.asarray(ix, dtype=np.int64).reshape(-1) for ix in per_clip_indices]
    wanted = np.unique(np.concatenate(clips)) if clips else np.zeros(0, np.int64)
    wanted = wanted[(wanted >= 0) & (wanted < n)]
    futures = {int(i): _threads().submit(_decode_one, path, int(i), size, crop) for i in wanted}
    frames: dict[int, np.ndarray | DecodeError] = {}
    for i, fut in futures.items():
        try:
            frames[i] = fut.result()
        except DecodeError as exc:
            frames[i] = exc
    results: list[np.ndarray | DecodeError] = []
    for c, ix in enumerate(clips):
        if ix.size and (ix.min() < 0 or ix.max() >= n):
            results.append(DecodeError(f"{path}: clip {c} needs frames {int(ix.min())}..{int(ix.max())} but "
                                       f"the folder has {n} frames (0..{n - 1})"))
            continue
        bad = next((frames[int(i)] for i in ix if isinstance(frames[int(i)], DecodeError)), None)
        results.append(bad if bad is not None else
                       np.stack([frames[int(i)] for i in ix]) if ix.size else np.empty((0, size, size, 3), np.uint8))
    ranges = sorted((int(ix.min()), int(ix.max())) for ix in clips if ix.size)
    spanned, end = 0, -1
    for lo, hi in ranges:                 # frames in the union of the clips' [first, last] ranges
        spanned += max(0, hi - max(lo, end + 1) + 1)
        end = max(end, hi)
    return results, DecodeStats(len(futures), spanned, time.perf_counter() - start)
