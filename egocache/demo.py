"""`egocache demo`: the whole chain on the built-in synthetic dataset, scaled to finish on a 2-core CPU.

synth -> train-teacher (mformer-tiny) -> pretrain-image-encoder -> extract -> train the N=1 students
(egodistill, visonly-distill, visimu, visonly) -> benchmark. Each finished step leaves a marker in
OUT/steps/, so a re-run reuses it; an interrupted step resumes through the step's own resume logic.
Every step logs "[demo] step k/n NAME: ..." lines and the long ones their own progress.

What the demo scales down (the individual commands keep the paper's defaults), measured in
docs/results.md: 76 synthetic videos of 40 s at 160x120, every other one for validation (>= 316
validation segments for seeds 0-3, so that one segment is 0.3 points); three cached clips spread over
each training segment (`extract --train-clips 3`); the mformer-tiny teacher (2 blocks, dim 96, 8
frames at 64 px) with 8-px patches (`patch_size=8`: 8x8 tokens a frame; its 16-px default gives 4x4,
too coarse to follow the object's motion) trained from scratch for 12 epochs on 12 clips per training
segment (more clips of the same segments taught it the motion pairs better than more epochs on 4;
both measured in docs/results.md); the students' ResNet-18
pretrained for one epoch of 3,200 synthetic shape images (the ImageNet stand-in, never these videos)
and frozen, student frames at 64 px, lr 1e-3 (paper: 1e-4 over far more steps), batch 16, 3 pretrain
and 8 distill epochs. The self-supervised IMU stage is the same for egodistill and visimu at a given N
(same model, seed, data and loss), so it runs once, in the egodistill run, and visimu's distill stage
starts from its checkpoint. Synth's videos and the students run in `jobs` processes (2), visimu after
egodistill. Each student runs on 1 torch thread: on a 2-core CPU shared with other work, a student's
training step ran ~4x slower on 2 threads; the teacher and the image-encoder pretraining, big matrix
products, use one thread per CPU (both 1.8x faster than on 1 on an idle 2-core CPU,
benchmarks/threads.py).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from egocache.core.settings import check_settings, setting
from egocache.core.steps import Steps
from egocache.student.variants import list_variants


@dataclass(frozen=True)
class DemoConfig:
    """The demo's scale; `quick()` is the shortened chain the tests and `egocache demo --quick` run.

    The first four fields are `egocache demo` options; the rest fix the demo's scale.
    """

    out: str = setting("demo_out", path="new-dir",
                       help="Folder for the synthetic data, teacher, cache, student runs and report.")
    seed: int = setting(0, help="Seed of the data and every model.")
    workers: int = setting(1, min=1, help="Extraction worker processes (dask local cluster when > 1).")
    jobs: int = setting(2, min=1, help="Processes for the steps made of independent parts: synth's videos and "
                                       "the student runs (1: everything in this process, in order).")
    threads: int = setting(1, min=0, help="torch CPU threads per student run (0: one per CPU; 1 measured fastest "
                                          "on a shared 2-core CPU); the teacher and the image-encoder "
                                          "pretraining use one per CPU.")
    videos: int = 76                 # at validation_share 0.5: >= 316 validation segments for seeds 0-3
    video_size: tuple[int, int] = (160, 120)
    duration_s: float = 40.0
    validation_share: float = 0.5
    teacher: str = "mformer-tiny"
    teacher_epochs: int = 12
    teacher_options: tuple[tuple[str, Any], ...] = (("patch_size", 8),)   # 8x8 tokens a frame at 64 px
    teacher_train_clips: int = 12    # clips per training segment the teacher learns from (train-teacher --train-clips)
    encoder_images: int = 3200       # pretrain-image-encoder: one epoch of this many images (0: random init)
    encoder_batch_size: int = 32
    frame_size: int = 64
    train_clips: int = 3             # cached clips per training segment (extract --train-clips)
    frames: tuple[int, ...] = (1,)
    frame_selections: tuple[str, ...] = ("uniform",)
    variants: tuple[str, ...] = tuple(list_variants())
    pretrain_epochs: int = 3
    distill_epochs: int = 8
    batch_size: int = 16
    student_lr: float = 1e-3
    progress: bool = True
    student_options: dict[str, Any] = field(default_factory=dict)  # further TrainConfig overrides
    paper_configs: bool = True       # also count the full-size models (the demo's teacher is tiny)

    def __post_init__(self) -> None:
        """Check the declared settings."""
        check_settings(self)

    @classmethod
    def quick(cls, out: str, seed: int = 0) -> DemoConfig:
        """The shortened chain (~15 s): 4 short tiny videos, 1-2 epochs, N=1 only, three variants."""
        return cls(out=out, seed=seed, videos=4, video_size=(96, 72), duration_s=16.0, teacher_epochs=1,
                   teacher_train_clips=2, encoder_images=64, encoder_batch_size=16, validation_share=0.25,
                   frame_size=32, frames=(1,), variants=("egodistill", "visimu", "visonly-distill"),
                   pretrain_epochs=1, distill_epochs=2, batch_size=4, progress=False, paper_configs=False,
                   train_clips=1, jobs=1)


def student_plan(cfg: DemoConfig) -> list[tuple[str, str, int, str | None]]:
    """(run name, variant, N, pretrain run to start from) per student, the pretrain's owner first.

    visimu reuses egodistill's pretrain stage at the same N when both are trained (same model and
    loss there); otherwise it runs its own.
    """
    plan = []
    for n in cfg.frames:
        order = sorted(cfg.variants, key=lambda v: v != "egodistill")
        for variant in order:
            shared = variant == "visimu" and "egodistill" in cfg.variants
            plan.append((f"{variant}-n{n}", variant, n, f"egodistill-n{n}" if shared else None))
    return plan


WORLD_STEPS = 4   # synth, train-teacher, pretrain-image-encoder, extract


def build_world(cfg: DemoConfig, out: Path, steps: Steps, log: Callable[[str], None]) -> dict[str, Any]:
    """The synthetic world's steps (synth, teacher fine-tune, image-encoder pretraining, extract) under
    `out`; where their outputs are ("image_weights": None when cfg.encoder_images is 0)."""
    from egocache.core.device import torch_threads
    from egocache.pipeline.extract import extract
    from egocache.pipeline.options import ExtractOptions, TeacherTrainConfig
    from egocache.pipeline.train_teacher import train_teacher
    from egocache.student.config import PretrainEncoderOptions
    from egocache.student.pretrain_encoder import pretrain_image_encoder
    from egocache.synth import synthesize
    from egocache.synth.options import ImageSetOptions

    data, teacher_ckpt, cache = out / "data", out / "teacher.pyth", out / "cache.zarr"
    encoder = out / "resnet18-synthetic-shapes.pth"

    def synth() -> dict[str, Any]:
        if data.exists():  # an interrupted synth: start it again from empty
            import shutil
            shutil.rmtree(data)
        s = synthesize(str(data), videos=cfg.videos, seed=cfg.seed, size=cfg.video_size,
                       duration_s=cfg.duration_s, validation_share=cfg.validation_share, workers=cfg.jobs,
                       progress=cfg.progress)
        return {"root": s.root, "train_csv": s.train_csv, "validation_csv": s.validation_csv}

    made = steps.run("synth", synth)
    annotations = (made["train_csv"], made["validation_csv"])
    def teach() -> dict[str, Any]:
        with torch_threads(0):   # one per CPU: 1.8x faster than 1 on an idle 2-core CPU (docs/benchmarks.md)
            return train_teacher(TeacherTrainConfig(
                teacher=cfg.teacher, dataset="epic100", annotations=annotations, root=made["root"],
                teacher_overrides=tuple(cfg.teacher_options), out=str(teacher_ckpt), epochs=cfg.teacher_epochs,
                train_clips=cfg.teacher_train_clips, seed=cfg.seed,
                frame_size=cfg.frame_size, device="cpu", progress=cfg.progress), log=log)

    teacher = steps.run("train-teacher", teach)

    def pretrain_encoder() -> dict[str, Any]:
        if not cfg.encoder_images:
            return {"weights": None}
        opts = PretrainEncoderOptions(out=str(encoder), images=cfg.encoder_images, epochs=1,
                                      batch_size=cfg.encoder_batch_size, seed=cfg.seed, torch_threads=0,
                                      device="cpu", progress=cfg.progress)
        summary = pretrain_image_encoder(opts, ImageSetOptions(size=cfg.frame_size).build(), log=log)
        return {"weights": summary["weights"], "held_out": summary["held_out"]}

    pretrained = steps.run("pretrain-image-encoder", pretrain_encoder)
    extracted = steps.run("extract", lambda: extract(ExtractOptions(
        teacher=cfg.teacher, dataset="epic100", annotations=annotations, root=made["root"], cache=str(cache),
        checkpoint=str(teacher_ckpt), frame_size=cfg.frame_size, frames=tuple(cfg.frames),
        frame_selections=list(cfg.frame_selections), train_clips=cfg.train_clips, device="cpu",
        workers=cfg.workers, progress=cfg.progress)).to_dict())
    return {"cache": str(cache), "teacher": teacher, "extract": extracted, "data": made,
            "image_weights": pretrained["weights"], "encoder": pretrained}


def run_demo(cfg: DemoConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or finish) the demo chain under cfg.out; return where the report and plots are."""
    import torch

    from egocache.report.benchmark import benchmark_cache, benchmark_paper_configs
    from egocache.student.config import TrainConfig
    from egocache.student.pool import RunJob, train_pool

    if cfg.threads:
        torch.set_num_threads(cfg.threads)   # the students, extraction and the latency measurements
    out = Path(cfg.out).resolve()
    plan = student_plan(cfg)
    steps = Steps(out, WORLD_STEPS + len(plan) + 1 + cfg.paper_configs, log)
    runs, report = out / "runs", out / "report"
    began = time.perf_counter()
    world = build_world(cfg, out, steps, log)
    cache, teacher, extracted = world["cache"], world["teacher"], world["extract"]

    jobs = []
    for name, variant, n, shared in plan:
        init = str(runs / shared / "pretrain" / "last.pt") if shared else None
        tc = TrainConfig(cache=str(cache), out=str(runs / name), variant=variant, frames=n,
                         stage="distill" if shared else "all", init=init, seed=cfg.seed,
                         epochs=cfg.distill_epochs, pretrain_epochs=cfg.pretrain_epochs,
                         batch_size=cfg.batch_size, lr=cfg.student_lr, freeze_image_encoder=True,
                         image_weights=world["image_weights"], num_workers=0, device="cpu")
        jobs.append(RunJob(name, tc.with_overrides(**cfg.student_options).to_dict(), after=shared))
    students = {job.name: steps.reuse(f"train-{job.name}") for job in jobs}
    todo = [dataclasses.replace(job, after=None if students.get(job.after) else job.after)
            for job in jobs if students[job.name] is None]
    if todo:
        where = f", logs in {out / 'logs'}" if cfg.jobs > 1 else ""
        log(f"[demo] training {', '.join(job.name for job in todo)} ({min(cfg.jobs, len(todo))} at a time{where})")

    def finished(job: RunJob, headline: dict[str, Any], seconds: float) -> None:
        students[job.name] = steps.record(f"train-{job.name}", headline, seconds)

    train_pool(todo, workers=cfg.jobs, threads=cfg.threads, done=finished, logs=out / "logs" if cfg.jobs > 1 else None,
               log=log, progress=cfg.progress, what="demo student")

    bench = steps.run("benchmark", lambda: {"files": {k: str(p) for k, p in benchmark_cache(
        str(cache), str(runs), str(report), batch=32, repeats=3).files.items()}})
    table = (report / "report.md").read_text()
    if cfg.paper_configs:
        # The demo's teacher is scaled down to train on a CPU, so it is cheaper than a ResNet-18
        # student; the cost trade-off users pick egocache for is that of the full-size models.
        steps.run("paper-configs", lambda: {"files": {k: str(p) for k, p in benchmark_paper_configs(
            str(report / "paper-configs")).files.items()}})
        table += ("\nFull-size models (what the trade-off looks like at the paper's scale; the demo's "
                  "teacher above is scaled down to train on a CPU):\n\n"
                  + (report / "paper-configs" / "report.md").read_text().split("\n", 2)[2])
    return {"out": str(out), "report": str(report / "report.md"), "files": bench["files"], "table": table,
            "teacher": teacher, "extract": extracted, "students": students,
            "seconds": round(time.perf_counter() - began, 1), "config": asdict(cfg)}


def ablation_world(out: str, *, seed: int = 0, threads: int = 1, jobs: int = 2,
                   log: Callable[[str], None] = print) -> tuple[str, dict[str, Any]]:
    """The synthetic default of `egocache benchmark --ablations`: the demo's world, with every N of 1, 2, 4
    and every frame selection stored, and the demo's student settings (cache path, TrainConfig values)."""
    import dataclasses

    import torch

    from egocache.cache.selections import FRAME_SELECTIONS

    if threads:
        torch.set_num_threads(threads)
    cfg = dataclasses.replace(DemoConfig(out=out, seed=seed, threads=threads, jobs=jobs), frames=(1, 2, 4),
                              frame_selections=FRAME_SELECTIONS, paper_configs=False)
    world = build_world(cfg, Path(out).resolve(), Steps(Path(out), WORLD_STEPS, log, tag="ablations world"), log)
    base = {"epochs": cfg.distill_epochs, "pretrain_epochs": cfg.pretrain_epochs, "batch_size": cfg.batch_size,
            "lr": cfg.student_lr, "image_weights": world["image_weights"], **cfg.student_options}
    return world["cache"], base
