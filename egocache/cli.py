"""The `egocache` command: a click group whose commands parse options, call one library function, print.

Heavy imports (torch, decord, dask, zarr) happen inside command bodies so `egocache --help` is instant.
Library errors (EgocacheError) become one-line click errors with exit code 1.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from egocache import __version__
from egocache.errors import EgocacheError


def library_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EgocacheError raised by the library into a click error naming the reason."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EgocacheError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def echo_json(obj: Any) -> None:
    """Print `obj` as indented JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "EGOCACHE"})
@click.version_option(__version__, prog_name="egocache")
def main() -> None:
    """Cache a heavy egocentric video teacher once; distil light image+IMU students from the cache.

    Typical chain: `egocache extract --teacher mformer ...` -> `egocache train-student ...`
    -> `egocache benchmark ...`; `egocache demo` runs it all on built-in synthetic data.
    """


# --- commands are added below, one block per command -------------------------------------------


@main.command("teachers")
@click.option("--stats", is_flag=True,
              help="Also count parameters and GFLOPs per clip (1 MAC = 1 FLOP, measured on the meta device).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of one line per teacher.")
@library_errors
def teachers_command(stats: bool, as_json: bool) -> None:
    """List the registered teachers: clip shape, channel order, heads; with --stats, params and GFLOPs."""
    from egocache.pipeline.teachers import list_teachers, teacher_spec, teacher_stats

    rows = []
    for name in list_teachers():
        spec = teacher_spec(name)
        row = {"name": name, "tag": spec.tag, "num_frames": spec.num_frames,
               "frame_stride": spec.frame_stride, "img_size": spec.img_size, "bgr": spec.bgr,
               "feature_dim": spec.feature_dim, "heads": spec.heads}
        if stats:
            row.update({k: v for k, v in teacher_stats(name).items() if k != "name"})
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        heads = ",".join(f"{k}:{v}" for k, v in row["heads"].items())
        line = (f"{row['name']:<14} {row['num_frames']}x{row['img_size']}px stride {row['frame_stride']} "
                f"{'BGR' if row['bgr'] else 'RGB'}  heads {heads}  features {row['feature_dim']}")
        if stats:
            line += f"  {row['params_m']:.1f}M params  {row['gflops']:.4g} GFLOPs/clip"
        click.echo(line)


@main.command("info")
@click.argument("cache", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the human summary.")
@library_errors
def info_command(cache: str, as_json: bool) -> None:
    """Summarise CACHE: clips per split, ok/failed/pending, teacher, sampling, size on disk."""
    from egocache.cache import open_cache

    info = open_cache(cache)
    if as_json:
        echo_json(info.to_dict())
    else:
        click.echo(info.summary())


@main.command("verify")
@click.argument("cache", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@library_errors
def verify_command(cache: str, as_json: bool) -> None:
    """Check CACHE's schema, completeness and per-shard checksums; exit 0 if it passes, 1 if not."""
    from egocache.cache import verify_cache

    report = verify_cache(cache)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@main.command("export")
@click.argument("cache", type=click.Path(exists=True, file_okay=False))
@click.option("--hdf5", "out", required=True, type=click.Path(dir_okay=False),
              help="HDF5 file to write: the same arrays (JPEG frames decoded to uint8) and attributes.")
@library_errors
def export_command(cache: str, out: str) -> None:
    """Export CACHE to one HDF5 file."""
    from egocache.cache import export_hdf5

    click.echo(f"wrote {export_hdf5(cache, out)}")


@main.command("benchmark")
@click.option("--cache", type=click.Path(exists=True, file_okay=False),
              help="Cache whose teacher and validation split to benchmark.")
@click.option("--runs", type=click.Path(exists=True, file_okay=False),
              help="Folder holding student runs (each with metrics.json and best.pt/last.pt).")
@click.option("--out", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for report.md, report.json, results.csv and the plots.")
@click.option("--paper-configs", is_flag=True,
              help="Benchmark the full-size mformer (16x224^2) and EgoDistill N=1,2,4 at 224^2, no data needed.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Latency batch size.")
@click.option("--repeats", default=5, show_default=True, type=click.IntRange(1), help="Timed batches (median).")
@click.option("--latency/--no-latency", default=None,
              help="Measure latency (default: on for --cache runs; for --paper-configs only on cuda).")
@library_errors
def benchmark_command(cache: str | None, runs: str | None, out: str, paper_configs: bool, device: str,
                      batch_size: int, repeats: int, latency: bool | None) -> None:
    """GFLOPs, parameters, latency and accuracy of the teacher and every student; report and plots."""
    from egocache.report.benchmark import benchmark_cache, benchmark_paper_configs

    if paper_configs:
        report = benchmark_paper_configs(out, device=device, batch=batch_size, repeats=repeats,
                                         latency=device == "cuda" if latency is None else latency)
    elif cache and runs:
        report = benchmark_cache(cache, runs, out, device=device, batch=batch_size, repeats=repeats,
                                 latency=True if latency is None else latency)
    else:
        raise click.UsageError("give --cache and --runs, or --paper-configs")
    click.echo(report.table)
    click.echo("\n" + "\n".join(f"{k}: {p}" for k, p in report.files.items()))


# --- extract --------------------------------------------------------------------------------------
def _int_list(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    """Parse '1,2,4' into (1, 2, 4)."""
    try:
        out = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


def _key_values(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
                ) -> tuple[tuple[str, Any], ...]:
    """Parse repeated KEY=VALUE options; VALUE is read as YAML (numbers, booleans, lists)."""
    import yaml

    out = []
    for item in value:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out.append((key.strip(), yaml.safe_load(raw)))
    return tuple(sorted(out))


@main.command("extract")
@click.option("--teacher", required=True, help="Registered teacher name, e.g. mformer or mformer-tiny.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Teacher weights (e.g. ek_motionformer_224_16x4.pyth); seeded random init if omitted.")
@click.option("--teacher-option", "teacher_options", multiple=True, metavar="KEY=VALUE",
              callback=_key_values, help="Override a teacher setting (repeatable), e.g. img_size=32.")
@click.option("--dataset", type=click.Choice(["epic100", "ego4d", "manifest"]), required=True,
              help="Annotation format.")
@click.option("--annotations", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="Annotation file (repeatable: e.g. the train and validation CSVs).")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset root holding the videos and IMU files.")
@click.option("--cache", required=True, type=click.Path(file_okay=False), help="Output Zarr cache directory.")
@click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
              help="0 or 1: run in this process; N >= 2: a local dask cluster of N worker processes.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on an existing dask.distributed scheduler (e.g. tcp://host:8786) instead.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Teacher device: cuda runs bf16 autocast, cpu float32; auto picks cuda when available.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Clips per teacher forward pass.")
@click.option("--shard-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Clips per cache shard (= per task).")
@click.option("--frame-size", type=click.IntRange(min=8), default=224, show_default=True,
              help="Side of the stored student frames in pixels.")
@click.option("--student-frames", default="1,2,4", show_default=True, callback=_int_list,
              help="Student frame counts N to store frames for.")
@click.option("--first-last/--no-first-last", default=True, show_default=True,
              help="Also store each clip's first and last frame (self-supervised IMU stage).")
@click.option("--eval-clips", type=click.IntRange(min=1), default=3, show_default=True,
              help="Clips per validation segment.")
@click.option("--train-clips", type=click.IntRange(min=1), default=1, show_default=True,
              help="Clips per training segment, spread over it (more training data from few segments).")
@click.option("--frame-codec", type=click.Choice(["raw", "jpeg"]), default="raw", show_default=True,
              help="Stored frames: raw uint8 (fastest reads) or JPEG q90 (~7x smaller).")
@click.option("--decode-threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="ffmpeg threads per decoding worker (0 = one per core).")
@click.option("--strict", is_flag=True, help="Stop at the first bad annotation or clip (exit code 1).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option("--json", "json_out", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              help="Print the summary as JSON (or write it to FILE).")
@library_errors
def extract_cmd(teacher: str, checkpoint: str | None, teacher_options: tuple[tuple[str, Any], ...],
                dataset: str, annotations: tuple[str, ...], root: str, cache: str, workers: int,
                scheduler: str | None, device: str, batch_size: int, shard_size: int, frame_size: int,
                student_frames: tuple[int, ...], first_last: bool, eval_clips: int, train_clips: int,
                frame_codec: str, decode_threads: int, strict: bool, progress: bool, json_out: str | None
                ) -> None:
    """Run the teacher once over every clip and write features, logits, IMU and frames to a cache.

    Resumable: rerunning the same command after an interruption extracts only the missing shards.
    Bad clips are recorded with their reason and skipped (exit code 1 only if none succeeded).
    """
    from egocache.pipeline.extract import ExtractOptions, extract, format_summary

    opts = ExtractOptions(
        teacher=teacher, checkpoint=checkpoint, teacher_overrides=teacher_options, dataset=dataset,
        annotations=annotations, root=root, cache=cache, workers=workers, scheduler=scheduler,
        device=device, batch_size=batch_size, shard_size=shard_size, frame_size=frame_size,
        student_frames=student_frames, first_last=first_last, eval_clips=eval_clips, train_clips=train_clips,
        frame_codec=frame_codec, decode_threads=decode_threads, strict=strict, progress=progress)
    summary = extract(opts)
    if json_out == "-":
        echo_json(summary.to_dict())
    else:
        click.echo(format_summary(summary))
        if json_out:
            with open(json_out, "w", encoding="utf-8") as fh:
                json.dump(summary.to_dict(), fh, indent=2, sort_keys=True)
    if summary.clips_ok == 0:
        raise click.ClickException(f"no clip was extracted; reasons in {summary.summary_file}")


@main.command("train-student")
@click.option("--cache", required=True, type=click.Path(exists=True, file_okay=False), help="Cache to train from.")
@click.option("--variant", required=True, type=click.Choice(["egodistill", "visonly-distill", "visimu", "visonly"]))
@click.option("--frames", required=True, type=click.IntRange(1), help="Student frames N (the cache must store them).")
@click.option("--stage", type=click.Choice(["pretrain", "distill", "all"]), default="all", show_default=True,
              help="Self-supervised IMU stage, distillation, or both (visonly* have no pretrain stage).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, metrics).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--epochs", type=click.IntRange(1), help="Distill epochs [150 for ego4d caches, else 50].")
@click.option("--milestones", help="Distill lr decay epochs, comma-separated [0.6 and 0.8 of --epochs].")
@click.option("--pretrain-epochs", type=click.IntRange(1), help="Pretrain epochs [50].")
@click.option("--pretrain-milestones", help="Pretrain lr decay epochs [30,40 for 50 epochs].")
@click.option("--seed", type=int, help="Seed of init, data order and dropout [0].")
@click.option("--batch-size", type=click.IntRange(1), help="Global batch size, split over DDP ranks [64].")
@click.option("--lr", type=float, help="AdamW learning rate [1e-4].")
@click.option("--alpha", type=float, help="KD weight: alpha*KD + (1-alpha)*CE + beta*L1 [0.95].")
@click.option("--beta", type=float, help="Feature L1 weight [1.0].")
@click.option("--tau", type=float, help="KD temperature [10 for ego4d caches, else 1].")
@click.option("--image-weights", type=click.Path(exists=True, dir_okay=False),
              help="torchvision ResNet-18 ImageNet state dict for the image encoder.")
@click.option("--freeze-image-encoder", is_flag=True, default=None,
              help="Keep the image encoder fixed in distillation, training from its features computed once.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False),
              help="Checkpoint to start distillation from [OUT/pretrain/last.pt if present].")
@click.option("--average", type=click.Choice(["softmax", "logits"]),
              help="How clip predictions are averaged per segment [softmax].")
@click.option("--num-workers", type=click.IntRange(0), help="DataLoader worker processes [2].")
@click.option("--device", help="auto, cpu, cuda or cuda:K [auto]; under torchrun each rank takes cuda:LOCAL_RANK.")
@click.option("--checkpoint-every", type=click.IntRange(1), help="Also checkpoint every K steps inside an epoch [200].")
@click.option("--progress/--no-progress", default=True, help="Show per-epoch progress bars on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@library_errors
def train_student_command(resume: bool, progress: bool, as_json: bool, **options: Any) -> None:
    """Train a student from the cache alone (never the teacher): IMU pretraining, then distillation.

    Writes OUT/last.pt, OUT/best.pt, OUT/metrics/epoch_XXX.json, OUT/metrics.json and OUT/metrics.csv
    (OUT/pretrain/ for the self-supervised stage). Several processes:
    `torchrun --nproc_per_node G -m egocache train-student ...`.
    """
    import os

    from egocache.student.config import TrainConfig
    from egocache.student.train import summary, train_student

    try:
        cfg = TrainConfig().with_overrides(**options)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    result = summary(train_student(cfg, resume=resume, progress=progress), cfg.out)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 alone reports
    if as_json:
        echo_json(result)
    else:
        acc = "" if result["top1_acc"] is None else f", top-1 {100 * result['top1_acc']:.2f}%"
        click.echo(f"trained {cfg.variant} N={cfg.frames} ({' + '.join(result['stages'])}){acc}: {result['out']}")



@main.command("train-teacher")
@click.option("--teacher", required=True, help="Registered teacher (see `egocache teachers`), e.g. mformer-tiny.")
@click.option("--dataset", required=True, type=click.Choice(["epic100", "ego4d", "manifest"]),
              help="Annotation format.")
@click.option("--annotations", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Annotation file (repeatable): the train split trains, the validation split evaluates.")
@click.option("--root", required=True, type=click.Path(exists=True, file_okay=False),
              help="Dataset root (videos are found under it).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write; OUT with suffix .json (summary) and .val.npz (validation logits) too.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False),
              help="Initial weights: a checkpoint of ours or an official MotionFormer .pyth.")
@click.option("--reset-heads", is_flag=True,
              help="Re-initialise the checkpoint's heads when their class counts differ from the dataset's.")
@click.option("--teacher-option", "--override", "overrides", multiple=True, metavar="KEY=VALUE",
              callback=_key_values, help="Teacher architecture/input override (repeatable), e.g. depth=4.")
@click.option("--epochs", type=click.IntRange(1), help="Training epochs [30].")
@click.option("--batch-size", type=click.IntRange(1), help="Clips per step [16]; the paper's fine-tune: 64.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="AdamW peak learning rate [2e-3]; paper: 1e-4.")
@click.option("--weight-decay", type=click.FloatRange(0), help="AdamW weight decay [0.05].")
@click.option("--train-views", type=click.IntRange(1), help="Clips spread over each training segment [4].")
@click.option("--eval-clips", type=click.IntRange(1), help="Clips per validation segment, logits averaged [3].")
@click.option("--max-frames-gb", type=click.FloatRange(0, min_open=True),
              help="Refuse runs whose decoded frames exceed this in memory [8].")
@click.option("--seed", type=int, help="Seed of init, sampling and augmentation [0].")
@click.option("--device", help="cpu, cuda or cuda:K [cpu]; CUDA trains under bf16 autocast.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def train_teacher_command(annotations: tuple[str, ...], overrides: tuple[tuple[str, Any], ...],
                          as_json: bool, **options: Any) -> None:
    """Fine-tune a teacher on the labelled clips of a dataset and save it in the official layout.

    Load the result with `create_teacher(NAME, checkpoint=OUT)` or `egocache extract --checkpoint OUT`.
    """
    from egocache.pipeline.train_teacher import TeacherTrainConfig, train_teacher

    given = {k: v for k, v in options.items() if v is not None}
    cfg = TeacherTrainConfig(annotations=annotations, overrides=dict(overrides), **given)
    summary = train_teacher(cfg, log=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(summary)
        return
    click.echo(f"fine-tuned {cfg.teacher} on {summary['clips']['train']} training clips: {summary['checkpoint']}")
    val = summary["validation"]
    if val is not None:
        top1 = ", ".join(f"{h} {v:.3f}" for h, v in val["top1"].items() if v is not None)
        line = f"validation ({val['segments']} segments): top-1 {top1}"
        pairs = val.get("motion_pairs")
        if pairs and pairs["segments"]:
            line += f"; motion pairs top-1 {pairs['top1']:.3f}, within pair {pairs['pair_top1']:.3f}"
        click.echo(line)


# --- synth ----------------------------------------------------------------------------------------
def _size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height), both even (H.264 4:2:0) and at least 16."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT like 160x120, got {value!r}") from None
    if min(w, h) < 16 or w % 2 or h % 2:
        raise click.BadParameter(f"width and height must be even and >= 16, got {value!r}")
    return w, h


@main.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--videos", default=4, show_default=True, type=click.IntRange(min=1), help="Number of videos.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same bytes.")
@click.option("--size", default="160x120", show_default=True, callback=_size, help="Frame WIDTHxHEIGHT.")
@click.option("--fps", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--duration", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Seconds per video.")
@click.option("--imu-layout", default="both", show_default=True, type=click.Choice(["epic100", "ego4d", "both"]),
              help="EPIC-100 (<P>/videos, <P>/meta_data) and/or Ego4D (full_scale/, imu/) files.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@library_errors
def synth_command(out: str, videos: int, seed: int, size: tuple[int, int], fps: float, duration: float,
                  imu_layout: str, as_json: bool) -> None:
    """Write the built-in synthetic egocentric dataset to OUT (a new or empty folder).

    Head-camera videos with IMU and EPIC-100 style labels, in which motion-pair verbs (take/put,
    open/close, turn-on/turn-off) look alike in any single frame and differ only in motion.
    """
    from egocache.synth import APPEARANCE_VERBS, MOTION_PAIRS, synthesize

    try:
        summary = synthesize(out, videos=videos, seed=seed, size=size, fps=fps, duration_s=duration,
                             imu_layout=imu_layout, progress=not as_json)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(f"synthetic dataset in {summary.root}: {videos} videos x {duration:g} s, {size[0]}x{size[1]} "
               f"@ {fps:g} fps, seed {seed}, IMU layout {imu_layout}")
    for split, path in (("train", summary.train_csv), ("validation", summary.validation_csv)):
        n_videos = sum(v.split == split for v in summary.videos)
        click.echo(f"  {split}: {n_videos} videos, {summary.num_segments(split)} segments -> {path}")
    click.echo("  motion pairs: " + ", ".join("/".join(p) for p in MOTION_PAIRS)
               + "; appearance verbs: " + ", ".join(APPEARANCE_VERBS))


@main.command("demo")
@click.option("--out", default="demo_out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the synthetic data, teacher, cache, student runs and report.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the data and every model.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Extraction worker processes (dask local cluster when > 1).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(0),
              help="torch CPU threads for the whole chain; 0 keeps torch's default (1 measured fastest "
                   "on a shared 2-core CPU).")
@click.option("--quick", is_flag=True,
              help="The shortened chain (~15 s): 4 short tiny videos, 1-2 epochs, 3 students at N=1; "
                   "checks the wiring, its accuracies mean nothing.")
@library_errors
def demo_command(out: str, seed: int, workers: int, threads: int | None, quick: bool) -> None:
    """Run the whole chain on built-in synthetic data: synth, train-teacher, extract, 8 students, benchmark.

    Scaled to finish in 8-11 minutes on a 2-core CPU: 32 synthetic 40-s videos, the tiny teacher
    fine-tuned for 40 epochs, students (egodistill, visonly-distill, visimu, visonly at N=1 and N=4)
    trained from the frozen image encoder's cached features, lr 1e-3, 8 + 20 epochs (docs/results.md).
    Every step leaves a marker in OUT/steps/: re-running reuses finished steps.
    """
    import dataclasses

    from egocache.demo import DemoConfig, run_demo

    cfg = DemoConfig.quick(out, seed=seed) if quick else DemoConfig(out=out, seed=seed)
    cfg = dataclasses.replace(cfg, workers=workers, threads=threads or None)
    result = run_demo(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(result["table"])
    click.echo(f"demo finished in {result['seconds']:.0f} s; report: {result['report']}")
