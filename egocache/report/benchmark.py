"""`egocache benchmark`: cost and accuracy of the teacher and every trained student, as a report.

For a cache and a folder of student runs it measures GFLOPs per clip (1 multiply-add = 1 FLOP),
parameters, latency per clip at a batch size, and per-segment top-1 (overall and on the motion-pair
verbs), then writes report.md, report.json, results.csv and the two figures of the paper (accuracy
vs. GFLOPs, per-class gain of EgoDistill over VisOnly-Distill). The teacher's accuracy comes from the
logits in the cache; it is built only to count its cost (on the meta device) and time it.
`--paper-configs` does the same for the full-size models without any data.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egocache.report.hits import Hits, motion_subset, prediction_hits, stack_runs, teacher_predictions
from egocache.report.intervals import RESAMPLES, estimate
from egocache.report.options import BenchmarkOptions
from egocache.report.measure import (latency_ms, student_cost, student_inputs, teacher_cost,
                                        teacher_inputs)
from egocache.report.plots import plot_accuracy_vs_gflops, plot_per_class_gain, plot_reliability
from egocache.report.results import ModelResult, markdown_table, write_csv, write_json
from egocache.core.device import resolve_device
from egocache.core.files import write_text_atomic
from egocache.errors import EgocacheError
from egocache.pipeline.sampling import clip_seconds
from egocache.pipeline.teachers import create_teacher, is_spec_file
from egocache.student.evaluate import SEGMENTS_FILE
from egocache.student.models import Student, build_student

PAPER_TABLE3 = {  # EgoDistill paper, Table 3 (A40 GPU, batch 32): GFLOPs, runtime ms, params M
    "mformer": (369.51, 10.70, 108.91),
    "egodistill": (1.91, 0.25, 20.56),
}


@dataclass
class Report:
    """What a benchmark wrote: its rows and the paths of its files."""

    rows: list[ModelResult]
    files: dict[str, Path]
    table: str


def find_runs(runs: Path) -> list[Path]:
    """Run folders under `runs` (itself included) holding a finished student: metrics.json + a checkpoint."""
    found = [p.parent for p in sorted(Path(runs).rglob("metrics.json"))
             if (p.parent / "best.pt").exists() or (p.parent / "last.pt").exists()]
    return [p for p in found if p.name != "pretrain"]


def load_student(run: Path) -> tuple[Student, dict[str, Any]]:
    """The run's last student and its final metrics.json (the same epoch; best.pt if no last.pt)."""
    import json

    from egocache.student.checkpoint import student_from_checkpoint

    student, _ = student_from_checkpoint(run / "last.pt" if (run / "last.pt").exists() else run / "best.pt")
    return student, json.loads((run / "metrics.json").read_text())


def _accuracy(metrics: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, float], list[list[float]]]:
    """(accuracy and calibration figures, per-class accuracy, reliability bins) of the main head of an
    evaluation (core/metrics.evaluate_predictions); metrics of runs from before calibration lack those."""
    main = metrics.get("main_head")
    head = metrics.get("heads", {}).get(main, {}) if main else {}
    acc = {"top1": metrics.get("top1_acc"), "motion_pairs_top1": metrics.get("motion_pairs_top1_acc"),
           "mean_class": metrics.get("mean_class_acc"), **{k: metrics.get(k) for k in ("ece", "nll", "brier")}}
    return acc, head.get("per_class_acc", {}), head.get("calibration", {}).get("reliability", [])


def accuracy_intervals(hits: Hits, motion_ids: set[int]) -> dict[str, tuple[float, float]]:
    """95 % bootstrap intervals over the validation segments of top-1 and of motion-pair top-1."""
    found = {"top1": estimate(hits.hits).segments}
    pairs = motion_subset(hits, motion_ids)
    if motion_ids and len(pairs.hits):
        found["motion_pairs_top1"] = estimate(pairs.hits).segments
    return {k: v for k, v in found.items() if v is not None}


def _motion_ids(names: list[str], motion_verbs: list[str] | None) -> set[int]:
    """Class ids of the motion-pair verbs among a head's class names."""
    wanted = set(motion_verbs or ())
    return {i for i, n in enumerate(names) if n in wanted}


def _student_row(name: str, student: Student, metrics: dict[str, Any] | None, *, frame_size: int,
                 device: torch.device, batch: int, repeats: int, latency: bool,
                 intervals: dict[str, tuple[float, float]] | None = None) -> ModelResult:
    """Cost, latency and accuracy of one student."""
    gflops, params_m = student_cost(student, frame_size)
    ms = None
    if latency:
        model = student.to(device)
        inputs = student_inputs(student.frames, frame_size, batch, device, audio_shape=student.audio_shape)
        ms = latency_ms(lambda: model(inputs), batch=batch, device=device, repeats=repeats)
        student.to("cpu")
    acc: dict[str, float | None] = {}
    per_class: dict[str, float] = {}
    reliability: list[list[float]] = []
    if metrics is not None:
        acc, per_class, reliability = _accuracy(metrics)
    return ModelResult(name=name, variant=student.spec.name, frames=student.frames, gflops=gflops,
                       params_m=params_m, latency_ms=ms, accuracy=acc, per_class=per_class,
                       intervals=intervals or {}, reliability=reliability)


def teacher_metrics(cache: str, motion_verbs: list[str] | None) -> dict[str, Any]:
    """Per-segment accuracy of the teacher's cached logits on the validation split."""
    from egocache.core.metrics import evaluate_predictions

    pred, _, heads = teacher_predictions(cache)
    return evaluate_predictions(pred, heads, motion_verbs=motion_verbs)


def teacher_row(name: str, teacher: dict[str, Any], heads: dict[str, int], metrics: dict[str, Any] | None, *,
                device: torch.device | None, batch: int, repeats: int, latency: bool,
                intervals: dict[str, tuple[float, float]] | None = None) -> ModelResult:
    """Cost (counted on the meta device), latency (random weights, same arithmetic) and accuracy.

    `teacher` holds the registry name, architecture `config`, `num_frames`, `img_size` and `bgr`,
    as in a cache's root attributes.
    """
    external = is_spec_file(teacher["name"])      # its model file: counted on the CPU, then timed as is
    overrides = {"bgr": teacher["bgr"]} if external else {**teacher["config"], "bgr": teacher["bgr"]}
    build_heads = None if external else heads
    with contextlib.nullcontext() if external else torch.device("meta"):
        meta = create_teacher(teacher["name"], heads=build_heads, **overrides)
    gflops, params_m = teacher_cost(meta)
    ms = None
    if latency:
        model = create_teacher(teacher["name"], heads=build_heads, **overrides).to(device).eval()
        x = teacher_inputs(model, batch, device)
        ms = latency_ms(lambda: model(x), batch=batch, device=device, repeats=repeats)
    acc: dict[str, float | None] = {}
    per_class: dict[str, float] = {}
    reliability: list[list[float]] = []
    if metrics is not None:
        acc, per_class, reliability = _accuracy(metrics)
    return ModelResult(name=name, variant="teacher", frames=None, gflops=gflops, params_m=params_m,
                       latency_ms=ms, accuracy=acc, per_class=per_class, intervals=intervals or {},
                       reliability=reliability)


def per_class_gain(rows: list[ModelResult], frames: int) -> dict[str, float]:
    """Per-class accuracy of EgoDistill minus VisOnly-Distill at N frames (empty if either is missing)."""
    ego = next((r for r in rows if r.variant == "egodistill" and r.frames == frames), None)
    vis = next((r for r in rows if r.variant == "visonly-distill" and r.frames == frames), None)
    if ego is None or vis is None:
        return {}
    return {c: ego.per_class[c] - vis.per_class[c] for c in ego.per_class if c in vis.per_class}


def _write(rows: list[ModelResult], out: Path, *, title: str, notes: list[str], facts: dict[str, Any]) -> Report:
    """report.md, report.json, results.csv and the figures."""
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, clip_seconds=clip_seconds())
    files = {"json": write_json(rows, out / "report.json", **facts), "csv": write_csv(rows, out / "results.csv")}
    if any(r.accuracy.get("top1") is not None for r in rows):
        files["accuracy_vs_gflops"] = plot_accuracy_vs_gflops(rows, out / "accuracy_vs_gflops.png")
    if any(r.reliability for r in rows):
        files["reliability"] = plot_reliability(rows, out / "reliability.png")
    frames = sorted({r.frames for r in rows if r.frames})
    for n in frames:
        gains = per_class_gain(rows, n)
        if gains:
            files[f"gain_n{n}"] = plot_per_class_gain(
                gains, out / f"per_class_gain_n{n}.png",
                title=f"Per-class top-1 gain of EgoDistill over VisOnly-Distill (N={n})")
    md = [f"# {title}", "", table, "", *[f"- {n}" for n in notes]]
    md += [f"- {k}: {v}" for k, v in sorted(facts.items())]
    md += ["", *[f"![{k}]({p.name})" for k, p in files.items() if p.suffix == ".png"]]
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")
    files["md"] = out / "report.md"
    return Report(rows=rows, files=files, table=table)


def benchmark_cache(cache: str, runs: str, out: str, *, device: str = "cpu", batch: int = 32,
                    repeats: int = 5, latency: bool = True, skip_verify: bool = False) -> Report:
    """Benchmark the cache's teacher and every student run found under `runs`."""
    from egocache.cache import open_cache, read_attrs
    from egocache.cache.verify import ensure_verified

    dev = resolve_device(device)
    read_attrs(cache)
    ensure_verified(cache, skip=skip_verify, warn=lambda m: print(m, file=sys.stderr))
    info = open_cache(cache)
    motion = info.source.get("motion_pair_verbs")
    heads = {h: len(names) for h, names in info.heads.items()}
    t_metrics = t_intervals = None
    if "validation" in info.splits:
        from egocache.core.metrics import evaluate_predictions

        pred, segment_ids, names = teacher_predictions(cache)
        t_metrics = evaluate_predictions(pred, names, motion_verbs=motion)
        main = t_metrics["main_head"]
        t_intervals = accuracy_intervals(prediction_hits(pred, segment_ids, main, names[main]),
                                         _motion_ids(names[main], motion))
    rows = [teacher_row(info.teacher["name"], info.teacher, heads, t_metrics, device=dev, batch=batch,
                         repeats=repeats, latency=latency, intervals=t_intervals)]
    run_dirs = find_runs(Path(runs))
    if not run_dirs:
        raise EgocacheError(f"{runs}: no finished student run (a folder with metrics.json and best.pt/last.pt)")
    frame_size = int(info.sampling["frame_size"])
    without_segments = []
    for run in run_dirs:
        student, metrics = load_student(run)
        main = metrics.get("main_head")
        intervals = None
        if main and (run / SEGMENTS_FILE).is_file():
            hits = stack_runs([run / SEGMENTS_FILE], main, info.heads[main])
            intervals = accuracy_intervals(hits, _motion_ids(info.heads[main], motion))
        else:
            without_segments.append(run.name)
        rows.append(_student_row(str(run.relative_to(runs)) if run != Path(runs) else run.name, student,
                                 metrics, frame_size=frame_size, device=dev, batch=batch, repeats=repeats,
                                 latency=latency, intervals=intervals))
    rows.sort(key=lambda r: (r.variant != "teacher", r.variant, r.frames or 0))
    notes = [f"accuracy: per-segment top-1 on the validation split (clip predictions averaged), "
             f"motion pairs: {', '.join(motion) if motion else 'not declared by the cache'}",
             f"latency: median of {repeats} batches of {batch} after warm-up on {dev}; the teacher's from "
             f"its preprocessed input, students' from uint8 frames and IMU (listentolook: and the clip's log "
             f"spectrogram, computed at extraction)",
             f"50-min video: {50 * 60 / clip_seconds():.0f} consecutive {clip_seconds():.2f}-s clips at that latency",
             f"[low, high]: 95 % percentile bootstrap over the validation segments ({RESAMPLES} resamples)"
             + (f"; none for runs without {SEGMENTS_FILE}: {', '.join(without_segments)}" if without_segments
                else "")]
    return _write(rows, Path(out), title=f"egocache benchmark: {cache}", notes=notes,
                  facts={"cache": cache, "runs": runs, "device": str(dev), "batch": batch,
                         "frame_size": frame_size})


def benchmark_paper_configs(out: str, *, device: str = "cpu", batch: int = 32, repeats: int = 3,
                            latency: bool = False, frame_size: int = 224) -> Report:
    """Full-size mformer (16x224^2), EgoDistill and ListenToLook N=1,2,4 at 224^2: GFLOPs, params, latency
    (opt.)."""
    from egocache.pipeline.teachers import teacher_spec

    dev = resolve_device(device)
    spec = teacher_spec("mformer")
    teacher = {"name": "mformer", "config": spec.config, "num_frames": spec.num_frames,
               "img_size": spec.img_size, "bgr": spec.bgr}
    rows = [teacher_row("mformer", teacher, dict(spec.heads), None, device=dev, batch=batch,
                         repeats=repeats, latency=latency)]
    from egocache.pipeline.audio import FREQ_BINS, spectrogram_frames

    audio_shape = (FREQ_BINS, spectrogram_frames(clip_seconds()))
    for variant in ("egodistill", "listentolook"):
        for n in (1, 2, 4):
            student = build_student(variant, frames=n, feature_dim=spec.feature_dim,
                                    heads={"verb": spec.heads["verb"]}, audio_shape=audio_shape)
            rows.append(_student_row(f"{variant}-n{n}", student.eval(), None, frame_size=frame_size,
                                     device=dev, batch=batch, repeats=repeats, latency=latency))
    t, e = rows[0], rows[1]
    notes = [f"GFLOPs ratio mformer / EgoDistill N=1: {t.gflops / e.gflops:.0f}x "
             f"(paper Table 3: {PAPER_TABLE3['mformer'][0] / PAPER_TABLE3['egodistill'][0]:.0f}x)",
             f"paper Table 3: mformer {PAPER_TABLE3['mformer'][0]} GFLOPs, {PAPER_TABLE3['mformer'][2]} M params; "
             f"EgoDistill {PAPER_TABLE3['egodistill'][0]} GFLOPs, {PAPER_TABLE3['egodistill'][2]} M params "
             f"(A40, batch 32: {PAPER_TABLE3['mformer'][1]} vs {PAPER_TABLE3['egodistill'][1]} ms/clip)",
             "students: verb head only (97 EPIC verbs), IMU 422x6 (listentolook: a 201x211 log spectrogram, the "
             "2.13-s clip at 16 kHz, STFT 400/160); the pretrain predictor h is not counted",
             "latency " + (f"on {dev}, batch {batch}, random weights" if latency else "not measured (--latency)")]
    return _write(rows, Path(out), title="egocache benchmark: paper configurations", notes=notes,
                  facts={"device": str(dev), "batch": batch, "frame_size": frame_size})


def teacher_student_ratio(rows: list[ModelResult]) -> float | None:
    """Teacher GFLOPs over the cheapest student's, the paper's headline ~200x."""
    teacher = next((r for r in rows if r.variant == "teacher"), None)
    students = [r.gflops for r in rows if r.variant != "teacher"]
    return None if teacher is None or not students else float(teacher.gflops / np.min(students))


def run_benchmark(opts: BenchmarkOptions) -> Report:
    """The report `egocache benchmark` asks for: the paper's configurations, or a cache and its runs."""
    if opts.paper_configs:
        latency = resolve_device(opts.device).type == "cuda" if opts.latency is None else opts.latency
        return benchmark_paper_configs(opts.out, device=opts.device, batch=opts.batch_size,
                                       repeats=opts.repeats, latency=latency)
    return benchmark_cache(str(opts.cache), str(opts.runs), opts.out, device=opts.device, batch=opts.batch_size,
                           repeats=opts.repeats, latency=True if opts.latency is None else opts.latency,
                           skip_verify=opts.skip_verify)
