"""`egocache predict`: a student (and optionally its teacher) over every window of one video.

The student comes from a run folder (torch, `StudentRunner.from_run`) or an exported ONNX file
(onnxruntime, `OnnxRunner`); its saved inputs fix the windows' geometry, frame size and IMU window.
Windows slide over the whole video (`stream.sliding_windows`); each model makes its own streamed pass
(`stream.run_pass`), so the student's cost is what deploying it costs: N decoded frames and one IMU
window per clip. `--teacher` adds the heavy path over the same windows: dense T-frame clips at the
teacher's input size through the teacher registry and `teachers.base.run_teacher`. Outputs: per model
`predictions.csv` / `predictions.json` (teacher: `teacher_predictions.*`) and `timeline.png`; with
`--annotations`, ground-truth bands and per-segment accuracy (`truth.py`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from egocache.deploy.options import PredictOptions
from egocache.deploy.outputs import plot_timeline, write_predictions
from egocache.deploy.runner import OnnxRunner, Runner, StudentRunner
from egocache.deploy.stream import ClipModel, PassResult, Window, per_minute, run_pass, sliding_windows
from egocache.deploy.truth import TruthSegment, read_truth, segment_accuracy
from egocache.errors import ConfigError, DecodeError
from egocache.pipeline.frames import FramePlan, source_info


@dataclass
class PredictResult:
    """What a predict run did: the windows, each model's pass and accuracy, and the files it wrote."""

    video: str
    fps: float
    duration_s: float
    stride_s: float
    windows: list[Window]
    passes: list[PassResult]
    accuracy: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)   # model -> the JSON header it wrote

    def lines(self) -> list[str]:
        """The human summary the CLI prints."""
        out = []
        for r in self.passes:
            failed = [e.split(":", 1)[0] for e in r.errors if e]
            kinds = ", ".join(f"{failed.count(k)} {k}" for k in sorted(set(failed)))
            pm = per_minute(r, self.duration_s)
            out.append(f"{r.model} ({r.description}): {len(r.errors)} windows ({len(failed)} failed"
                       f"{': ' + kinds if kinds else ''}) in {r.wall_s:.1f} s, "
                       f"{len(r.errors) / max(r.wall_s, 1e-9):.1f} clips/s; per minute of video: "
                       + ", ".join(f"{k} {pm[k]:.2f} s" for k in ("decode", "imu", "model", "wall")))
            acc = self.accuracy.get(r.model, {}).get("metrics")
            if acc is not None:
                heads = ", ".join(f"{h} {100 * m['top1_acc']:.1f}%" for h, m in acc["heads"].items()
                                  if m["top1_acc"] is not None)
                out.append(f"  per-segment top-1 ({acc['heads'][acc['main_head']]['segments']} segments): {heads}")
        if self.agreement:
            out.append("student/teacher top-1 agreement over the windows both ran: "
                       + ", ".join(f"{h} {100 * v:.1f}%" for h, v in self.agreement.items()))
        return out + [f"{k}: {p}" for k, p in self.files.items()]


def student_model(runner: Runner) -> ClipModel:
    """The pass model of a student runner: its training clip geometry, student frames only."""
    inp = runner.inputs
    plan = FramePlan(inp.clip_frames, inp.clip_stride, inp.teacher_size, inp.positions, inp.frame_size,
                     teacher_frames=False)
    kind = "onnxruntime" if isinstance(runner, OnnxRunner) else "torch"
    if inp.needs_audio:
        def run(frames: np.ndarray, audio: np.ndarray | None) -> dict[str, np.ndarray]:
            return runner.logits(frames, audio=audio)
    else:
        run = runner.logits
    return ClipModel("student", plan, dict(inp.heads), run, needs_imu=inp.needs_imu,
                     imu_rate_hz=inp.imu_rate_hz, imu_window=inp.imu_window, needs_audio=inp.needs_audio,
                     audio_seconds=float(inp.audio.get("window_seconds", inp.clip_seconds)),
                     description=f"{inp.variant} N={inp.frames} {inp.frame_size}px, {kind}, {runner.source}")


def teacher_model(name: str, *, checkpoint: str | None, overrides: dict[str, Any], device: Any,
                  batch_size: int, names: dict[str, list[str]]) -> ClipModel:
    """The heavy path: teacher `name` on dense clips at its input size (a seeded init without `checkpoint`).

    Class names come from the checkpoint (train-teacher saves them), else from `names` (the student's)
    for heads of the same size, else class_<i>; without a checkpoint the heads take the student's sizes.
    """
    import torch

    from egocache.pipeline.extract_worker import INIT_SEED
    from egocache.pipeline.teachers import create_teacher, is_spec_file, read_teacher_checkpoint
    from egocache.pipeline.teachers.base import run_teacher

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        model = create_teacher(name, checkpoint=checkpoint, heads=None if checkpoint or is_spec_file(name) else
                               {h: len(c) for h, c in names.items()}, **overrides)
    model = model.to(device).eval()
    spec = model.spec
    if spec.input != "rgb":
        raise ConfigError(f"--teacher {name}: predict runs a teacher on the frames it decodes, and {name} takes "
                          f"the clips' {spec.input}; score it with test-teacher")
    saved = read_teacher_checkpoint(checkpoint).get("class_names") if checkpoint else None
    heads = {}
    for h, count in spec.heads.items():
        for candidate in ((saved or {}).get(h), names.get(h)):
            if isinstance(candidate, list) and len(candidate) == count:
                heads[h] = [str(c) for c in candidate]
                break
        else:
            heads[h] = [f"class_{i}" for i in range(count)]

    def run(frames: np.ndarray, imu: np.ndarray | None) -> dict[str, np.ndarray]:
        return run_teacher(model, frames, device, batch_size)[1]

    plan = FramePlan(spec.num_frames, spec.frame_stride, spec.img_size)
    return ClipModel("teacher", plan, heads, run, teacher=True,
                     description=f"{name} {spec.num_frames}x{spec.img_size}px, {checkpoint or 'seeded random init'}")


def open_imu(opts: PredictOptions) -> Any:
    """The video's IMU stream from --imu (format from --imu-format or guessed); None without --imu."""
    from egocache.pipeline.imu import guess_imu_format, read_imu

    if not opts.imu:
        return None
    fmt = opts.imu_format or ("epic100" if len(opts.imu) == 2 else guess_imu_format(opts.imu[0]))
    return read_imu(fmt, tuple(opts.imu))


def agreement(a: PassResult, b: PassResult) -> dict[str, float]:
    """Per head shared by name and classes: fraction of windows both ran whose top-1 classes agree."""
    both = a.ok & b.ok
    out = {}
    for h, names in a.heads.items():
        if b.heads.get(h) == names and both.any():
            out[h] = float((a.logits[h][both].argmax(1) == b.logits[h][both].argmax(1)).mean())
    return out


def load_runner(opts: PredictOptions) -> Runner:
    """The student of --run (torch) or --onnx (onnxruntime)."""
    if opts.onnx is not None:
        return OnnxRunner(opts.onnx)
    return StudentRunner.from_run(opts.run, weights=opts.weights, device=opts.device)


def predict_video(opts: PredictOptions, *, log: Callable[[str], None] = print) -> PredictResult:
    """Run the student (and --teacher) over every window of opts.video; write the predictions and timeline."""
    from egocache.core.device import resolve_device
    from egocache.pipeline.rgb_frames import is_frame_folder

    if not os.path.exists(opts.video):
        raise DecodeError(f"VIDEO {opts.video}: no such file or folder")
    if is_frame_folder(opts.video) and opts.fps is None:
        raise ConfigError(f"--fps: VIDEO {opts.video} is an RGB-frame folder; give its frame rate")
    runner = load_runner(opts)
    student = student_model(runner)
    inp = runner.inputs
    if inp.needs_imu and not opts.imu:
        raise ConfigError(f"--imu: student variant {inp.variant} reads IMU windows; give the video's IMU file(s)")
    imu = open_imu(opts) if inp.needs_imu else None
    if opts.imu and not inp.needs_imu:
        log(f"note: student variant {inp.variant} has no IMU branch; --imu is not read")
    num_frames, fps = source_info(opts.video, opts.fps)
    stride = opts.stride or inp.clip_seconds
    windows = sliding_windows(num_frames, fps, student.plan, stride)
    if not windows:
        raise DecodeError(f"VIDEO {opts.video}: {num_frames / fps:.2f} s is shorter than one "
                          f"{inp.clip_seconds:.3f} s clip")
    truth: list[TruthSegment] | None = None
    if opts.annotations:
        truth, problems = read_truth(opts.dataset, opts.annotations, opts.video, list(inp.heads),
                                     video_id=opts.video_id)
        if problems:
            log(f"annotations: {len(problems)} row(s) skipped, e.g. {problems[0]}")
    models = [student]
    if opts.teacher is not None:
        models.append(teacher_model(opts.teacher, checkpoint=opts.checkpoint, overrides=dict(opts.teacher_overrides),
                                    device=resolve_device(opts.device), batch_size=opts.batch_size,
                                    names=dict(inp.heads)))
    passes = [run_pass(opts.video, windows, m, imu_stream=imu if m.needs_imu else None, fps=opts.fps,
                       batch_size=opts.batch_size, decode_threads=opts.decode_threads, progress=opts.progress)
              for m in models]
    result = PredictResult(os.path.abspath(opts.video), fps, num_frames / fps, stride, windows, passes)
    if truth is not None:
        result.accuracy = {p.model: segment_accuracy(p, windows, truth) for p in passes}
    if len(passes) == 2:
        result.agreement = agreement(passes[0], passes[1])
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    for p in passes:
        result.summaries[p.model] = _summary(result, p)
        result.files.update(write_predictions(out, "" if p.model == "student" else f"{p.model}_", p, windows,
                                              k=opts.top_k, truth=truth, summary=result.summaries[p.model]))
    result.files["timeline"] = plot_timeline(out / "timeline.png", passes, windows, truth, result.accuracy)
    return result


def _summary(result: PredictResult, p: PassResult) -> dict[str, Any]:
    """The JSON header of one model's predictions: what ran on what, how it went, what it cost."""
    failed = [e for e in p.errors if e]
    return {
        "video": result.video, "fps": result.fps, "duration_s": result.duration_s, "model": p.model,
        "description": p.description, "heads": p.heads, "stride_s": result.stride_s,
        "num_windows": len(p.errors), "windows_failed": len(failed),
        "failures": {k: sum(e.startswith(k + ":") for e in failed) for k in ("decode", "imu")},
        "seconds": {**p.seconds, "wall": p.wall_s}, "seconds_per_minute": per_minute(p, result.duration_s),
        "clips_per_s": len(p.errors) / max(p.wall_s, 1e-9),
        "frames_decoded_per_window": p.frames_decoded / max(len(p.errors) - len(failed), 1),
        "accuracy": result.accuracy.get(p.model),
        "agreement_with_student": (result.agreement or None) if p.model != "student" else None,
    }
