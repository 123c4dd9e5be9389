"""The `egocache` command: a click group whose commands parse options, call one library function, print.

Each command's options are built from the config dataclass that owns them (core/settings.py), so
defaults, choices, ranges and help are written once, in the library. Heavy imports (torch, decord,
dask, zarr) happen inside command bodies so `egocache --help` is instant. Library errors become
one-line errors: a ConfigError (a bad option value) exits 2 like click's own usage errors, any other
EgocacheError exits 1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Any, Callable

import click

from egocache import __version__
from egocache.core.settings import click_options, from_cli, path_type
from egocache.demo import DemoConfig
from egocache.deploy.options import ExportOptions, PredictOptions
from egocache.errors import ConfigError, EgocacheError
from egocache.pipeline.options import ExtractOptions, TeacherTestOptions, TeacherTrainConfig
from egocache.report.options import BenchmarkOptions
from egocache.student.config import PretrainEncoderOptions, TrainConfig
from egocache.synth.options import ImageSetOptions, SynthOptions


def library_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EgocacheError raised by the library into a one-line click error (ConfigError: exit 2)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
        except EgocacheError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:   # the last net: a write the library did not name itself still gets one line
            from egocache.core.files import storage_error

            raise click.ClickException(str(storage_error("access", exc.filename or "a file", exc))) from exc

    return wrapper


def echo_json(obj: Any) -> None:
    """Print `obj` as indented JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the human summary.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "EGOCACHE"})
@click.version_option(__version__, prog_name="egocache")
def main() -> None:
    """Cache a heavy egocentric video teacher once; distil light image+IMU students from the cache.

    Typical chain: `egocache extract --teacher mformer ...` -> `egocache train-student ...`
    -> `egocache benchmark ...`; `egocache demo` runs it all on built-in synthetic data.
    """


@main.command("teachers")
@click.option("--stats", is_flag=True,
              help="Also count parameters and GFLOPs per clip (1 MAC = 1 FLOP, measured on the meta device).")
@click.option("--teacher", "extra", multiple=True, metavar="SPEC.json",
              help="Also describe this external teacher (a spec file; repeatable); with it, only these are listed.")
@json_flag
@library_errors
def teachers_command(stats: bool, extra: tuple[str, ...], as_json: bool) -> None:
    """List the registered teachers: clip shape, channel order, heads; with --stats, params and GFLOPs.

    torchvision's video models (mvit-v2-s, r2plus1d-18, s3d, swin3d-t) are listed where torchvision imports.
    """
    from egocache.pipeline.teachers import list_teachers, teacher_spec, teacher_stats

    rows = []
    for name in extra or list_teachers():
        spec = teacher_spec(name)
        row = {"name": name, "tag": spec.tag, "num_frames": spec.num_frames,
               "frame_stride": spec.frame_stride, "img_size": spec.img_size, "bgr": spec.bgr, "input": spec.input,
               "feature_dim": spec.feature_dim, "heads": spec.heads}
        if stats:
            row.update({k: v for k, v in teacher_stats(name).items() if k != "name"})
        rows.append(row)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        heads = ",".join(f"{k}:{v}" for k, v in row["heads"].items())
        clip = (f"{row['num_frames']}x{row['img_size']}px stride {row['frame_stride']} {'BGR' if row['bgr'] else 'RGB'}"
                if row["input"] == "rgb" else
                f"audio log-STFT over {row['num_frames']}x{row['frame_stride']} frames")
        line = f"{row['name']:<14} {clip}  heads {heads}  features {row['feature_dim']}"
        if stats:
            line += f"  {row['params_m']:.1f}M params  {row['gflops']:.4g} GFLOPs/clip"
        click.echo(line)


cache_argument = click.argument("cache", type=path_type("cache"))


@main.command("info")
@cache_argument
@json_flag
@library_errors
def info_command(cache: str, as_json: bool) -> None:
    """Summarise CACHE: clips per split, ok/failed/pending, teacher, sampling, size on disk."""
    from egocache.cache import open_cache

    info = open_cache(cache)
    click.echo(json.dumps(info.to_dict(), indent=2, sort_keys=True, default=str) if as_json else info.summary())


@main.command("verify")
@cache_argument
@json_flag
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
@click_options(ExportOptions)
@library_errors
def export_command(**values: Any) -> None:
    """Export a cache to one HDF5 file, or a student run to ONNX / TorchScript (checked against torch).

    SOURCE is a cache (zarr.json with egocache attributes) for --hdf5, or a train-student run folder for
    --onnx / --torchscript; the exported student takes uint8 frames (B,N,S,S,3) and IMU (B,422,6).
    """
    opts = from_cli(ExportOptions, values)
    if opts.hdf5 is not None:
        from egocache.cache import export_hdf5
        from egocache.deploy.options import source_kind

        if source_kind(opts.source) == "run":
            raise ConfigError(f"SOURCE {opts.source}: a student run; --hdf5 exports a cache (use --onnx or "
                              "--torchscript for a run)")
        click.echo(f"wrote {export_hdf5(opts.source, opts.hdf5, skip_verify=opts.skip_verify)}")
        return
    from egocache.deploy.export import export_student

    export_student(opts, log=click.echo)


@main.command("predict")
@click_options(PredictOptions)
@json_flag
@library_errors
def predict_command(as_json: bool, **values: Any) -> None:
    """Run a trained student (--run or --onnx) over every window of VIDEO; predictions and a timeline in OUT.

    Windows of the student's clip length slide over the whole video; only the N frames per window the
    student reads are decoded, streamed. With --teacher the heavy path runs over the same windows.
    Windows that cannot be decoded or have no IMU are reported in the outputs, not fatal.
    """
    from egocache.deploy.predict import predict_video

    result = predict_video(from_cli(PredictOptions, values), log=lambda m: click.echo(m, err=True))
    if as_json:
        echo_json({"files": {k: str(v) for k, v in result.files.items()}, "models": result.summaries})
        return
    click.echo("\n".join(result.lines()))


@main.command("benchmark")
@click_options(BenchmarkOptions)
@library_errors
def benchmark_command(**values: Any) -> None:
    """GFLOPs, parameters, latency and accuracy of the teacher and every student; report and plots."""
    from egocache.report.benchmark import run_benchmark

    opts = from_cli(BenchmarkOptions, values)
    if opts.ablations:
        _ablations(opts)
        return
    report = run_benchmark(opts)
    click.echo(report.table)
    click.echo("\n" + "\n".join(f"{k}: {p}" for k, p in report.files.items()))


def _ablations(opts: BenchmarkOptions) -> None:
    """`benchmark --ablations`: on --cache, or on the synthetic world built (resumably) under OUT/world."""
    from egocache.report.ablations import run_ablations

    def log(line: str) -> None:
        click.echo(line, err=True)

    base: dict[str, Any] = {}
    cache = opts.cache
    if cache is None:
        from egocache.demo import ablation_world

        cache, base = ablation_world(os.path.join(opts.out, "world"), seed=min(opts.seeds), threads=opts.threads,
                                     jobs=opts.jobs, log=log)
    if opts.image_weights:
        base["image_weights"] = opts.image_weights
    result = run_ablations(cache, opts.out, seeds=tuple(opts.seeds), parts=tuple(opts.ablation_parts),
                           frames=tuple(opts.ablation_frames), base={**base, **dict(opts.student_options),
                                                                     "device": opts.device},
                           workers=opts.jobs, threads=opts.threads, skip_verify=opts.skip_verify, log=log,
                           variants=tuple(opts.ablation_variants))
    click.echo(result.files["md"].read_text())
    click.echo("\n".join(f"{k}: {p}" for k, p in result.files.items()))


@main.command("extract")
@click_options(ExtractOptions)
@click.option("--json", "json_out", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              help="Print the summary as JSON (or write it to FILE).")
@library_errors
def extract_command(json_out: str | None, **values: Any) -> None:
    """Run the teacher once over every clip and write features, logits, IMU and frames to a cache.

    Resumable: rerunning the same command after an interruption extracts only the missing shards.
    Bad clips are recorded with their reason and skipped (exit code 1 only if none succeeded).
    The preflight summary (videos, IMU, splits, classes) is printed first; --dry-run prints only it.
    """
    from egocache.core.files import write_json_atomic
    from egocache.pipeline.extract import extract, format_summary, preflight

    opts = from_cli(ExtractOptions, values)
    if opts.dry_run:
        report = preflight(opts)
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True) if json_out == "-" else report.summary())
        if json_out not in (None, "-"):
            write_json_atomic(json_out, report.to_dict())
        return
    summary = extract(opts, log=lambda line: click.echo(line, err=True))
    if json_out == "-":
        echo_json(summary.to_dict())
    else:
        click.echo(format_summary(summary))
        if json_out:
            write_json_atomic(json_out, summary.to_dict())
    if summary.clips_ok == 0:
        raise click.ClickException(f"no clip was extracted; reasons in {summary.summary_file}")


@main.command("train-student")
@click_options(TrainConfig, required=("cache", "out", "variant", "frames"))
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--progress/--no-progress", default=True, help="Show per-epoch progress bars on stderr.")
@json_flag
@library_errors
def train_student_command(resume: bool, progress: bool, as_json: bool, **values: Any) -> None:
    """Train a student from the cache alone (never the teacher): IMU pretraining, then distillation.

    Writes OUT/last.pt, OUT/best.pt, OUT/metrics/epoch_XXX.json, OUT/metrics.json and OUT/metrics.csv
    (OUT/pretrain/ for the self-supervised stage). Several processes:
    `torchrun --nproc_per_node G -m egocache train-student ...`.
    """
    from egocache.student.train import summary, train_student

    cfg = from_cli(TrainConfig, values)
    result = summary(train_student(cfg, resume=resume, progress=progress), cfg.out)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun rank 0 alone reports
    if as_json:
        echo_json(result)
    else:
        acc = "" if result["top1_acc"] is None else f", top-1 {100 * result['top1_acc']:.2f}%"
        click.echo(f"trained {cfg.variant} N={cfg.frames} ({' + '.join(result['stages'])}){acc}: {result['out']}")


@main.command("pretrain-image-encoder")
@click_options(PretrainEncoderOptions)
@click_options(ImageSetOptions)
@json_flag
@library_errors
def pretrain_image_encoder_command(as_json: bool, **values: Any) -> None:
    """Pretrain the student's ResNet-18 on a generic synthetic image set (an ImageNet stand-in); write OUT.

    The images (shapes x patterns x colours on textured backgrounds, synth/images.py) are never the
    benchmark's videos. OUT is a torchvision-format resnet18 state dict for `train-student
    --image-weights OUT`; OUT with suffix .json holds the settings and held-out top-1. Resumable:
    rerunning the same command after an interruption continues from OUT.partial.pt.
    """
    from egocache.student.pretrain_encoder import pretrain_image_encoder

    opts = from_cli(PretrainEncoderOptions, values)
    images = from_cli(ImageSetOptions, values).build()
    summary = pretrain_image_encoder(opts, images, log=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(summary)
        return
    held = summary["held_out"]
    click.echo(f"pretrained resnet18 on {images.num_classes} classes at {images.size}px in "
               f"{summary['seconds']['total']:.0f} s: held-out top-1 {held['top1']:.3f} (chance {held['chance']:.3f}) "
               f"on {held['images']} images: {summary['weights']}")


@main.command("train-teacher")
@click_options(TeacherTrainConfig)
@json_flag
@library_errors
def train_teacher_command(as_json: bool, **values: Any) -> None:
    """Fine-tune a teacher on the labelled clips of a dataset and save it in the official layout.

    Resumable: rerunning the same command after an interruption continues from OUT.partial.pt.
    Load the result with `create_teacher(NAME, checkpoint=OUT)` or `egocache extract --checkpoint OUT`.
    """
    from egocache.pipeline.train_teacher import train_teacher

    cfg = from_cli(TeacherTrainConfig, values)
    summary = train_teacher(cfg, log=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(summary)
        return
    click.echo(f"fine-tuned {cfg.teacher} on {summary['clips']['train']} training clips: {summary['checkpoint']}")
    val = summary["validation"]
    if val is not None:
        top1 = ", ".join(f"{h} {m['top1_acc']:.3f}" for h, m in val["heads"].items() if m["top1_acc"] is not None)
        line = f"validation ({val['heads'][val['main_head']]['segments']} segments): top-1 {top1}"
        if val.get("motion_pairs_top1_acc") is not None:
            line += (f"; motion pairs top-1 {val['motion_pairs_top1_acc']:.3f}, within pair "
                     f"{val['motion_pairs_within_acc']:.3f}")
        click.echo(line)


@main.command("test-teacher")
@click_options(TeacherTestOptions)
@json_flag
@library_errors
def test_teacher_command(as_json: bool, **values: Any) -> None:
    """Test a teacher on a split's segments: MotionFormer's multi-view test next to the single centre clip.

    Each segment's score is the mean softmax of its views, T clips spread over it x S spatial crops
    (--views, default 10x3 as MotionFormer's EPIC test), and of its centre clip alone (1x1, the clip
    `extract --eval-clips 1` caches); per-segment top-1 of every head and on the motion-pair verbs.
    """
    from egocache.pipeline.evaluate_teacher import evaluate_teacher

    result = evaluate_teacher(from_cli(TeacherTestOptions, values), log=lambda line: click.echo(line, err=True))
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(result.table())


@main.command("synth")
@click_options(SynthOptions)
@json_flag
@library_errors
def synth_command(as_json: bool, **values: Any) -> None:
    """Write the built-in synthetic egocentric dataset to OUT (a new or empty folder).

    Head-camera videos with IMU and EPIC-100 style labels, in which motion-pair verbs (take/put,
    open/close, turn-on/turn-off) look alike in any single frame and differ only in motion.
    """
    from egocache.synth import APPEARANCE_VERBS, MOTION_PAIRS, synthesize
    from egocache.synth.options import parse_size

    opts = from_cli(SynthOptions, values)
    size = parse_size(opts.size)
    summary = synthesize(opts.out, videos=opts.videos, seed=opts.seed, size=size, fps=opts.fps,
                         duration_s=opts.duration, validation_share=opts.validation_share,
                         imu_layout=opts.imu_layout, rgb_frames=opts.rgb_frames, audio=opts.audio,
                         workers=opts.workers, progress=not as_json)
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(f"synthetic dataset in {summary.root}: {opts.videos} videos x {opts.duration:g} s, "
               f"{size[0]}x{size[1]} @ {opts.fps:g} fps, seed {opts.seed}, IMU layout {opts.imu_layout}")
    for split, path in (("train", summary.train_csv), ("validation", summary.validation_csv)):
        n_videos = sum(v.split == split for v in summary.videos)
        click.echo(f"  {split}: {n_videos} videos, {summary.num_segments(split)} segments -> {path}")
    click.echo("  motion pairs: " + ", ".join("/".join(p) for p in MOTION_PAIRS)
               + "; appearance verbs: " + ", ".join(APPEARANCE_VERBS))


@main.command("demo")
@click_options(DemoConfig)
@click.option("--quick", is_flag=True,
              help="The shortened chain (~15 s): 4 short tiny videos, 1-2 epochs, 3 students at N=1; "
                   "checks the wiring, its accuracies mean nothing.")
@library_errors
def demo_command(quick: bool, **values: Any) -> None:
    """Run the whole chain on built-in synthetic data: synth, train-teacher, extract, 8 students, benchmark.

    Scaled to finish in 8-11 minutes on a 2-core CPU: 32 synthetic 40-s videos, the tiny teacher
    fine-tuned for 40 epochs, students (egodistill, visonly-distill, visimu, visonly at N=1 and N=4)
    trained from the frozen image encoder's cached features, lr 1e-3, 3 + 8 epochs (docs/results.md).
    Every step leaves a marker in OUT/steps/: re-running reuses finished steps.
    """
    import dataclasses

    from egocache.demo import run_demo

    given = from_cli(DemoConfig, values)
    cfg = dataclasses.replace(DemoConfig.quick(given.out, seed=given.seed), workers=given.workers,
                              jobs=given.jobs, threads=given.threads) if quick else given
    result = run_demo(cfg, log=lambda m: click.echo(m, err=True))
    click.echo(result["table"])
    click.echo(f"demo finished in {result['seconds']:.0f} s; report: {result['report']}")
