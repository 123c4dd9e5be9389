"""Student training steps/s from the cache against running the teacher ensemble live at every step.

Builds, in a temporary directory, a small synthetic dataset (egocache.synth) and a cache of its clips
with teacher mformer-tiny (its own, root arrays) plus the teachers of --added as teachers/<name>
(mformer-tiny with other depth, width or clip length; seeded random init, which changes nothing for
speed), through the extraction API the CLI calls (`egocache extract`, then `extract --teacher-name`).
Then one distillation stage is built as `train-student --teachers mformer-tiny,<added>
--teacher-weights equal` builds it (egocache.student.train.StageRun: the same student, optimizer,
sampler, loader and step), and optimizer steps are timed three ways, interleaved round by round:

- cache: batches from CacheDataset(teachers=[...]); KD from the cached ensemble's logits.
- live-decode: the seed-001 code's way (Radevski et al., ICCV 2023): the same step on the same
  student batches from the cache, plus, every step, each teacher's frames decoded from the videos for
  the batch's clips (pipeline.frames, the frame plan extraction uses, each distinct plan once) and
  each teacher's forward pass (eval, no grad, pipeline.teachers.base.run_teacher, as extraction runs
  it); KD from the ensemble of those live outputs.
- live-memory: as live-decode with the teacher frames already decoded and held in memory (decoded
  once, not timed): teacher compute only. This is the bound a live pipeline approaches when decoding
  is hidden behind the step (e.g. in DataLoader workers on spare cores), so it is favourable to live.

Before timing, one batch's live teacher outputs are compared with the cached ones (printed as the max
|difference|; 0 says the live path computes exactly what the cache holds, pixels and weights alike).
Printed: median steps/s per mode over --rounds rounds with the spread (min-max), the ratio
cache/live for both live rows (median of the per-round ratios, with their spread), the step time
each live row adds (teacher forwards, then decoding; differences of the medians), and the GFLOPs
per clip of the student's training step (3x its forward) and of each teacher's forward, which is what
the live-memory ratio follows; a last line gives the FLOPs-only estimate of that ratio at the paper's
scale (MotionFormer 16x224 against a ResNet-18 student at 224 px), not measured here. The default
size finishes in a few minutes on a 2-core CPU; timings on a shared machine are noisy, read the spread.

    python benchmarks/ensemble_live.py [--videos 4] [--batch-size 8] [--steps 6] [--rounds 5] [--added short,wide]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

OWN = "mformer-tiny"
# teachers that can be added to the cache: group name -> mformer-tiny overrides
ADDABLE: dict[str, tuple[tuple[str, Any], ...]] = {
    "short": (("depth", 1), ("num_frames", 4)),           # shallower, half the clip length
    "wide": (("depth", 4), ("embed_dim", 192)),           # deeper and twice as wide
    "sharp": (("img_size", 96), ("pos_img_size", 96)),    # larger input (decoded at a larger size)
}
MODES = ("cache", "live-decode", "live-memory")


def build_world(root: Path, args: argparse.Namespace, log: Callable[[str], None]) -> tuple[Any, str]:
    """Synthetic dataset and its cache with the own teacher plus the --added ones; (ExtractOptions, cache)."""
    from egocache.pipeline.extract import extract
    from egocache.pipeline.options import ExtractOptions
    from egocache.synth import synthesize

    t = time.perf_counter()
    ds = synthesize(str(root / "ds"), videos=args.videos, seed=0, size=(args.video_width, args.video_height),
                    duration_s=args.duration)
    common: dict[str, Any] = dict(dataset="epic100", annotations=(ds.train_csv, ds.validation_csv), root=ds.root,
                                  cache=str(root / "cache.zarr"), frame_size=args.frame_size, frames=(1,),
                                  first_last=False, shard_size=64, batch_size=8, device="cpu", progress=False)
    opts = ExtractOptions(teacher=OWN, **common)
    summary = extract(opts)
    for name in args.added:
        extract(ExtractOptions(teacher=OWN, teacher_overrides=ADDABLE[name], teacher_name=name, **common))
    log(f"world: {args.videos} synthetic videos of {args.duration:.0f} s at {args.video_width}x{args.video_height}, "
        f"{summary.clips_ok} clips cached with {1 + len(args.added)} teachers in {time.perf_counter() - t:.0f} s")
    return opts, opts.cache


class LiveTeachers:
    """The ensemble as the seed-001 code runs it: every teacher's forward pass on the batch's clips.

    Teachers are rebuilt as extraction builds them (extract_worker.load_teacher: same name, heads,
    overrides and seeded init), so their outputs equal the cached ones; cache row r is clip r of the
    extraction's manifest, whose video and centre give the frames to decode.
    """

    def __init__(self, opts: Any, added: list[str], frame_size: int, batch_size: int) -> None:
        from egocache.pipeline.extract_worker import TeacherKey, load_teacher
        from egocache.pipeline.frames import FramePlan

        manifest = opts.load_manifest()
        self.clips = manifest.clips
        heads = tuple((h, len(c)) for h, c in manifest.class_names.items())
        overrides = {OWN: (), **{n: ADDABLE[n] for n in added}}
        # load_teacher keeps one model per process; the ensemble holds every one it returns
        self.models = {n: load_teacher(TeacherKey(OWN, None, heads, tuple(sorted(o)), "cpu"))
                       for n, o in overrides.items()}
        # teacher frames only (the student's come from the cache), decoded at extraction's size
        self.plans = {n: FramePlan(m.spec.num_frames, m.spec.frame_stride, m.spec.img_size, (), frame_size)
                      for n, m in self.models.items()}
        self.heads = [h for h, _ in heads]
        self.batch_size = batch_size

    def decode(self, rows: np.ndarray) -> dict[Any, np.ndarray]:
        """Teacher frames (B, T, S, S, 3) of these cache rows for each distinct frame plan, from the videos."""
        from egocache.errors import ClipError
        from egocache.pipeline.frames import decode_clip_frames

        by_video: dict[str, list[int]] = {}
        for i, r in enumerate(rows.tolist()):
            by_video.setdefault(self.clips[r].video_path, []).append(i)
        out = {}
        for plan in dict.fromkeys(self.plans.values()):
            frames: list[Any] = [None] * len(rows)
            for path, idx in by_video.items():
                idx = sorted(idx, key=lambda i: self.clips[rows[i]].centre_s)
                first = self.clips[rows[idx[0]]]
                decoded, _, _ = decode_clip_frames(path, [self.clips[rows[i]].centre_s for i in idx], plan,
                                                   fps=first.frames_fps)
                for i, clip in zip(idx, decoded):
                    if isinstance(clip, ClipError):
                        raise clip
                    frames[i] = clip.teacher
            out[plan] = np.stack(frames)
        return out

    def outputs(self, frames: dict[Any, np.ndarray]) -> dict[str, dict[str, Any]]:
        """Each teacher's {"feature", "logits", "aux"} (as CacheDataset gives them) from its frames."""
        from egocache.pipeline.teachers.base import run_teacher

        out = {}
        for name, model in self.models.items():
            feats, logits = run_teacher(model, frames[self.plans[name]], "cpu", self.batch_size)
            out[name] = {"feature": torch.from_numpy(feats),
                         "logits": {h: torch.from_numpy(logits[h]) for h in self.heads}, "aux": {}}
        return out


def batches(ds: Any, batch_size: int, seed: int, num_workers: int) -> Iterator[dict[str, Any]]:
    """Training batches of `ds` as train-student draws them (EpochSampler order), epoch after epoch."""
    from egocache.cache import cache_loader
    from egocache.student.train import EpochSampler

    sampler = EpochSampler(len(ds), batch_size, seed)
    if sampler.batches_per_epoch == 0:
        raise SystemExit(f"{len(ds)} training clips give no batch of {batch_size}; use more --videos")
    loader = cache_loader(ds, batch_size=batch_size, shuffle=False, seed=seed, num_workers=num_workers,
                          drop_last=True, sampler=sampler)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def build_run(cache: str, out: Path, args: argparse.Namespace) -> Any:
    """The distill stage of `train-student --teachers mformer-tiny,<added> --teacher-weights equal`."""
    from egocache.student.config import TrainConfig, check_cache
    from egocache.student.train import Runtime, StageRun

    cfg = TrainConfig(cache=cache, out=str(out), variant=args.variant, frames=1, stage="distill",
                      batch_size=args.batch_size, num_workers=args.num_workers, epochs=1,
                      teachers=[OWN, *args.added], teacher_weights="equal", device="cpu")
    facts, cfg = check_cache(cfg)
    run = StageRun("distill", cfg, facts, Runtime(0, 1, torch.device("cpu")), resume=False, progress=False,
                   log=lambda msg: None)
    run.build()
    run.module.train()
    return run


def step_sources(run: Any, live: LiveTeachers, log: Callable[[str], None]) -> dict[str, Callable[[], dict]]:
    """Per mode, a function giving the next step's batch with its teachers' outputs."""
    from egocache.cache import CacheDataset

    cfg = run.cfg
    cached = batches(run.train_ds, cfg.batch_size, cfg.seed, cfg.num_workers)
    # the live path reads the student's inputs and labels from the cache, no teacher outputs
    plain = CacheDataset(cfg.cache, split="train", frames=cfg.frames, selection=cfg.frame_selection,
                         selection_seed=cfg.seed)
    decoding = batches(plain, cfg.batch_size, cfg.seed, cfg.num_workers)
    held = batches(plain, cfg.batch_size, cfg.seed, cfg.num_workers)
    t = time.perf_counter()
    every = live.decode(plain.rows)                     # teacher frames of every training clip, held
    where = {int(r): i for i, r in enumerate(plain.rows)}
    log(f"preloaded the teacher frames of {len(plain.rows)} training clips in {time.perf_counter() - t:.1f} s "
          f"({sum(a.nbytes for a in every.values()) / 2**20:.1f} MiB)")

    def from_cache() -> dict:
        return next(cached)

    def live_decode() -> dict:
        b = next(decoding)
        return {**b, "teachers": live.outputs(live.decode(b["row"].numpy()))}

    def live_memory() -> dict:
        b = next(held)
        idx = [where[int(r)] for r in b["row"]]
        return {**b, "teachers": live.outputs({p: a[idx] for p, a in every.items()})}

    return {"cache": from_cache, "live-decode": live_decode, "live-memory": live_memory}


def live_difference(run: Any, live: LiveTeachers) -> float:
    """Largest |live - cached| teacher output (features and logits) on one training batch: the live path
    computes what the cache holds, so the modes differ in where the outputs come from, not in what they are."""
    batch = next(batches(run.train_ds, run.cfg.batch_size, run.cfg.seed, 0))
    got = live.outputs(live.decode(batch["row"].numpy()))
    diffs = [float((got[n]["feature"] - t["feature"]).abs().max()) for n, t in batch["teachers"].items()]
    diffs += [float((got[n]["logits"][h] - v).abs().max()) for n, t in batch["teachers"].items()
              for h, v in t["logits"].items()]
    return max(diffs)


def time_mode(run: Any, source: Callable[[], dict], steps: int, warmup: int, first: int) -> float:
    """Optimizer steps per second over `steps` steps (batch, teachers, step) after `warmup` untimed ones."""
    from egocache.student.train import to_device

    for k in range(warmup):
        run._step(to_device(source(), run.rt.device), first + k)
    t0 = time.perf_counter()
    for k in range(steps):
        run._step(to_device(source(), run.rt.device), first + warmup + k)
    return steps / (time.perf_counter() - t0)


def flops(run: Any, live: LiveTeachers, frame_size: int) -> dict[str, float]:
    """GFLOPs per clip: the student's training step (3x forward) and each teacher's forward."""
    from egocache.pipeline.teachers import teacher_stats
    from egocache.report.measure import student_cost

    out = {"student (train)": 3 * student_cost(run.student, frame_size)[0]}
    for name in live.models:
        out[name] = teacher_stats(OWN, **dict(ADDABLE.get(name, ())))["gflops"]
    return out


def paper_scale() -> float:
    """FLOPs-only live-memory ratio at the paper's scale: ResNet-18 N=1 at 224 px against MotionFormer 16x224."""
    from egocache.pipeline.teachers import teacher_stats
    from egocache.report.measure import student_cost
    from egocache.student.models import build_student

    student = 3 * student_cost(build_student("visonly-distill", frames=1, feature_dim=768,
                                             heads={"verb": 97, "noun": 300}), 224)[0]
    return (student + teacher_stats("mformer")["gflops"]) / student


def spread(values: list[float]) -> str:
    """Median and min-max of a list of figures."""
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def measure(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the world, time every mode for --rounds rounds; the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="egocache-bench-") as tmp:
        opts, cache = build_world(Path(tmp), args, log)
        run = build_run(cache, Path(tmp) / "run", args)
        live = LiveTeachers(opts, args.added, args.frame_size, args.batch_size)
        difference = live_difference(run, live)
        sources = step_sources(run, live, log)
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        step = 1
        for r in range(args.rounds):
            for mode in MODES:
                rates[mode].append(time_mode(run, sources[mode], args.steps, args.warmup, step))
                step += args.steps + args.warmup
            log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{m} {rates[m][-1]:.2f}" for m in MODES) + " steps/s")
        cost = flops(run, live, args.frame_size)
        clips = len(run.train_ds)
    ratios = {m: [c / v for c, v in zip(rates["cache"], rates[m])] for m in MODES[1:]}
    return {"rates": rates, "ratios": ratios, "gflops": cost, "train_clips": clips, "live_max_diff": difference,
            "paper_scale_ratio": paper_scale() if args.paper_scale else None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=4, help="synthetic videos (every 4th is validation)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per video")
    p.add_argument("--video-width", type=int, default=160)
    p.add_argument("--video-height", type=int, default=120)
    p.add_argument("--frame-size", type=int, default=64, help="stored student frame side")
    p.add_argument("--added", default="short,wide", help=f"teachers added to the cache, of {', '.join(ADDABLE)}")
    p.add_argument("--variant", default="visonly-distill")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=6, help="timed steps per mode and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before each timed run")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading the cache")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-paper-scale", dest="paper_scale", action="store_false",
                   help="skip the FLOPs-only estimate at the paper's scale")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args(argv)
    args.added = [n for n in args.added.split(",") if n]
    unknown = sorted(set(args.added) - set(ADDABLE))
    if unknown:
        p.error(f"--added: unknown teacher(s) {', '.join(unknown)}; known: {', '.join(ADDABLE)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Parse options, measure, print the table and the ratios."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    res = measure(args, log=(lambda msg: None) if args.json else print)
    if args.json:
        print(json.dumps({"args": vars(args), **res}, indent=2))
        return
    teachers = ", ".join([OWN, *(f"{n} ({', '.join(f'{k}={v}' for k, v in ADDABLE[n])})" for n in args.added)])
    print(f"{args.variant} N=1 {args.frame_size}px, batch {args.batch_size}, {res['train_clips']} training clips, "
          f"teachers {teachers}; {torch.get_num_threads()} torch threads, {args.num_workers} loader workers; "
          f"{args.steps} timed steps x {args.rounds} rounds, median (min-max)")
    print(f"  {'mode':<12} {'steps/s':>22} {'clips/s':>9} {'cache/live':>22}")
    for mode in MODES:
        rates = res["rates"][mode]
        ratio = spread(res["ratios"][mode]) if mode in res["ratios"] else ""
        print(f"  {mode:<12} {spread(rates):>22} {statistics.median(rates) * args.batch_size:9.1f} {ratio:>22}")
    ms = {m: 1000 / statistics.median(res["rates"][m]) for m in MODES}
    print(f"  per step (from the medians): cache step {ms['cache']:.0f} ms, + teacher forwards "
          f"{ms['live-memory'] - ms['cache']:.0f} ms, + decoding the teacher frames "
          f"{ms['live-decode'] - ms['live-memory']:.0f} ms")
    print("  GFLOPs per clip: " + ", ".join(f"{k} {v:.3f}" for k, v in res["gflops"].items())
          + f"; FLOPs-only live-memory ratio {sum(res['gflops'].values()) / res['gflops']['student (train)']:.2f}")
    print(f"  live teacher outputs against the cached ones: max |difference| {res['live_max_diff']:.1e}")
    if res["paper_scale_ratio"] is not None:
        print(f"  at the paper's scale (not measured): ResNet-18 N=1 224px against mformer 16x224, FLOPs-only "
              f"live-memory ratio {res['paper_scale_ratio']:.0f}")
    for mode, ratios in res["ratios"].items():
        print(f"ratio cache/{mode}: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
