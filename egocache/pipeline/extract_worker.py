"""One extraction task: decode, window the IMU, run the teacher and write one cache shard.

A task is a shard of consecutive cache rows (clips sorted by video), cut into units of a few teacher
batches. A decode thread prepares unit i+1 (IMU windows, one decode pass over its clips' teacher and
student frames, in time order, continuing forward in the same video) while the teacher runs unit i, so
decoding overlaps the teacher; stage times are therefore busy times and can add up to more than the
wall time. The teacher is built
once per process and reused by every later task that asks for the same (name, checkpoint, heads,
overrides, device). Per-clip problems (`ClipError`) become a failed row with its reason; anything else
propagates and fails the task.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egocache.errors import ClipError, IMUError
from egocache.pipeline.datasets import Clip
from egocache.pipeline.sampling import (clip_span_frames, clip_start_frame, student_frame_indices,
                                        teacher_frame_indices)

STATUS_OK = 1
STATUS_FAILED = 2
UNIT_BATCHES = 4   # clips per decode-ahead unit, in teacher batches


@dataclass(frozen=True)
class TeacherKey:
    """Everything that decides which teacher a task runs; hashable, so it keys the per-process cache."""

    name: str
    checkpoint: str | None
    heads: tuple[tuple[str, int], ...]
    overrides: tuple[tuple[str, Any], ...]
    device: str


@dataclass(frozen=True)
class ShardJob:
    """The work of one task: which cache shard, its clips, the teacher and the frame geometry."""

    cache: str
    shard: int
    clips: tuple[Clip, ...]
    teacher: TeacherKey
    frame_size: int
    positions: tuple[float, ...]
    batch_size: int
    decode_threads: int = 1


@dataclass
class ShardResult:
    """What a task did: clip counts, failures as (clip_id, reason), decode work and time per stage."""

    shard: int
    clips: int
    ok: int
    failures: list[tuple[str, str]]
    frames_decoded: int
    frames_spanned: int
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


STAGES = ("decode", "imu", "teacher", "write")

INIT_SEED = 0
_TEACHERS: dict[TeacherKey, Any] = {}


def load_teacher(key: TeacherKey) -> Any:
    """The teacher for `key`, built once per process (a new key drops the old model to free memory).

    Without a checkpoint the weights are a random init drawn from a fixed seed (INIT_SEED, global RNG
    untouched), so every worker process and every resumed run builds the same model.
    """
    if key not in _TEACHERS:
        import torch

        from egocache.pipeline.teachers import create_teacher

        _TEACHERS.clear()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(INIT_SEED)
            model = create_teacher(key.name, checkpoint=key.checkpoint, heads=dict(key.heads),
                                   **dict(key.overrides))
        _TEACHERS[key] = model.to(torch.device(key.device)).eval()
    return _TEACHERS[key]


def clip_frame_plan(centre_s: float, fps: float, num_frames: int, stride: int, positions: tuple[float, ...]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Native frames to decode for one clip (sorted unique) and where the teacher/student frames sit in them.

    The clip spans `num_frames` x `stride` frames of 30 fps video (64 for 16x4 and 8x8), rescaled to `fps`.
    """
    span = clip_span_frames(fps, num_frames, stride)
    start = clip_start_frame(centre_s, fps, span)
    t_idx = teacher_frame_indices(start, span, num_frames)
    s_idx = student_frame_indices(start, span, list(positions))
    union = np.unique(np.concatenate([t_idx, s_idx]))
    return union, np.searchsorted(union, t_idx), np.searchsorted(union, s_idx)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize square uint8 (..., S, S, 3) frames to (..., size, size, 3): bilinear, antialiased, rounded."""
    if frames.shape[-2] == size:
        return frames
    import torch
    import torch.nn.functional as F

    lead = frames.shape[:-3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:])
    x = x.permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    y = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return y.reshape(*lead, size, size, 3).numpy()


def run_teacher(model: Any, clips: np.ndarray, device: str, batch_size: int
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Teacher features (n, D) and logits {head: (n, C)} float32 for uint8 clips (n, T, S, S, 3)."""
    import torch

    feats, logits = [], []
    dev = torch.device(device)
    with torch.inference_mode():
        for lo in range(0, len(clips), batch_size):
            x = torch.from_numpy(clips[lo:lo + batch_size]).to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                f, out = model(model.preprocess(x))
            feats.append(f.float().cpu().numpy())
            logits.append({h: v.float().cpu().numpy() for h, v in out.items()})
    return (np.concatenate(feats), {h: np.concatenate([b[h] for b in logits]) for h in logits[0]})


class _ShardBuffers:
    """The shard's output arrays, zero-filled, with per-row status and reason."""

    def __init__(self, m: int, feature_dim: int, heads: dict[str, int], k: int, size: int, window: int):
        self.features = np.zeros((m, feature_dim), np.float32)
        self.logits = {h: np.zeros((m, c), np.float32) for h, c in heads.items()}
        self.imu = np.zeros((m, window, 6), np.float32)
        self.frames = np.zeros((m, k, size, size, 3), np.uint8)
        self.status = np.full(m, STATUS_OK, np.int8)
        self.errors = [""] * m

    def fail(self, row: int, reason: str) -> None:
        """Mark `row` failed with `reason`, keeping its data zero."""
        self.status[row] = STATUS_FAILED
        self.errors[row] = reason
        self.features[row] = 0
        for v in self.logits.values():
            v[row] = 0
        self.imu[row] = 0
        self.frames[row] = 0


def _imu_windows(job: ShardJob, rows: list[int], buf: _ShardBuffers, result: ShardResult) -> None:
    """Fill the IMU window of these rows (one read per stream; a read error fails each of its clips)."""
    from egocache.pipeline.imu import imu_window, read_imu

    streams: dict[tuple[str, tuple[str, ...]], Any] = {}
    t0 = time.perf_counter()
    for row in rows:
        clip = job.clips[row]
        try:
            if clip.imu_format is None:
                raise IMUError(f"{clip.video_id}: no IMU stream listed for this video")
            key = (clip.imu_format, tuple(clip.imu_paths))
            if key not in streams:
                try:
                    streams[key] = read_imu(*key)
                except IMUError as exc:
                    streams[key] = exc
            if isinstance(streams[key], IMUError):
                raise streams[key]
            buf.imu[row] = imu_window(streams[key], clip.centre_s)
        except IMUError as exc:
            buf.fail(row, f"imu: {exc}")
    result.seconds["imu"] += time.perf_counter() - t0


def _video_groups(clips: tuple[Clip, ...]) -> dict[str, list[int]]:
    """Rows of the shard grouped by video file, in row order (rows are sorted by video already)."""
    groups: dict[str, list[int]] = {}
    for row, clip in enumerate(clips):
        groups.setdefault(clip.video_path, []).append(row)
    return groups


def _plan_video(job: ShardJob, path: str, rows: list[int], spec: Any, buf: _ShardBuffers
                ) -> tuple[dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], float]:
    """Frame plans of the rows whose clip lies inside the video, and the video's fps; others fail."""
    from egocache.pipeline.decode import video_info

    try:
        n, fps = video_info(path)
    except ClipError as exc:
        for r in rows:
            buf.fail(r, f"decode: {exc}")
        return {}, 0.0
    plans = {}
    for r in rows:
        centre = job.clips[r].centre_s
        plan = clip_frame_plan(centre, fps, spec.num_frames, spec.frame_stride, job.positions)
        lo, hi = int(plan[0][0]), int(plan[0][-1])
        if lo < 0 or hi >= n:
            buf.fail(r, f"decode: {path}: the clip at {centre:.3f} s needs frames {lo}..{hi} but the "
                        f"video has {n} frames ({n / fps:.3f} s)")
        else:
            plans[r] = plan
    return plans, fps


def _work_units(job: ShardJob, chunk: int) -> list[tuple[str, list[int]]]:
    """(video, rows) units of about `chunk` clips, in row (= time) order, cut between segments.

    Units are what the decode thread prepares while the teacher runs the previous unit; cutting
    between segments keeps a segment's overlapping evaluation clips in one decode.
    """
    units: list[tuple[str, list[int]]] = []
    for path, rows in _video_groups(job.clips).items():
        unit: list[int] = []
        for r in rows:
            if len(unit) >= chunk and job.clips[r].segment_id != job.clips[unit[-1]].segment_id:
                units.append((path, unit))
                unit = []
            unit.append(r)
        units.append((path, unit))
    return units


def _prepare_unit(job: ShardJob, path: str, rows: list[int], spec: Any, buf: _ShardBuffers,
                  result: ShardResult) -> tuple[list[int], np.ndarray | None]:
    """Check, window the IMU of and decode (one pass) one unit's clips; student frames go into `buf`.

    Returns the rows that reached the teacher and their teacher frames (n, T, S, S, 3). Frames are
    decoded once at max(teacher size, student size); the teacher's own preprocess resizes its frames
    (the official bilinear test transform), student frames are resized here if needed.
    """
    from egocache.pipeline.decode import decode_clips

    t0 = time.perf_counter()
    plans, _ = _plan_video(job, path, rows, spec, buf)
    result.seconds["decode"] += time.perf_counter() - t0
    _imu_windows(job, list(plans), buf, result)
    live = [r for r in plans if buf.status[r] == STATUS_OK]
    if not live:
        return [], None
    t0 = time.perf_counter()
    try:
        decoded, stats = decode_clips(path, [plans[r][0] for r in live],
                                      size=max(spec.img_size, job.frame_size), num_threads=job.decode_threads)
    except ClipError as exc:
        decoded, stats = [exc] * len(live), None
    if stats is not None:
        result.frames_decoded += stats.frames_decoded
        result.frames_spanned += stats.frames_spanned
    good, teacher_in = [], []
    for r, frames in zip(live, decoded):
        if isinstance(frames, ClipError):
            buf.fail(r, f"decode: {frames}")
            continue
        _, t_pos, s_pos = plans[r]
        buf.frames[r] = resize_frames(frames[s_pos], job.frame_size)
        teacher_in.append(frames[t_pos])
        good.append(r)
    result.seconds["decode"] += time.perf_counter() - t0
    return good, np.stack(teacher_in) if good else None


def _teach_unit(job: ShardJob, model: Any, good: list[int], clips: np.ndarray | None, buf: _ShardBuffers,
                result: ShardResult) -> None:
    """Run the teacher on one prepared unit and store its features and logits in `buf`."""
    if not good:
        return
    t0 = time.perf_counter()
    feats, logits = run_teacher(model, clips, job.teacher.device, job.batch_size)
    buf.features[good] = feats
    for h, v in logits.items():
        buf.logits[h][good] = v
    result.seconds["teacher"] += time.perf_counter() - t0


def run_shard(job: ShardJob) -> ShardResult:
    """Extract and write one shard; returns counts, failures and time per stage."""
    from egocache.cache import CacheWriter
    from egocache.pipeline.imu import IMU_WINDOW

    model = load_teacher(job.teacher)
    spec = model.spec
    m = len(job.clips)
    result = ShardResult(shard=job.shard, clips=m, ok=0, failures=[], frames_decoded=0, frames_spanned=0)
    buf = _ShardBuffers(m, spec.feature_dim, dict(spec.heads), len(job.positions), job.frame_size, IMU_WINDOW)
    units = _work_units(job, chunk=max(UNIT_BATCHES * job.batch_size, 1))
    # One decode thread prepares the next unit while the teacher runs this one (decord and torch
    # release the GIL), so a GPU teacher waits on decoding only for the first unit of a task.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="egocache-decode") as pool:
        ahead = pool.submit(_prepare_unit, job, *units[0], spec, buf, result) if units else None
        for i in range(len(units)):
            good, clips = ahead.result()
            ahead = (pool.submit(_prepare_unit, job, *units[i + 1], spec, buf, result)
                     if i + 1 < len(units) else None)
            _teach_unit(job, model, good, clips, buf, result)
    t0 = time.perf_counter()
    writer = CacheWriter.open(job.cache)
    writer.write_shard(job.shard, buf.features, buf.logits, buf.imu, buf.frames, buf.status, buf.errors)
    result.seconds["write"] += time.perf_counter() - t0
    result.ok = int((buf.status == STATUS_OK).sum())
    result.failures = [(job.clips[r].clip_id, buf.errors[r]) for r in range(m) if buf.status[r] != STATUS_OK]
    return result
