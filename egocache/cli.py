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
    from egocache.benchmark.report import benchmark_cache, benchmark_paper_configs

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
