"""The measurements of benchmarks/gpu.sh, one subcommand per figure; each writes one JSON file.

    python benchmarks/gpu_figures.py teacher|latency|extract|loader|ddp-cache|ddp|report --out DIR [--dry-run]

On a GPU machine every figure is taken at full size (mformer 16x224^2 in bf16, ResNet-18 students at
224 px). `--dry-run` runs the same code paths on the CPU with stand-ins (mformer-tiny, small frames, a
few steps, gloo instead of nccl), so the script is tested where no GPU is lent; its figures say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
PAPER_MS = {"teacher": 10.70, "student": 0.25}      # EgoDistill Table 3, per clip at batch 32 on an A40


def _device(dry: bool) -> torch.device:
    if dry:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run on a machine without a GPU")
    return torch.device("cuda")


def _machine(dry: bool) -> dict[str, Any]:
    """What the figures were taken on."""
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if not dry else []
    return {"dry_run": dry, "gpus": gpus, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda}


def _write(out: Path, name: str, figures: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"{name}: {json.dumps(figures, default=str)}", flush=True)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def teacher(out: Path, dry: bool) -> None:
    """mformer clips/s at batch 16 and 32 from preprocessed input (bf16 autocast on CUDA)."""
    from egocache.pipeline.teachers import create_teacher

    dev = _device(dry)
    name = "mformer-tiny" if dry else "mformer"
    torch.manual_seed(0)
    model = create_teacher(name).to(dev).eval()
    t, size = model.spec.num_frames, model.spec.img_size
    figures: dict[str, Any] = {"teacher": name, "input": f"(B,3,{t},{size},{size}) preprocessed, on device",
                               "precision": "bfloat16 autocast" if dev.type == "cuda" else "float32 (CPU)"}
    for batch in ((2, 4) if dry else (16, 32)):
        x = torch.randn(batch, 3, t, size, size, device=dev)
        iters = 3 if dry else 20
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            for _ in range(3):
                model(x)
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(iters):
                model(x)
            _sync(dev)
        figures[f"clips_s_batch{batch}"] = round(batch * iters / (time.perf_counter() - t0), 2)
    _write(out, "teacher", figures)


def latency(out: Path, dry: bool) -> None:
    """Per-clip latency at batch 32 of the teacher and EgoDistill N=1, as egocache benchmark measures it."""
    from egocache.pipeline.teachers import create_teacher
    from egocache.report.measure import latency_ms, student_inputs, teacher_inputs
    from egocache.student.models import build_student

    dev = _device(dry)
    batch, size = (4, 64) if dry else (32, 224)
    torch.manual_seed(0)
    model = create_teacher("mformer-tiny" if dry else "mformer").to(dev).eval()
    spec = model.spec
    student = build_student("egodistill", frames=1, feature_dim=spec.feature_dim, heads=dict(spec.heads)).to(dev).eval()
    x = teacher_inputs(model, batch, dev)
    s_in = student_inputs(1, size, batch, dev)
    figures: dict[str, Any] = {"batch": batch, "student_frame_size": size, "teacher": spec.name,
                               "paper_ms_a40": PAPER_MS}
    for precision, enabled in (("float32", False), ("bfloat16", dev.type == "cuda")):
        if precision == "bfloat16" and not enabled:
            continue
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=enabled):
            figures[f"teacher_ms_{precision}"] = round(latency_ms(lambda: model(x), batch=batch, device=dev), 4)
            figures[f"student_ms_{precision}"] = round(latency_ms(lambda: student(s_in), batch=batch, device=dev), 4)
    _write(out, "latency", figures)


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return proc


def upscale(path: Path, width: int, height: int) -> int:
    """Re-encode the H.264 video at `path` in place at width x height (x264 ultrafast, all threads); frames."""
    import av

    tmp = path.with_name(path.stem + ".upscaled.mp4")
    count = 0
    with av.open(str(path)) as src, av.open(str(tmp), mode="w", format="mp4") as dst:
        s_in = src.streams.video[0]
        rate = s_in.average_rate
        s_out = dst.add_stream("libx264", rate=rate)
        s_out.width, s_out.height, s_out.pix_fmt = width, height, "yuv420p"
        s_out.options = {"preset": "ultrafast", "crf": "23", "g": str(max(1, int(round(2 * float(rate)))))}
        s_out.codec_context.thread_count = 0
        for frame in src.decode(s_in):
            big = frame.reformat(width=width, height=height, format="yuv420p")
            big.pts, big.time_base = count, 1 / Fraction(rate)
            for packet in s_out.encode(big):
                dst.mux(packet)
            count += 1
        for packet in s_out.encode():
            dst.mux(packet)
    os.replace(tmp, path)
    return count


def extract(out: Path, dry: bool) -> None:
    """The teacher's busy fraction during a real `egocache extract` of synthetic 1080p video.

    egocache synth renders at 1.3 frames/s at 1920x1080 on one core (measured on the shared 2-core CPU),
    far too slow for this step's time limit, so it renders at 320x180 and every video is then
    re-encoded at 1920x1080 (H.264): extraction decodes real 1080p streams, of upscaled content.
    """
    work = out / "work"
    data, cache = work / "synth", work / "extract.zarr"
    render, (width, height), seconds = ("96x54", (192, 108), "10") if dry else ("320x180", (1920, 1080), "15")
    size = f"{width}x{height}"
    if not (data / "EPIC_100_train.csv").exists():
        tmp = work / "synth-partial"
        if tmp.exists():
            import shutil
            shutil.rmtree(tmp)
        _run([sys.executable, "-m", "egocache", "synth", str(tmp), "--videos", "2", "--size", render,
              "--duration", seconds, "--imu-layout", "epic100"])
        for video in sorted(tmp.rglob("*.MP4")):
            upscale(video, width, height)
        tmp.rename(data)
    gpus = 1 if dry else max(torch.cuda.device_count(), 1)
    cmd = [sys.executable, "-m", "egocache", "extract", "--teacher", "mformer-tiny" if dry else "mformer",
           "--dataset", "epic100", "--root", str(data), "--annotations", str(data / "EPIC_100_train.csv"),
           "--annotations", str(data / "EPIC_100_validation.csv"), "--cache", str(cache),
           "--device", "cpu" if dry else "cuda", "--workers", str(gpus), "--decode-threads", "2" if dry else "4",
           "--batch-size", "4" if dry else "32", "--no-progress", "--json", str(work / "extract-summary.json")]
    t0 = time.perf_counter()
    _run(cmd, timeout=540)
    wall = time.perf_counter() - t0
    summary = json.loads((work / "extract-summary.json").read_text())
    run_s = summary["clips"] / summary["clips_per_s"] if summary["clips_per_s"] else float("nan")
    st = summary["stage_seconds"]
    _write(out, "extract", {
        "video": f"{size} H.264, 2 videos x {seconds} s (egocache synth at {render}, re-encoded at {size})", "workers": gpus,
        "clips": summary["clips"], "clips_per_s": summary["clips_per_s"], "run_s": round(run_s, 2),
        "command_wall_s": round(wall, 1), "stage_seconds": st,
        "teacher_busy_fraction": round(st["teacher"] / (gpus * run_s), 3),
        "decode_busy_fraction": round(st["decode"] / (gpus * run_s), 3)})


def loader(out: Path, dry: bool) -> None:
    """train-student steps/s at 224 px, N=1 and N=4: DataLoader over the cache against in-memory batches."""
    figures: dict[str, Any] = {}
    for frames in (1, 4):
        args = (["--frame-size", "32", "--clips", "96", "--batch-size", "8", "--steps", "3", "--frozen-steps", "3",
                 "--rounds", "1", "--warmup", "1", "--num-workers", "1", "--device", "cpu"] if dry else
                ["--frame-size", "224", "--clips", "2048", "--batch-size", "64", "--steps", "20", "--frozen-steps",
                 "20", "--rounds", "3", "--warmup", "5", "--num-workers", str(min(8, os.cpu_count() or 1)),
                 "--device", "cuda"])
        proc = _run([sys.executable, str(HERE / "train_throughput.py"), "--frames", str(frames), *args, "--json"],
                    env={"OMP_NUM_THREADS": "1"} if dry else None)
        got = json.loads(proc.stdout)
        figures[f"n{frames}"] = {mode: {k: round(v, 3) for k, v in got[mode].items()}
                                 for mode in ("trained-encoder", "frozen")}
        figures[f"n{frames}"]["args"] = got["args"]
    _write(out, "loader", figures)


def ddp_cache(out: Path, dry: bool) -> None:
    """The cache the torchrun step trains from (random content, 224 px frames on a GPU machine)."""
    sys.path.insert(0, str(HERE))
    from train_throughput import write_cache

    path = out / "work" / "ddp.zarr"
    if not path.exists():
        write_cache(str(path), clips=64 if dry else 2048, frame_size=32 if dry else 224, feature_dim=768)
    _write(out, "ddp-cache", {"cache": str(path)})


def ddp(out: Path, dry: bool, log: Path, nproc: int, seconds: float) -> None:
    """Parse the torchrun train-student log: clips/s of the epoch, steps/s at the global batch."""
    text = log.read_text()
    rates = [float(x) for x in re.findall(r"distill epoch \d+/\d+ step \d+ .* (\d+) clips/s", text)]
    if not rates:
        raise SystemExit(f"{log}: no epoch line with clips/s; its tail: {text[-1500:]}")
    batch = 8 if dry else 256
    _write(out, "ddp", {"processes": nproc, "backend": "gloo (CPU)" if dry else "nccl", "global_batch": batch,
                        "clips_s_per_epoch": rates, "steps_s": round(statistics.median(rates) / batch, 3),
                        "command_wall_s": seconds})


def report(out: Path, dry: bool) -> None:
    """Merge the step files into gpu-figures.json and a markdown table for docs/benchmarks.md."""
    steps = ["teacher", "latency", "extract", "loader", "ddp"]
    figures: dict[str, Any] = {"machine": _machine(dry)}
    for step in steps:
        f = out / f"{step}.json"
        figures[step] = json.loads(f.read_text()) if f.exists() else {"missing": f"{f.name} not written (step failed "
                                                                            "or timed out; see gpu.log)"}
    (out / "gpu-figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    m = figures["machine"]
    title = ("CPU stand-ins (--dry-run: mformer-tiny, small frames, gloo): these check the script, they are not "
             "GPU figures" if dry else f"{', '.join(m['gpus'])}; torch {m['torch']}, CUDA {m['cuda']}")
    lines = [f"### GPU figures ({title})", "", "| figure | value |", "|---|---|"]
    t, lat, ex, ld, dp = (figures[s] for s in steps)
    batches = sorted(int(k[len("clips_s_batch"):]) for k in t if k.startswith("clips_s_batch"))
    rows = [(f"{t.get('teacher', 'teacher')} clips/s, batch {' / '.join(map(str, batches)) or '-'} "
             f"({t.get('precision')})", " / ".join(str(t[f"clips_s_batch{b}"]) for b in batches) or "-"),
            ("teacher / student latency per clip at batch " + str(lat.get("batch")) + " (ms, bf16; fp32)",
             f"{lat.get('teacher_ms_bfloat16', '-')} / {lat.get('student_ms_bfloat16', '-')}; "
             f"{lat.get('teacher_ms_float32', '-')} / {lat.get('student_ms_float32', '-')} (paper, A40: 10.70 / 0.25)"),
            ("teacher busy fraction during extract (" + str(ex.get("video")) + ")", str(ex.get("teacher_busy_fraction"))),
            ("extract clips/s, decode busy fraction", f"{ex.get('clips_per_s')}, {ex.get('decode_busy_fraction')}")]
    for n in ("n1", "n4"):
        for mode in ("trained-encoder", "frozen"):
            r = ld.get(n, {}).get(mode, {})
            rows.append((f"train-student {n.upper()} {mode}: loader / memory steps/s (ratio, range; loader "
                         "alone as a share of a step)",
                         f"{r.get('loader_steps_s')} / {r.get('memory_steps_s')} ({r.get('ratio')}, "
                         f"{r.get('ratio_min')}-{r.get('ratio_max')}; {r.get('loading_share')})"))
    rows.append((f"torchrun train-student, {dp.get('processes')} processes ({dp.get('backend')}), steps/s",
                 str(dp.get("steps_s"))))
    lines += [f"| {a} | {b} |" for a, b in rows]
    missing = [s for s in steps if "missing" in figures[s]]
    if missing:
        lines += ["", f"Not measured: {', '.join(missing)} (the step failed or timed out; see gpu.log)."]
    (out / "gpu-figures.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    """Run one measurement."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["teacher", "latency", "extract", "loader", "ddp-cache", "ddp", "report"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--log", type=Path, help="ddp: the torchrun log to parse")
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=0.0)
    a = ap.parse_args()
    if a.step == "ddp":
        ddp(a.out, a.dry_run, a.log, a.nproc, a.seconds)
    else:
        {"teacher": teacher, "latency": latency, "extract": extract, "loader": loader, "ddp-cache": ddp_cache,
         "report": report}[a.step](a.out, a.dry_run)


if __name__ == "__main__":
    main()
