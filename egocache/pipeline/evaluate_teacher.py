"""`egocache test-teacher`: a teacher's per-segment accuracy under MotionFormer's multi-view test,
next to the single centre clip.

MotionFormer's EPIC test (TEST.NUM_ENSEMBLE_VIEWS 10, TEST.NUM_SPATIAL_CROPS 3) averages the softmax
of 10 temporal x 3 spatial views of each segment. `--views TxS` does the same here:
- Temporal: T clips whose centres `sampling.segment_clip_centres` spreads evenly over the segment (the
  first and last clip just inside it; all at its centre when the segment is shorter than a clip), i.e.
  the clips extraction caches with `--eval-clips T`. The official loader instead starts view k at
  delta * k / T frames into the segment (delta = segment frames - clip frames, k = 0..T-1), so its
  views lean towards the start (the last one ends delta / T before the segment does, and T=1 is the
  segment's first clip), and it repeats the segment's boundary frames where the segment is shorter
  than a clip. The symmetric rule is kept so that 1x1 is the centre clip and the T clips of Tx1 are
  those cached.
- Spatial: S=3 decodes the frames whole at the plan's decode size (short side) and takes three square
  crops along the long side, left/top, centre, right/bottom (`frames.square_crops`: the official
  uniform_crop positions, the centre one within a pixel), each resized to the teacher's input as every
  teacher frame is; S=1 is the centre crop.
- 1x1 is each segment's centre clip with the centre crop, decoded under extraction's frame plan and
  run by its teacher build (`extract_worker.load_teacher`) and inference loop (`run_teacher`), so its
  logits are those `extract --eval-clips 1` caches. With 3 crops it is the centre crop of the same
  decode, which is byte-identical to the single-crop path.
An audio teacher (TeacherSpec.input "audio") gets each view's audio window instead, its log spectrogram
as extraction caches it (Tx1 only: audio has no spatial views).
Both settings are scored by core/metrics.py's `evaluate_predictions` (the mean softmax per segment) on
the same segments: a segment counts only if every one of its views decoded; the others are listed with
the reason. Frames are decoded and run a few segments at a time, so memory does not grow with the split.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from egocache.core.device import resolve_device
from egocache.core.files import write_json_atomic
from egocache.core.metrics import Predictions, evaluate_predictions
from egocache.errors import ClipError, ConfigError, EgocacheError
from egocache.pipeline.datasets import Clip
from egocache.pipeline.extract_worker import TeacherKey, load_teacher, shared_heads
from egocache.pipeline.frames import ClipFrames, FramePlan, decode_clip_frames
from egocache.pipeline.options import TeacherTestOptions, parse_views
from egocache.pipeline.sampling import clip_seconds, segment_clip_centres
from egocache.pipeline.teachers import is_spec_file, teacher_reference
from egocache.pipeline.teachers.base import run_teacher

CENTRE = "1x1"
CHUNK_BATCHES = 4      # views decoded and run at once, in teacher batches (rounded up to whole segments)


@dataclass
class TeacherTest:
    """A test-teacher run: per setting ("1x1", "TxS") the views' predictions and the metrics."""

    teacher: str
    checkpoint: str | None
    dataset: str
    split: str
    views: tuple[int, int]                     # (clips per segment, spatial crops)
    decode_size: int
    segment_ids: list[str]                     # evaluated segments; Predictions.segments index them
    motion_pair_verbs: list[str] | None
    predictions: dict[str, Predictions]
    metrics: dict[str, dict[str, Any]]
    failures: list[str]                        # "segment_id: reason", one per segment left out
    seconds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (no logits)."""
        t, s = self.views
        n = len(self.segment_ids)
        results = {k: {"views_per_segment": len(self.predictions[k].segments) // n, **m}
                   for k, m in self.metrics.items()}
        return {"teacher": self.teacher, "checkpoint": self.checkpoint, "dataset": self.dataset,
                "split": self.split, "views": f"{t}x{s}", "temporal_views": t, "spatial_crops": s,
                "decode_size": self.decode_size, "segments": n, "segments_failed": len(self.failures),
                "motion_pair_verbs": self.motion_pair_verbs, "results": results, "failures": self.failures,
                "seconds": self.seconds}

    def table(self) -> str:
        """The human summary: per-segment top-1 of each head and on the motion-pair verbs, per setting."""
        names = list(self.metrics)
        first = self.metrics[names[0]]
        label = {k: "centre clip (1x1)" if k == CENTRE else f"{k} ({self.views[0] * self.views[1]} views)"
                 for k in names}
        rows: list[tuple[str, list[str]]] = []
        for head in first["heads"]:
            rows.append((f"{head} top-1", [_pct(self.metrics[k]["heads"][head]["top1_acc"]) for k in names]))
        if self.motion_pair_verbs:
            n = first["heads"][first["main_head"]]["motion_pairs_segments"]
            rows.append((f"motion-pair verbs top-1 ({n} segments)",
                         [_pct(self.metrics[k]["motion_pairs_top1_acc"]) for k in names]))
            rows.append(("  true verb above its partner", [_pct(self.metrics[k]["motion_pairs_within_acc"])
                                                            for k in names]))
        width = max(len(r[0]) for r in rows)
        cols = [max(len(label[k]), 6) for k in names]
        lines = [f"{self.teacher} ({self.checkpoint or 'seeded random init'}) on {len(self.segment_ids)} "
                 f"{self.split} segments of {self.dataset}, per-segment top-1 (%)",
                 " " * width + "".join(f"  {label[k]:>{w}}" for k, w in zip(names, cols))]
        lines += [f"{name:<{width}}" + "".join(f"  {v:>{w}}" for v, w in zip(values, cols)) for name, values in rows]
        if not self.motion_pair_verbs:
            lines.append("motion-pair verbs: none declared (the dataset metadata file's motion_pairs)")
        if self.failures:
            lines.append(f"{len(self.failures)} segments left out (a view could not be decoded), e.g. "
                         f"{self.failures[0]}")
        lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()))
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    """A fraction as a percentage with one decimal; '-' when there was nothing to score."""
    return "-" if value is None else f"{100 * value:.1f}"


def view_centres(clip: Clip, temporal: int) -> list[float]:
    """Centres (s) of the `temporal` clips spread over `clip`'s segment (segment_clip_centres)."""
    return segment_clip_centres(clip.segment_start_s, clip.segment_stop_s, temporal)


def audio_views(path: str, centres: list[float], seconds: float) -> list[ClipFrames | ClipError]:
    """An audio teacher's view of each clip centre: its window's log spectrogram (float16, as cached) in
    place of the teacher frames, or the AudioError why there is none."""
    from egocache.pipeline.audio import video_spectrograms

    windows = video_spectrograms(path, [c - seconds / 2 for c in centres], seconds)
    return [w if isinstance(w, ClipError) else ClipFrames(w, np.zeros(0, np.uint8))
            for w in windows]


def _split_views(part: list[Clip], decoded: list[ClipFrames | ClipError], crops: int, kept: list[Clip],
                 failures: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One chunk's decoded clips (per segment its centre clip, then its view clips) -> the centre views
    (centre crop) and the other views (clip by clip, crop by crop) of the segments whose clips all
    decoded, which are appended to `kept`; each other segment adds a line to `failures`."""
    per = len(decoded) // len(part)
    single: list[np.ndarray] = []
    views: list[np.ndarray] = []
    for i, clip in enumerate(part):
        got = decoded[i * per:(i + 1) * per]
        bad = next((g for g in got if isinstance(g, ClipError)), None)
        if bad is not None:
            failures.append(f"{clip.segment_id}: {bad}")
            continue
        frames = [g.teacher for g in got if not isinstance(g, ClipError)]
        kept.append(clip)
        single.append(frames[0][1] if crops > 1 else frames[0])
        views += [v for f in frames[1:] for v in f] if crops > 1 else frames[1:]
    return single, views


def evaluate_teacher(opts: TeacherTestOptions, *, log: Callable[[str], None] = print) -> TeacherTest:
    """Run the teacher on every view of the split's segments and score each setting; writes opts.out if set."""
    began = time.perf_counter()
    temporal, crops = parse_views(opts.views)
    manifest = opts.load_manifest()
    for line in manifest.problems:
        log(f"skipped annotation {line}")
    segments = [c for c in manifest.clips if c.split == opts.split]
    if not segments:
        splits = ", ".join(sorted({c.split for c in manifest.clips})) or "none"
        raise ConfigError(f"--split {opts.split}: no segments of {', '.join(opts.annotations)} in this split "
                          f"(splits: {splits})")
    heads = tuple((h, len(names)) for h, names in manifest.class_names.items())
    device = str(resolve_device(opts.device))
    checkpoint = os.path.abspath(opts.checkpoint) if opts.checkpoint else None
    fixed_heads = checkpoint or is_spec_file(opts.teacher)     # a checkpoint's or an external model's own
    model = load_teacher(TeacherKey(teacher_reference(opts.teacher), checkpoint, () if fixed_heads else heads,
                                    tuple(sorted(opts.teacher_overrides)), device))
    heads = shared_heads(model.spec.heads, heads, opts.checkpoint or opts.teacher)
    spec = model.spec
    audio = spec.input == "audio"
    if audio and crops > 1:
        raise ConfigError(f"--views {opts.views}: {opts.teacher} takes the clips' audio, which has no spatial "
                          f"views; use --views {temporal}x1")
    plan = FramePlan(spec.num_frames, spec.frame_stride, spec.img_size, (), opts.frame_size, spatial_crops=crops)
    multi = f"{temporal}x{crops}" if (temporal, crops) != (1, 1) else None
    per_segment = 1 + (temporal * crops if multi else 0)          # views run per segment
    log(f"{opts.teacher}: {len(segments)} {opts.split} segments, {per_segment} view(s) each "
        f"({CENTRE}{' + ' + multi if multi else ''}), "
        + ("audio windows of the clips" if audio else f"decoded at {plan.decode_size} px"))

    kept: list[Clip] = []
    failures: list[str] = []
    logits: dict[str, list[dict[str, np.ndarray]]] = {CENTRE: [], **({multi: []} if multi else {})}
    decode_s = teacher_s = 0.0
    chunk = max(1, math.ceil(CHUNK_BATCHES * opts.batch_size / per_segment))
    by_video: dict[str, list[Clip]] = {}
    for clip in segments:
        by_video.setdefault(clip.video_path, []).append(clip)
    bar = tqdm(total=len(segments), unit="segment", desc="test-teacher", disable=not opts.progress)
    for path, clips in by_video.items():
        for lo in range(0, len(clips), chunk):
            part = clips[lo:lo + chunk]
            t0 = time.perf_counter()
            centres = [c for clip in part for c in [clip.centre_s] + (view_centres(clip, temporal) if multi else [])]
            decoded = (audio_views(path, centres, clip_seconds(spec.num_frames, spec.frame_stride)) if audio else
                       decode_clip_frames(path, centres, plan, fps=part[0].frames_fps)[0])
            single, views = _split_views(part, decoded, crops, kept, failures)
            decode_s += time.perf_counter() - t0
            if single:
                t0 = time.perf_counter()
                _, out = run_teacher(model, np.stack(single + views), device, opts.batch_size)
                out = {h: out[h] for h, _ in heads}
                logits[CENTRE].append({h: v[:len(single)] for h, v in out.items()})
                if multi:
                    logits[multi].append({h: v[len(single):] for h, v in out.items()})
                teacher_s += time.perf_counter() - t0
            bar.update(len(part))
    bar.close()
    for line in failures:
        log(f"left out segment {line}")
    if not kept:
        raise EgocacheError(f"none of the {len(segments)} {opts.split} segments could be decoded; "
                            f"first: {failures[0]}")
    labels = {h: np.array([c.labels.get(h, -1) for c in kept], np.int64) for h, _ in heads}
    predictions: dict[str, Predictions] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for name, parts in logits.items():
        repeat = 1 if name == CENTRE else temporal * crops
        pred = Predictions({h: np.concatenate([p[h] for p in parts]) for h, _ in heads},
                           {h: np.repeat(v, repeat) for h, v in labels.items()},
                           np.repeat(np.arange(len(kept), dtype=np.int64), repeat))
        predictions[name] = pred
        metrics[name] = evaluate_predictions(pred, manifest.class_names, motion_verbs=manifest.motion_pair_verbs)
    result = TeacherTest(
        teacher=opts.teacher, checkpoint=opts.checkpoint, dataset=manifest.dataset, split=opts.split,
        views=(temporal, crops), decode_size=plan.decode_size, segment_ids=[c.segment_id for c in kept],
        motion_pair_verbs=manifest.motion_pair_verbs, predictions=predictions, metrics=metrics,
        failures=failures, seconds={"decode": round(decode_s, 3), "teacher": round(teacher_s, 3),
                                    "total": round(time.perf_counter() - began, 3)})
    if opts.out is not None:
        write_json_atomic(opts.out, result.to_dict())
    return result
