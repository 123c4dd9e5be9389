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

from egocache.errors import AudioError, ClipError, EgocacheError, IMUError
from egocache.pipeline.audio import AUDIO_DTYPE
from egocache.pipeline.datasets import Clip, clips_by_video
from egocache.pipeline.teachers.base import run_teacher_aux
from egocache.pipeline.frames import FramePlan, decode_planned, plan_video_clips

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
    heads: tuple[tuple[str, int], ...]   # the cache's heads (a subset of the teacher's)
    frame_size: int
    positions: tuple[float, ...]
    batch_size: int
    decode_threads: int = 1
    imu_mode: str = "required"          # required: a clip without its IMU window fails; else it is flagged
    keep_backwards_imu: bool = False
    torch_threads: int = 1              # torch CPU threads in the process running the task (0: default)
    lease: Any = None                   # the run's cache.lease.LeaseToken: shards are written only under it
    group: str = ""                     # an added teacher's group (teachers/<name>): only its outputs are written
    audio_mode: str = "none"            # required: a clip without its audio window fails; optional: flagged
    audio_seconds: float = 0.0          # the audio window (the clip's span: centre ± audio_seconds / 2)


@dataclass
class ShardResult:
    """What a task did: clip counts, failures as (clip_id, reason), clips kept without IMU as
    (clip_id, reason), decode work and time per stage."""

    shard: int
    clips: int
    ok: int
    failures: list[tuple[str, str]]
    frames_decoded: int
    frames_spanned: int
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    without_imu: list[tuple[str, str]] = field(default_factory=list)
    without_audio: list[tuple[str, str]] = field(default_factory=list)


STAGES = ("decode", "imu", "audio", "teacher", "write")

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
            model = create_teacher(key.name, checkpoint=key.checkpoint, heads=dict(key.heads) or None,
                                   **dict(key.overrides))
        _TEACHERS[key] = model.to(torch.device(key.device)).eval()
    return _TEACHERS[key]


def shared_heads(teacher_heads: dict[str, int], heads: tuple[tuple[str, int], ...], source: str
                 ) -> tuple[tuple[str, int], ...]:
    """The dataset heads the teacher has with the same class count (a teacher trained on some heads,
    e.g. objects-tiny on nouns, is scored or added on those); EgocacheError naming `source` if none."""
    kept = tuple((h, n) for h, n in heads if teacher_heads.get(h) == n)
    if not kept:
        check_teacher_heads(teacher_heads, heads, source)
    return kept


def check_teacher_heads(teacher_heads: dict[str, int], heads: tuple[tuple[str, int], ...], source: str) -> None:
    """EgocacheError naming `source` unless the teacher has every dataset head with its class count."""
    wrong = [f"{h} ({n} classes)" for h, n in heads if teacher_heads.get(h) != n]
    if wrong:
        raise EgocacheError(f"{source}: the teacher's heads {', '.join(f'{h}:{n}' for h, n in teacher_heads.items())} "
                            f"do not give the dataset's {', '.join(wrong)}; fine-tune it on these classes "
                            "(train-teacher --reset-heads)")


class _ShardBuffers:
    """The shard's output arrays, zero-filled, with per-row status and reason."""

    def __init__(self, m: int, feature_dim: int, heads: dict[str, int], aux: dict[str, int], k: int, size: int,
                 window: int, audio_shape: tuple[int, int] | None = None):
        self.features = np.zeros((m, feature_dim), np.float32)
        self.logits = {h: np.zeros((m, c), np.float32) for h, c in heads.items()}
        self.aux = {a: np.zeros((m, d), np.float32) for a, d in aux.items()}
        self.imu = np.zeros((m, window, 6), np.float32)
        self.frames = np.zeros((m, k, size, size, 3), np.uint8)
        self.imu_present = np.zeros(m, np.int8)
        self.audio = np.zeros((m, *audio_shape), AUDIO_DTYPE) if audio_shape else None
        self.audio_present = np.zeros(m, np.int8)
        self.status = np.full(m, STATUS_OK, np.int8)
        self.errors = [""] * m

    def fail(self, row: int, reason: str) -> None:
        """Mark `row` failed with `reason`, keeping its data zero."""
        self.status[row] = STATUS_FAILED
        self.errors[row] = reason
        self.features[row] = 0
        for v in [*self.logits.values(), *self.aux.values()]:
            v[row] = 0
        self.imu[row] = 0
        self.imu_present[row] = 0
        if self.audio is not None:
            self.audio[row] = 0
        self.audio_present[row] = 0
        self.frames[row] = 0


def _imu_windows(job: ShardJob, rows: list[int], buf: _ShardBuffers, result: ShardResult) -> None:
    """Fill the IMU window of these rows (one read per stream). Under --imu required a clip whose window
    cannot be cut fails; otherwise it stays, flagged without IMU (zeros, imu_present 0), reason kept."""
    from egocache.pipeline.imu import imu_window, read_imu

    if job.imu_mode == "none":
        return
    streams: dict[tuple[str, tuple[str, ...]], Any] = {}
    t0 = time.perf_counter()
    for row in rows:
        clip = job.clips[row]
        try:
            if clip.imu_format is None:
                raise IMUError(f"{clip.video_id}: no IMU for this video")
            key = (clip.imu_format, tuple(clip.imu_paths))
            if key not in streams:
                try:
                    streams[key] = read_imu(*key)
                except IMUError as exc:
                    streams[key] = exc
            if isinstance(streams[key], IMUError):
                raise streams[key]
            buf.imu[row] = imu_window(streams[key], clip.centre_s, keep_backwards=job.keep_backwards_imu)
            buf.imu_present[row] = 1
        except IMUError as exc:
            if job.imu_mode == "required":
                buf.fail(row, f"imu: {exc}")
            else:
                result.without_imu.append((clip.clip_id, str(exc)))
    result.seconds["imu"] += time.perf_counter() - t0


def _audio_windows(job: ShardJob, buf: _ShardBuffers, result: ShardResult) -> None:
    """Fill the log spectrogram of every ok row (audio.video_spectrograms: each video's audio decoded once
    per 60-s block of its clips, in the cache's dtype). Under --audio required a clip without its window
    fails; under optional it stays, flagged without audio (zeros, audio_present 0), reason kept."""
    from egocache.pipeline.audio import video_spectrograms

    if buf.audio is None:
        return
    t0 = time.perf_counter()
    half = job.audio_seconds / 2.0
    for path, rows in clips_by_video(job.clips).items():
        ok = [r for r in rows if buf.status[r] == STATUS_OK]
        # start_s as the clip table has it
        windows = video_spectrograms(path, [job.clips[r].centre_s - half for r in ok], job.audio_seconds)
        for r, spec in zip(ok, windows):
            if not isinstance(spec, AudioError):
                buf.audio[r] = spec
                buf.audio_present[r] = 1
            elif job.audio_mode == "required":
                buf.fail(r, f"audio: {spec}")
            else:
                result.without_audio.append((job.clips[r].clip_id, str(spec)))
    result.seconds["audio"] += time.perf_counter() - t0


def _work_units(job: ShardJob, chunk: int) -> list[tuple[str, list[int]]]:
    """(video, rows) units of about `chunk` clips, in row (= time) order, cut between segments.

    Units are what the decode thread prepares while the teacher runs the previous unit; cutting
    between segments keeps a segment's overlapping evaluation clips in one decode.
    """
    units: list[tuple[str, list[int]]] = []
    for path, rows in clips_by_video(job.clips).items():
        unit: list[int] = []
        for r in rows:
            if len(unit) >= chunk and job.clips[r].segment_id != job.clips[unit[-1]].segment_id:
                units.append((path, unit))
                unit = []
            unit.append(r)
        units.append((path, unit))
    return units


def _prepare_unit(job: ShardJob, path: str, rows: list[int], plan: FramePlan, audio_teacher: bool,
                  buf: _ShardBuffers, result: ShardResult) -> tuple[list[int], np.ndarray | None]:
    """Check, window the IMU of and decode (one pass, pipeline/frames.py) one unit's clips.

    Student frames go into `buf`; returns the rows that reached the teacher and their teacher input:
    frames (n, T, S, S, 3) at the teacher's input size, or for an audio teacher the clips' spectrograms
    as the cache stores them (float16). An added audio teacher's unit decodes no frames at all.
    """
    if audio_teacher and job.group:
        good = [r for r in rows if buf.status[r] == STATUS_OK]
        return good, buf.audio[good] if good else None
    t0 = time.perf_counter()
    fps = job.clips[rows[0]].frames_fps if rows else None
    planned = plan_video_clips(path, [job.clips[r].centre_s for r in rows], plan, fps=fps)
    for r, p in zip(rows, planned):
        if isinstance(p, ClipError):
            buf.fail(r, f"decode: {p}")
    result.seconds["decode"] += time.perf_counter() - t0
    _imu_windows(job, [r for r in rows if buf.status[r] == STATUS_OK], buf, result)
    live = [(r, p) for r, p in zip(rows, planned) if buf.status[r] == STATUS_OK]
    if not live:
        return [], None
    t0 = time.perf_counter()
    decoded, frames_decoded, frames_spanned = decode_planned(path, [p for _, p in live], plan,
                                                             num_threads=job.decode_threads, fps=fps)
    result.frames_decoded += frames_decoded
    result.frames_spanned += frames_spanned
    good, teacher_in = [], []
    for (r, _), frames in zip(live, decoded):
        if isinstance(frames, ClipError):
            buf.fail(r, f"decode: {frames}")
            continue
        buf.frames[r] = frames.student
        teacher_in.append(frames.teacher)
        good.append(r)
    result.seconds["decode"] += time.perf_counter() - t0
    if audio_teacher:
        return good, buf.audio[good] if good else None
    return good, np.stack(teacher_in) if good else None


def _teach_unit(job: ShardJob, model: Any, good: list[int], clips: np.ndarray | None, buf: _ShardBuffers,
                result: ShardResult) -> None:
    """Run the teacher on one prepared unit and store its features and logits in `buf`."""
    if not good:
        return
    t0 = time.perf_counter()
    feats, logits, aux = run_teacher_aux(model, clips, job.teacher.device, job.batch_size)
    logits = {h: logits[h] for h in buf.logits}
    outputs = [feats, *logits.values(), *aux.values()]
    finite = np.all([np.isfinite(v).all(axis=1) for v in outputs], axis=0)
    buf.features[good] = feats
    for h, v in logits.items():
        buf.logits[h][good] = v
    for a, v in aux.items():
        buf.aux[a][good] = v
    for r in np.asarray(good)[~finite]:
        buf.fail(int(r), "teacher: non-finite feature or logits (inf/NaN) for this clip")
    result.seconds["teacher"] += time.perf_counter() - t0


def run_shard(job: ShardJob) -> ShardResult:
    """Extract and write one shard; returns counts, failures and time per stage."""
    from egocache.cache import CacheWriter
    from egocache.pipeline.imu import IMU_WINDOW

    if job.torch_threads:
        import torch

        torch.set_num_threads(job.torch_threads)
    model = load_teacher(job.teacher)
    spec = model.spec
    audio_teacher = spec.input == "audio"       # fed the clips' spectrograms
    if audio_teacher and job.audio_mode != "required":
        raise EgocacheError(f"{spec.name} takes the clips' audio: its extraction runs under --audio required, "
                            f"not {job.audio_mode}")
    plan = FramePlan(spec.num_frames, spec.frame_stride, 0 if audio_teacher else spec.img_size, job.positions,
                     job.frame_size, teacher_frames=not audio_teacher)
    m = len(job.clips)
    result = ShardResult(shard=job.shard, clips=m, ok=0, failures=[], frames_decoded=0, frames_spanned=0)
    audio_shape = None
    if job.audio_mode != "none":
        from egocache.pipeline.audio import FREQ_BINS, spectrogram_frames

        audio_shape = (FREQ_BINS, spectrogram_frames(job.audio_seconds))
    buf = _ShardBuffers(m, spec.feature_dim, dict(job.heads), dict(spec.aux), len(job.positions), job.frame_size,
                        IMU_WINDOW, audio_shape)
    _audio_windows(job, buf, result)     # first: under --audio required, clips without audio skip the teacher
    units = _work_units(job, chunk=max(UNIT_BATCHES * job.batch_size, 1))
    # One decode thread prepares the next unit while the teacher runs this one (decord and torch
    # release the GIL), so a GPU teacher waits on decoding only for the first unit of a task.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="egocache-decode") as pool:
        ahead = pool.submit(_prepare_unit, job, *units[0], plan, audio_teacher, buf, result) if units else None
        for i in range(len(units)):
            good, clips = ahead.result()
            ahead = (pool.submit(_prepare_unit, job, *units[i + 1], plan, audio_teacher, buf, result)
                     if i + 1 < len(units) else None)
            _teach_unit(job, model, good, clips, buf, result)
    t0 = time.perf_counter()
    if job.group:
        from egocache.cache.teachers import TeacherGroupWriter

        TeacherGroupWriter.open(job.cache, job.group).write_shard(job.shard, buf.features, buf.logits, buf.aux,
                                                                  buf.status, buf.errors, lease=job.lease)
    else:
        writer = CacheWriter.open(job.cache)
        writer.write_shard(job.shard, buf.features, buf.logits, buf.imu, buf.frames, buf.status, buf.errors,
                           buf.imu_present if writer.has_imu_flags else None, lease=job.lease, aux=buf.aux,
                           audio=buf.audio if writer.has_audio else None,
                           audio_present=buf.audio_present if writer.has_audio else None)
    result.seconds["write"] += time.perf_counter() - t0
    result.ok = int((buf.status == STATUS_OK).sum())
    result.failures = [(job.clips[r].clip_id, buf.errors[r]) for r in range(m) if buf.status[r] != STATUS_OK]
    return result
