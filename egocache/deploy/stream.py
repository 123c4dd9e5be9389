"""Sliding windows over a whole video and one streamed pass of a model over them.

A window is one clip of the model's training geometry (64 native frames at 30 fps for 16x4). Windows
start every `stride` seconds from the first frame while a whole clip fits. A pass walks the windows in
time order in chunks: the frame plan of the model (pipeline/frames.py) says which native frames each
window needs (N for a student, T for a teacher), `decode_planned` decodes only those, each at most once,
continuing forward in the same reader, and a background thread prepares the next chunk (decoding and
IMU windows, or an audio student's spectrograms read from the video's own audio track) while the
model runs this one. Memory stays bounded by one chunk's frames whatever the video's length. A window
whose frames cannot be decoded or whose IMU or audio window cannot be cut gets its reason and no
prediction; the pass goes on.
"""

from __future__ import annotations

import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from egocache.errors import ClipError, ConfigError, IMUError
from egocache.pipeline.frames import ClipFrames, FramePlan, decode_planned, plan_video_clips
from egocache.pipeline.sampling import clip_span_frames

STAGES = ("decode", "imu", "audio", "model")
CHUNK_BATCHES = 2          # windows per prepared chunk, in batches


@dataclass(frozen=True)
class Window:
    """One clip of the video: its number and where it lies (seconds)."""

    index: int
    centre_s: float
    start_s: float
    end_s: float


def sliding_windows(num_frames: int, fps: float, plan: FramePlan, stride_s: float) -> list[Window]:
    """Windows of `plan`'s clip span starting at frame 0 and every `stride_s` seconds while one fits."""
    if not stride_s > 0:
        raise ConfigError(f"--stride: must be > 0 seconds, got {stride_s}")
    span = clip_span_frames(fps, plan.num_frames, plan.frame_stride)
    out: list[Window] = []
    k = 0
    while (start := int(round(k * stride_s * fps))) + span <= num_frames:
        out.append(Window(k, (start + (span - 1) / 2.0) / fps, start / fps, (start + span) / fps))
        k += 1
    return out


@dataclass
class ClipModel:
    """A model a pass runs: its frame plan, class names, and a function from a batch to logits per head.

    `run(frames, sensor)` gets uint8 frames (B, K, S, S, 3) (the plan's student frames, or its teacher
    frames when `teacher` is True) and the IMU windows (B, window, 6), or None when `needs_imu` is False,
    or with `needs_audio` the windows' log spectrograms (B, 201, M) over `audio_seconds`, float16 values
    as the cache stores them (given as float32).
    """

    name: str
    plan: FramePlan
    heads: dict[str, list[str]]
    run: Callable[[np.ndarray, np.ndarray | None], dict[str, np.ndarray]]
    needs_imu: bool = False
    teacher: bool = False
    imu_rate_hz: float = 198.0
    imu_window: int = 422
    needs_audio: bool = False
    audio_seconds: float = 0.0
    description: str = ""

    def frames_of(self, clip: ClipFrames) -> np.ndarray:
        """The frames of a decoded clip that this model reads."""
        return clip.teacher if self.teacher else clip.student


@dataclass
class PassResult:
    """Logits per window (NaN rows where a window failed), each window's failure reason, and the cost."""

    model: str
    heads: dict[str, list[str]]
    logits: dict[str, np.ndarray]                    # head -> (windows, C) float32
    errors: list[str]                                # "" where the window ran, else "decode: ..." / "imu: ..."
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_s: float = 0.0
    frames_decoded: int = 0
    frames_spanned: int = 0
    description: str = ""

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of the windows that have predictions."""
        return np.array([not e for e in self.errors], dtype=bool)


def _prepare(video: str, windows: list[Window], model: ClipModel, imu_stream: Any, fps: float | None,
             threads: int, result: PassResult) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """Decode (and cut the IMU or audio of) one chunk: (window numbers that are ready, their frames, their
    IMU windows or spectrograms)."""
    from egocache.pipeline.imu import imu_window

    t0 = time.perf_counter()
    planned = plan_video_clips(video, [w.centre_s for w in windows], model.plan, fps=fps)
    live = []
    for w, p in zip(windows, planned):
        if isinstance(p, ClipError):
            result.errors[w.index] = f"decode: {p}"
        else:
            live.append((w, p))
    decoded, n_dec, n_span = decode_planned(video, [p for _, p in live], model.plan, num_threads=threads, fps=fps)
    result.frames_decoded += n_dec
    result.frames_spanned += n_span
    ready, frames = [], []
    for (w, _), clip in zip(live, decoded):
        if isinstance(clip, ClipError):
            result.errors[w.index] = f"decode: {clip}"
        else:
            ready.append(w)
            frames.append(model.frames_of(clip))
    result.seconds["decode"] += time.perf_counter() - t0
    if model.needs_audio:
        return _audio(video, ready, frames, model.audio_seconds, result)
    if not model.needs_imu:
        return [w.index for w in ready], (np.stack(frames) if frames else None), None
    t0 = time.perf_counter()
    imus, kept, kept_frames = [], [], []
    for w, f in zip(ready, frames):
        try:
            imus.append(imu_window(imu_stream, w.centre_s, rate=model.imu_rate_hz, length=model.imu_window))
        except IMUError as exc:
            result.errors[w.index] = f"imu: {exc}"
            continue
        kept.append(w.index)
        kept_frames.append(f)
    result.seconds["imu"] += time.perf_counter() - t0
    if not kept:
        return [], None, None
    return kept, np.stack(kept_frames), np.stack(imus)


def _audio(video: str, ready: list[Window], frames: list[np.ndarray], seconds: float, result: PassResult
           ) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """The ready windows' log spectrograms as the cache stores them (pipeline/audio.video_spectrograms),
    as float32 for the model; a window without its audio gets the reason."""
    from egocache.pipeline.audio import video_spectrograms

    t0 = time.perf_counter()
    specs = video_spectrograms(video, [w.centre_s - seconds / 2 for w in ready], seconds) if ready else []
    kept, kept_frames, audio = [], [], []
    for w, f, spec in zip(ready, frames, specs):
        if isinstance(spec, ClipError):
            result.errors[w.index] = f"audio: {spec}"
            continue
        kept.append(w.index)
        kept_frames.append(f)
        audio.append(spec.astype(np.float32))
    result.seconds["audio"] += time.perf_counter() - t0
    if not kept:
        return [], None, None
    return kept, np.stack(kept_frames), np.stack(audio)


def run_pass(video: str, windows: list[Window], model: ClipModel, *, imu_stream: Any = None, fps: float | None = None,
             batch_size: int = 16, decode_threads: int = 1, progress: bool = False) -> PassResult:
    """Run `model` over every window of `video` (a file or an RGB-frame folder at `fps`), streamed."""
    if model.needs_imu and imu_stream is None:
        raise ConfigError(f"--imu: {model.name} reads IMU windows and no IMU stream was given")
    result = PassResult(model.name, model.heads,
                        {h: np.full((len(windows), len(c)), np.nan, np.float32) for h, c in model.heads.items()},
                        [""] * len(windows), description=model.description)
    chunk = max(1, CHUNK_BATCHES * batch_size)
    chunks = [windows[i:i + chunk] for i in range(0, len(windows), chunk)]
    start = time.perf_counter()
    bar = tqdm(total=len(windows), unit="clip", desc=model.name, disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="egocache-predict-decode") as pool:
        def submit(i: int) -> Any:
            return pool.submit(_prepare, video, chunks[i], model, imu_stream, fps, decode_threads, result)

        ahead = submit(0) if chunks else None
        for i in range(len(chunks)):
            rows, frames, sensor = ahead.result()
            ahead = submit(i + 1) if i + 1 < len(chunks) else None
            t0 = time.perf_counter()
            for lo in range(0, len(rows), batch_size):
                logits = model.run(frames[lo:lo + batch_size], None if sensor is None else sensor[lo:lo + batch_size])
                for h, v in logits.items():
                    result.logits[h][rows[lo:lo + batch_size]] = v
            result.seconds["model"] += time.perf_counter() - t0
            bar.update(len(chunks[i]))
            bar.set_postfix(failed=sum(bool(e) for e in result.errors), refresh=False)
    bar.close()
    result.wall_s = time.perf_counter() - start
    return result


def per_minute(result: PassResult, video_seconds: float) -> dict[str, float]:
    """Seconds of each stage and of the whole pass per minute of video."""
    scale = 60.0 / video_seconds if video_seconds > 0 else math.nan
    return {**{k: v * scale for k, v in result.seconds.items()}, "wall": result.wall_s * scale}
