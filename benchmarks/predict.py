"""End-to-end cost of running the full-size teacher and the full-size EgoDistill student over long videos.

    python benchmarks/predict.py [--minutes 10] [--hd-seconds 30] [--teacher-clips 3] [--threads 2]
                                 [--workdir DIR] [--skip-hd]

Writes (PyAV, x264 veryfast crf 23, default GOP 250, as benchmarks/extract.py) a synthetic 456x256 30 fps
video of `--minutes` and a 1920x1080 one of `--hd-seconds`, with a 200 Hz IMU CSV each (kept in
--workdir and reused). Windows side by side (one clip per 2.133 s), as `egocache predict` cuts them. Then,
measured in one run, per minute of video, busy seconds split into decode / IMU / model:
  (a) the teacher path: mformer 16x224^2 (random init, same cost as trained weights) on dense 16-frame
      clips. Its decoding is measured over the whole video; the model over `--teacher-clips` clips only
      (about 9 s per clip on a 2-core CPU) and extrapolated to the clips of a minute (said so in the output);
  (b) the student path: EgoDistill N=1 (ResNet-18 at 224^2 + IMU encoder, random init) decoding one frame
      per clip, in torch (`StudentRunner`) and in onnxruntime (`OnnxRunner`, the `egocache export` model),
      each a real streamed pass over every window (`deploy.stream.run_pass`, decode thread ahead).
It prints the end-to-end ratio (a)/(b) and the decode share of (b), then the decode floor: what the codec
costs for every frame (PyAV, no colour conversion), for keyframes only and without non-reference frames
(`skip_frame`), what decord costs for every frame, and the student's decode with 1 and 2 ffmpeg threads
and without decode-time scaling (native size, then crop and resize). Figures print as `name: value`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import av
import decord
import numpy as np
import torch

from egocache.deploy.export import write_onnx
from egocache.deploy.predict import student_model, teacher_model
from egocache.deploy.runner import OnnxRunner, StudentRunner
from egocache.deploy.stream import ClipModel, PassResult, run_pass, sliding_windows
from egocache.pipeline.decode import clear_reader_cache, reader_size, video_info
from egocache.pipeline.frames import resize_frames
from egocache.pipeline.imu import CHANNELS, IMU_RATE_HZ, IMU_WINDOW, read_imu
from egocache.pipeline.sampling import clip_seconds, clip_span_frames
from egocache.student.inputs import StudentInputs
from egocache.student.models import build_student

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from extract import make_video  # noqa: E402  (the decode benchmark's synthetic video)

HEADS = {"verb": 97, "noun": 300}      # EPIC-KITCHENS-100 heads: the full-size models' class counts
FEATURE_DIM = 768                      # mformer's feature size, the student's distillation target


def say(name: str, value: object) -> None:
    """Print one result line."""
    print(f"{name}: {value}", flush=True)


def make_imu(path: Path, seconds: float, seed: int = 0) -> None:
    """A generic IMU CSV (t_s + 6 channels) at ~200 Hz with jittered timestamps over `seconds`."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, seconds + 0.5, 1 / 200.0) + rng.uniform(0, 1e-3, int(np.ceil((seconds + 0.5) * 200)))
    t = np.sort(t)
    values = np.sin(t[:, None] * np.array([0.7, 1.1, 0.3, 2.0, 1.3, 0.9])) + 0.1 * rng.normal(size=(len(t), 6))
    values[:, 2] += 9.81
    np.savetxt(path, np.column_stack([t, values]), delimiter=",", fmt="%.6f",
               header="t_s," + ",".join(CHANNELS), comments="")


def ensure_inputs(workdir: Path, name: str, width: int, height: int, seconds: float) -> tuple[str, str]:
    """(video, IMU CSV) in `workdir`, generated once."""
    video, imu = workdir / f"{name}.mp4", workdir / f"{name}-imu.csv"
    if not video.exists():
        t0 = time.perf_counter()
        make_video(str(video) + ".tmp.mp4", width, height, seconds)
        os.replace(str(video) + ".tmp.mp4", video)
        say(f"{name}_generated_s", round(time.perf_counter() - t0, 1))
    if not imu.exists():
        make_imu(imu, seconds)
    return str(video), str(imu)


def full_size_student() -> StudentRunner:
    """EgoDistill N=1 at 224^2 (random init) with the inputs of a 16x4 mformer cache at 224 px."""
    torch.manual_seed(0)
    student = build_student("egodistill", frames=1, feature_dim=FEATURE_DIM, heads=HEADS).eval()
    inputs = StudentInputs(variant="egodistill", frames=1, frame_size=224, teacher_size=224, positions=(0.5,),
                           clip_frames=16, clip_stride=4, clip_seconds=clip_seconds(16, 4), imu_rate_hz=IMU_RATE_HZ,
                           imu_window=IMU_WINDOW, imu_channels=CHANNELS, needs_imu=True,
                           heads={h: [f"class_{i}" for i in range(c)] for h, c in HEADS.items()},
                           source={"benchmark": "random init"})
    return StudentRunner(student, inputs, device="cpu", source="random init")


def report(prefix: str, result: PassResult, minutes: float, *, clips: int | None = None) -> dict[str, float]:
    """Print and return seconds per minute of video of each stage (stages scaled from `clips` if given)."""
    n = len(result.errors)
    failed = sum(bool(e) for e in result.errors)
    out = {k: v / minutes for k, v in result.seconds.items()}
    out["wall"] = result.wall_s / minutes
    for k, v in out.items():
        say(f"{prefix}_{k}_s_per_min", round(v, 3))
    say(f"{prefix}_windows", f"{n} ({failed} failed)")
    say(f"{prefix}_clips_per_s", round(n / max(result.wall_s, 1e-9), 2))
    if clips is None:
        say(f"{prefix}_frames_decoded_per_window", round(result.frames_decoded / max(n - failed, 1), 1))
    return out


def warm_up(model: ClipModel, batch: int) -> None:
    """Run a student twice untimed (a full batch and a single window) so allocation is not measured."""
    size, inputs = model.plan.student_size, model.plan
    for b in (batch, 1):
        frames = np.zeros((b, len(inputs.positions), size, size, 3), np.uint8)
        model.run(frames, np.zeros((b, model.imu_window, len(CHANNELS)), np.float32))


def decode_only(model: ClipModel) -> ClipModel:
    """The same frame plan with no model: a pass that measures decoding alone (the teacher's, at full length)."""
    return ClipModel(f"{model.name}-decode", model.plan, {}, lambda frames, imu: {}, teacher=model.teacher)


def codec_floor(prefix: str, path: str, minutes: float, student: ClipModel, threads: int, batch: int) -> None:
    """Decode cost per minute: the codec for every frame / reference frames / keyframes (PyAV, no colour
    conversion), decord for every frame, and the student's decode alone with 1 and 2 threads, scaled by the
    decoder (what predict does) or decoded at native size then cropped and resized."""
    for skip in ("DEFAULT", "NONREF", "NONKEY"):
        t0, n = time.perf_counter(), 0
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "AUTO", threads
            stream.codec_context.skip_frame = skip
            for _ in container.decode(stream):
                n += 1
        say(f"{prefix}_pyav_{skip.lower()}_s_per_min", round((time.perf_counter() - t0) / minutes, 3))
        say(f"{prefix}_pyav_{skip.lower()}_frames", n)
    plan = student.plan
    n, fps = video_info(path)
    h, w = decord.VideoReader(path, ctx=decord.cpu(0))[0].shape[:2]
    out_h, out_w = reader_size((h, w), plan.decode_size)
    reader = decord.VideoReader(path, ctx=decord.cpu(0), width=out_w, height=out_h, num_threads=threads)
    t0 = time.perf_counter()
    for a in range(0, n, 128):
        reader.get_batch(list(range(a, min(a + 128, n))))
    say(f"{prefix}_decord_every_frame_scaled_s_per_min", round((time.perf_counter() - t0) / minutes, 3))
    windows = sliding_windows(n, fps, plan, clip_seconds(plan.num_frames, plan.frame_stride))
    wanted = [int(plan.native_frames(w.centre_s, fps)[0][0]) for w in windows]
    for t in (1, 2):
        clear_reader_cache()
        probe = run_pass(path, windows, decode_only(student), batch_size=batch, decode_threads=t)
        say(f"{prefix}_student_decode_scaled_threads{t}_s_per_min", round(probe.seconds["decode"] / minutes, 3))
        native = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=t)
        t0 = time.perf_counter()
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        for a in range(0, len(wanted), 64):
            batch_frames = native.get_batch(wanted[a:a + 64]).asnumpy()
            resize_frames(np.ascontiguousarray(batch_frames[:, y0:y0 + side, x0:x0 + side]), plan.decode_size)
        say(f"{prefix}_student_decode_native_resize_threads{t}_s_per_min",
            round((time.perf_counter() - t0) / minutes, 3))


def bench_video(prefix: str, video: str, imu_csv: str, *, runner: StudentRunner, onnx: OnnxRunner,
                teacher: ClipModel, teacher_clips: int, threads: int, batch: int) -> None:
    """Teacher path against student paths (torch, onnxruntime) on one video, then the decode floor."""
    n, fps = video_info(video)
    minutes = n / fps / 60.0
    say(f"{prefix}_video", f"{video}: {n} frames at {fps:g} fps ({minutes:.2f} min), "
                           f"{os.path.getsize(video) * 8 / (n / fps) / 1e6:.2f} Mbit/s")
    stream = read_imu("csv", (imu_csv,))
    student = student_model(runner)
    windows = sliding_windows(n, fps, student.plan, runner.inputs.clip_seconds)
    per_min = len(windows) / minutes
    say(f"{prefix}_windows_per_min", round(per_min, 2))
    paths = {}
    for name, model in (("student_torch", student), ("student_onnx", student_model(onnx))):
        warm_up(model, batch)
        clear_reader_cache()
        paths[name] = report(f"{prefix}_{name}", run_pass(video, windows, model, imu_stream=stream, batch_size=batch,
                                                          decode_threads=threads), minutes)
    clear_reader_cache()
    t_decode = report(f"{prefix}_teacher_decode", run_pass(video, windows, decode_only(teacher), batch_size=batch,
                                                           decode_threads=threads), minutes)
    clear_reader_cache()
    few = run_pass(video, windows[:teacher_clips], teacher, batch_size=1, decode_threads=threads)
    model_per_clip = few.seconds["model"] / max(len(few.errors), 1)
    say(f"{prefix}_teacher_model_s_per_clip", f"{model_per_clip:.3f} (measured on {len(few.errors)} clips, "
                                              f"extrapolated to {per_min:.1f} clips per minute)")
    teacher_total = t_decode["decode"] + model_per_clip * per_min
    say(f"{prefix}_teacher_model_s_per_min", round(model_per_clip * per_min, 2))
    say(f"{prefix}_teacher_end_to_end_s_per_min", round(teacher_total, 2))
    for name, cost in paths.items():
        busy = cost["decode"] + cost["imu"] + cost["model"]
        say(f"{prefix}_{name}_end_to_end_s_per_min", round(cost["wall"], 3))
        say(f"{prefix}_ratio_teacher_over_{name}", round(teacher_total / cost["wall"], 1))
        say(f"{prefix}_{name}_decode_share", round(cost["decode"] / busy, 3))
    codec_floor(prefix, video, minutes, student, threads, batch)


def main(argv: list[str] | None = None) -> None:
    """Generate the videos, build the full-size models, measure both paths side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the 456x256 video")
    parser.add_argument("--hd-seconds", type=float, default=30.0, help="length of the 1920x1080 video")
    parser.add_argument("--skip-hd", action="store_true", help="leave the 1920x1080 video out")
    parser.add_argument("--teacher-clips", type=int, default=3, help="clips the full mformer is timed on")
    parser.add_argument("--threads", type=int, default=2, help="torch, onnxruntime and ffmpeg threads")
    parser.add_argument("--batch-size", type=int, default=16, help="student windows per forward pass")
    parser.add_argument("--workdir", default="/tmp/egocache-predict-bench", help="where the videos are kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    say("machine", f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, "
                   f"{args.threads} threads")
    videos = [("sd", *ensure_inputs(work, f"sd-{args.minutes:g}min", 456, 256, args.minutes * 60))]
    if not args.skip_hd:
        videos.append(("hd", *ensure_inputs(work, f"hd-{args.hd_seconds:g}s", 1920, 1080, args.hd_seconds)))
    runner = full_size_student()
    t0 = time.perf_counter()
    onnx_path = str(work / "egodistill-n1-224.onnx")
    write_onnx(runner, onnx_path)
    say("onnx_export_s", round(time.perf_counter() - t0, 1))
    onnx = OnnxRunner(onnx_path, threads=args.threads)
    teacher = teacher_model("mformer", checkpoint=None, overrides={}, device=torch.device("cpu"), batch_size=1,
                            names=runner.inputs.heads)
    say("clip", f"{clip_span_frames(30.0)} frames at 30 fps = {clip_seconds():.3f} s; teacher 16x224^2, "
                "student 1x224^2")
    for prefix, video, imu in videos:
        bench_video(prefix, video, imu, runner=runner, onnx=onnx, teacher=teacher, teacher_clips=args.teacher_clips,
                    threads=args.threads, batch=args.batch_size)
    say("load_average_after", round(os.getloadavg()[0], 1))


if __name__ == "__main__":
    main()
