"""Benchmarks of the extraction pass, one section per subcommand; results print as `name: value`.

    python benchmarks/extract.py decode [--hd] [--seconds 60] [--gop 30]
    python benchmarks/extract.py extract [--videos 4] [--seconds 30] [--workers 1]

decode: a synthetic H.264 video (PyAV) with segments spread through it, each cut into dense
overlapping evaluation clips (16 teacher + 9 student frames of a 64-frame span), decoded with
`decode_clips` and compared with plain sequential decord decoding of the same spans, and with reading
the same clips from an RGB-frame folder of the video (EPIC's release: JPEG q95, 256 px high).
extract: the whole extraction pass (`egocache extract` in-process or on a local dask cluster) over the
built-in synthetic dataset with a small teacher: clips/s, decode work per clip and time per stage.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import av
import decord
import numpy as np

from egocache.pipeline import sampling
from egocache.pipeline.decode import clear_reader_cache, decode_clips, reader_size, video_info
from egocache.pipeline.rgb_frames import FRAME_NAME, decode_folder_clips, scale_crop


def make_video(path: str, width: int, height: int, seconds: float, *, fps: int = 30,
               gop: int | None = None, seed: int = 0) -> None:
    """Write H.264 (x264 veryfast, crf 23) of a smooth panning texture with sensor-like noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    pan = max(1, width // 120)                       # pixels per frame, wrapping around the texture
    coarse = rng.uniform(0, 255, (height // 16 + 2, width // 8 + 1, 3)).astype(np.float32)
    rows = np.linspace(0, coarse.shape[0] - 1.001, height)
    cols = np.linspace(0, coarse.shape[1] - 1.001, 2 * width)
    r0, c0 = rows.astype(int), cols.astype(int)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    texture = ((1 - fr) * ((1 - fc) * coarse[r0][:, c0] + fc * coarse[r0][:, c0 + 1])
               + fr * ((1 - fc) * coarse[r0 + 1][:, c0] + fc * coarse[r0 + 1][:, c0 + 1]))
    options = {"preset": "veryfast", "crf": "23"}
    if gop:
        options["g"] = str(gop)
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        for i in range(n):
            cols_i = (i * pan + np.arange(width)) % texture.shape[1]
            img = texture[:, cols_i] + rng.normal(0, 8, (height, width, 1)).astype(np.float32)
            img = np.clip(img, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def make_clips(num_frames: int, fps: float, *, eval_clips: int = 3, seed: int = 0
               ) -> list[np.ndarray]:
    """Clip frame indices as extraction builds them: segments of 1-5 s starting every 2-6 s,
    each with `eval_clips` clips; a clip's indices are its 16 teacher then its 9 student frames."""
    rng = np.random.default_rng(seed)
    span = sampling.clip_span_frames(fps)
    positions, _, _ = sampling.student_positions((1, 2, 4), first_last=True)
    duration = num_frames / fps
    clips, start_s = [], 0.5
    while True:
        stop_s = start_s + rng.uniform(1.0, 5.0)
        if stop_s > duration - 0.5:
            return clips
        for centre in sampling.segment_clip_centres(start_s, stop_s, eval_clips):
            first = sampling.clip_start_frame(centre, fps, span)
            if 0 <= first and first + span <= num_frames:
                teacher = sampling.teacher_frame_indices(first, span)
                student = sampling.student_frame_indices(first, span, positions)
                clips.append(np.concatenate([teacher, student]))
        start_s += rng.uniform(2.0, 6.0)


def _spans(clips: list[np.ndarray]) -> list[tuple[int, int]]:
    """Merged [first, last] frame ranges of the clips, in time order."""
    merged: list[list[int]] = []
    for lo, hi in sorted((int(c.min()), int(c.max())) for c in clips):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(lo, hi) for lo, hi in merged]


def make_frame_folder(video: str, folder: str, height: int = 256, quality: int = 95) -> None:
    """The RGB-frame release of `video`: every frame scaled to `height` px high, JPEG, frame_%010d.jpg."""
    import simplejpeg

    os.makedirs(folder)
    vr = decord.VideoReader(video, ctx=decord.cpu(0))
    h, w = vr[0].shape[:2]
    out_w = round(w * height / h) // 2 * 2
    vr = decord.VideoReader(video, ctx=decord.cpu(0), width=out_w, height=height)
    for a in range(0, len(vr), 128):
        for k, img in enumerate(vr.get_batch(list(range(a, min(a + 128, len(vr))))).asnumpy(), start=a + 1):
            with open(os.path.join(folder, FRAME_NAME.format(k)), "wb") as fh:
                fh.write(simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality, colorspace="RGB"))


def _batches(reader: decord.VideoReader, indices: list[int], step: int = 128) -> None:
    """get_batch over `indices` in slices of `step` frames (bounded memory, same decoding work)."""
    for a in range(0, len(indices), step):
        reader.get_batch(indices[a:a + step]).asnumpy()


def _median_seconds(fns: dict[str, Callable[[], object]], repeats: int
                    ) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each fn over `repeats` rounds, round-robin so drift hits all
    alike; CPU time (all threads of this process) is the steadier figure on a shared machine."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(w for w, _ in ts), statistics.median(c for _, c in ts))
            for name, ts in times.items()}


def bench_decode(*, width: int = 456, height: int = 256, seconds: float = 60.0, fps: int = 30,
                 gop: int | None = None, size: int = 224, eval_clips: int = 3, threads: int = 1,
                 repeats: int = 5, prefix: str = "decode") -> dict[str, float | str]:
    """Frames/s of decode_clips against sequential decord decoding of the same spans."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "video.mp4")
        make_video(path, width, height, seconds, fps=fps, gop=gop)
        num_frames, real_fps = video_info(path)
        clips = make_clips(num_frames, real_fps, eval_clips=eval_clips)
        spans = _spans(clips)
        span_frames = [i for lo, hi in spans for i in range(lo, hi + 1)]
        union = np.unique(np.concatenate(clips)).tolist()
        out_h, out_w = reader_size((height, width), size)

        def reader(resize: bool = True) -> decord.VideoReader:
            kw = {"width": out_w, "height": out_h} if resize else {}
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads, **kw)

        def ours() -> None:
            clear_reader_cache()            # cold, as a worker meeting the video: open + decode
            video_info(path)
            frames, _ = decode_clips(path, clips, size=size, num_threads=threads)
            assert all(isinstance(f, np.ndarray) for f in frames)

        def per_span_sparse() -> None:
            vr = reader()
            for lo, hi in spans:
                _batches(vr, [i for i in union if lo <= i <= hi], step=10 ** 9)

        def per_clip() -> None:
            vr = reader()
            for clip in clips:
                vr.get_batch(np.unique(clip).tolist()).asnumpy()

        folder = os.path.join(tmp, "rgb_frames")
        make_frame_folder(path, folder)

        def rgb_folder() -> None:
            frames, _ = decode_folder_clips(folder, clips, size=size, fps=real_fps)
            assert all(isinstance(f, np.ndarray) for f in frames)

        t = _median_seconds({
            "open": lambda: reader(),
            "sequential_native": lambda: _batches(reader(False), span_frames),
            "sequential": lambda: _batches(reader(), span_frames),
            "union_one_batch": lambda: _batches(reader(), union, step=10 ** 9),
            "per_span_sparse": per_span_sparse,
            "per_clip": per_clip,
            "decode_clips": ours,
            "rgb_folder": rgb_folder,
        }, repeats)
        assert scale_crop(np.zeros((256, 456, 3), np.uint8), size).shape == (size, size, 3)
        _, stats = decode_clips(path, clips, size=size, num_threads=threads)
        bitrate = os.path.getsize(path) * 8 / (num_frames / real_fps) / 1e6
    spanned = len(span_frames)
    return {
        f"{prefix}_video": f"{width}x{height} {fps} fps {seconds:g} s, gop {gop or 'x264 default'},"
                           f" {bitrate:.2f} Mbit/s, decoded at {out_w}x{out_h}, crop {size}",
        f"{prefix}_clips": len(clips),
        f"{prefix}_merged_spans": len(spans),
        f"{prefix}_frames_spanned": spanned,
        f"{prefix}_reader_open_ms": round(t.pop("open")[0] * 1e3, 1),
        **{f"{prefix}_{name}_fps": round(spanned / wall, 1) for name, (wall, _) in t.items()},
        **{f"{prefix}_{name}_cpu_fps": round(spanned / cpu, 1) for name, (_, cpu) in t.items()},
        f"{prefix}_ratio_vs_sequential": round(t["sequential"][0] / t["decode_clips"][0], 2),
        f"{prefix}_cpu_ratio_vs_sequential": round(t["sequential"][1] / t["decode_clips"][1], 2),
        f"{prefix}_clips_per_s": round(len(clips) / t["decode_clips"][0], 1),
        f"{prefix}_rgb_folder_clips_per_s": round(len(clips) / t["rgb_folder"][0], 1),
        f"{prefix}_rgb_folder_frames_read_per_s": round(len(union) / t["rgb_folder"][0], 1),
        f"{prefix}_rgb_folder_vs_decode_clips": round(t["decode_clips"][0] / t["rgb_folder"][0], 2),
        f"{prefix}_rgb_folder_vs_decode_clips_cpu": round(t["decode_clips"][1] / t["rgb_folder"][1], 2),
        f"{prefix}_frames_needed": len(union),
        f"{prefix}_frames_decoded_per_clip": round(stats.frames_decoded / len(clips), 1),
        f"{prefix}_frames_spanned_per_clip": round(stats.frames_spanned / len(clips), 1),
        f"{prefix}_clip_span_frames": sampling.clip_span_frames(real_fps),
        f"{prefix}_frames_returned_per_clip": round(sum(len(c) for c in clips) / len(clips), 1),
    }


def bench_extract(*, videos: int = 4, seconds: float = 30.0, width: int = 160, height: int = 120,
                  teacher: str = "mformer-tiny", frame_size: int = 64, shard_size: int = 16,
                  batch_size: int = 8, workers: int = 1, device: str = "cpu",
                  prefix: str = "extract") -> dict[str, float]:
    """End-to-end `extract` on the built-in synthetic dataset: clips/s, decode work, time per stage."""
    from egocache.pipeline.extract import ExtractOptions, extract
    from egocache.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        ds = synthesize(os.path.join(tmp, "ds"), videos=videos, seed=0, size=(width, height),
                        duration_s=seconds)
        summary = extract(ExtractOptions(
            teacher=teacher, dataset="epic100", annotations=(ds.train_csv, ds.validation_csv),
            root=ds.root, cache=os.path.join(tmp, "cache.zarr"), frame_size=frame_size,
            shard_size=shard_size, batch_size=batch_size, workers=workers, device=device,
            progress=False))
    out = {f"{prefix}_clips": summary.clips, f"{prefix}_clips_failed": summary.clips_failed,
           f"{prefix}_seconds": summary.seconds, f"{prefix}_clips_per_s": summary.clips_per_s,
           f"{prefix}_frames_decoded_per_clip": summary.frames_decoded_per_clip,
           f"{prefix}_frames_spanned_per_clip": summary.frames_spanned_per_clip}
    out.update({f"{prefix}_{stage}_s": s for stage, s in summary.stage_seconds.items()})
    return out


def main(argv: list[str] | None = None) -> None:
    """Run one benchmark section and print its results as `name: value` lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sections = parser.add_subparsers(dest="section", required=True)
    dec = sections.add_parser("decode", help="decode_clips against sequential decord decoding")
    dec.add_argument("--width", type=int, default=456)
    dec.add_argument("--height", type=int, default=256)
    dec.add_argument("--seconds", type=float, default=60.0)
    dec.add_argument("--gop", type=int, default=None, help="keyframe interval (x264 default 250)")
    dec.add_argument("--size", type=int, default=224, help="short side / crop size")
    dec.add_argument("--eval-clips", type=int, default=3, help="clips per segment")
    dec.add_argument("--threads", type=int, default=1, help="decord decoding threads (0 = auto)")
    dec.add_argument("--repeats", type=int, default=5)
    dec.add_argument("--hd", action="store_true", help="also a 1920x1080 video (--hd-seconds long)")
    dec.add_argument("--hd-seconds", type=float, default=10.0)
    ext = sections.add_parser("extract", help="the end-to-end extraction pass on synthetic data")
    ext.add_argument("--videos", type=int, default=4)
    ext.add_argument("--seconds", type=float, default=30.0, help="length of each video")
    ext.add_argument("--width", type=int, default=160)
    ext.add_argument("--height", type=int, default=120)
    ext.add_argument("--teacher", default="mformer-tiny")
    ext.add_argument("--frame-size", type=int, default=64)
    ext.add_argument("--workers", type=int, default=1, help="1: in process; N >= 2: local dask cluster")
    ext.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.section == "extract":
        results = bench_extract(videos=args.videos, seconds=args.seconds, width=args.width,
                                height=args.height, teacher=args.teacher, frame_size=args.frame_size,
                                workers=args.workers, device=args.device)
        for name, value in results.items():
            print(f"{name}: {value}", flush=True)
    if args.section == "decode":
        common = dict(gop=args.gop, size=args.size, eval_clips=args.eval_clips,
                      threads=args.threads, repeats=args.repeats)
        runs = [bench_decode(width=args.width, height=args.height, seconds=args.seconds, **common)]
        if args.hd:
            runs.append(bench_decode(width=1920, height=1080, seconds=args.hd_seconds,
                                     prefix="decode_hd", **common))
        for results in runs:
            for name, value in results.items():
                print(f"{name}: {value}", flush=True)


if __name__ == "__main__":
    main()
