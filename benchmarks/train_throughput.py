"""Student training steps/s reading from the cache through the DataLoader vs. the same steps in memory.

Writes a synthetic cache (random frames, IMU, teacher outputs; content does not change the cost) in a
temporary directory, builds the real training stage (egocache.student.train.StageRun: same model,
optimizer, sampler, loader and step), then times `--steps` optimizer steps fed by the DataLoader over
the cache (workers read and batch while the model trains) and the same steps fed by batches already
held in memory, alternately for `--rounds` rounds (the order flips each round), so a load spike from
other jobs hits both alike. The ratio loader/memory is the share of the step rate that survives
loading; the goal is >= 0.95, i.e. loading hidden behind compute. It reports the median (and range)
of the rounds' paired ratios, and the loader alone (batches/s with no training beside it) as the
share of a step's time loading would take on its own: the cost that noise otherwise hides. Then the
same for the frozen-encoder mode (--freeze-image-encoder: per-frame features computed once, not
timed, read instead of frames).

    python benchmarks/train_throughput.py [--frame-size 112] [--batch-size 32] [--steps 10] [--frozen-steps 40]
        [--rounds 5] [--num-workers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from egocache.cache import CacheWriter
from egocache.pipeline.sampling import student_positions
from egocache.student.config import TrainConfig, check_cache
from egocache.student.train import EpochSampler, Runtime, StageRun, to_device

HEADS = {"verb": [f"v{i}" for i in range(97)], "noun": [f"n{i}" for i in range(300)]}


def write_cache(path: str, *, clips: int, frame_size: int, feature_dim: int, seed: int = 0) -> str:
    """A cache of `clips` training clips plus a few validation clips, random contents."""
    rng = np.random.default_rng(seed)
    n = clips + 8
    table = {"clip_id": [f"s{i}/0" for i in range(n)], "segment_id": [f"s{i}" for i in range(n)],
             "video_id": [f"v{i // 50}" for i in range(n)], "split": ["train"] * clips + ["validation"] * 8,
             "start_s": np.arange(n) * 3.0, "end_s": np.arange(n) * 3.0 + 2.13,
             **{f"label_{h}": rng.integers(0, len(c), n) for h, c in HEADS.items()}}
    positions, sets, fl = student_positions((1, 2, 4), True)
    for_n = sets["uniform"]
    attrs = {"teacher": {"name": "random", "config": {}, "checkpoint_sha256": None},
             "sampling": {"t": 16, "stride": 4, "clip_seconds": 2.1333},
             "imu": {"rate_hz": 198.0, "window": 422, "channels": ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"], "centred": True},
             "source": {"dataset": "epic100", "manifest_sha256": "0" * 64}}
    writer = CacheWriter.create(path, clips=table, feature_dim=feature_dim, heads=HEADS, frame_size=frame_size,
                                frame_positions=positions, frames_for_n=for_n, first_last=fl, attrs=attrs)
    for i in range(writer.num_shards):
        m = len(range(n)[writer.shard_slice(i)])
        writer.write_shard(
            i, rng.normal(size=(m, feature_dim)).astype(np.float32),
            {h: rng.normal(size=(m, len(c))).astype(np.float32) for h, c in HEADS.items()},
            rng.normal(size=(m, 422, 6)).astype(np.float32),
            rng.integers(0, 256, size=(m, len(positions), frame_size, frame_size, 3), dtype=np.uint8),
            np.ones(m, np.int8), [""] * m)
    return path


def time_steps(run: StageRun, batches: Any, steps: int, warmup: int) -> float:
    """Optimizer steps per second over `steps` batches after `warmup` untimed ones."""
    it = iter(batches)
    for k in range(warmup):
        run._step(to_device(next(it), run.rt.device), k + 1)
    t0 = time.perf_counter()
    for k in range(steps):
        run._step(to_device(next(it), run.rt.device), warmup + k + 1)
    return steps / (time.perf_counter() - t0)


def loader_alone(loader: Any, n: int) -> float:
    """Batches/s the loader delivers with nothing else running, first batch to n-th (an epoch's start,
    which sends the workers their first indices, falls in the warm-up steps when training)."""
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n - 1):
        next(it)
    return (n - 1) / (time.perf_counter() - t0)


def measure(cache: str, out: Path, args: argparse.Namespace, frozen: bool) -> dict[str, float]:
    """Steps/s from the cache loader and from memory, for one mode."""
    from egocache.cache import cache_loader

    cfg = TrainConfig(cache=cache, out=str(out), variant=args.variant, frames=args.frames, stage="distill",
                      batch_size=args.batch_size, num_workers=args.num_workers, epochs=1,
                      freeze_image_encoder=frozen, device=args.device)
    facts, cfg = check_cache(cfg)
    rt = Runtime(0, 1, torch.device(args.device))
    run = StageRun("distill", cfg, facts, rt, resume=False, progress=False, log=lambda msg: None)
    t0 = time.perf_counter()
    run.build()
    setup = time.perf_counter() - t0
    sampler = EpochSampler(len(run.train_ds), cfg.batch_size, cfg.seed)
    loader = cache_loader(run.train_ds, batch_size=cfg.batch_size, shuffle=False, seed=cfg.seed,
                          num_workers=cfg.num_workers, drop_last=True, sampler=sampler)
    run.module.train()
    n = max(args.steps, args.frozen_steps) + args.warmup
    if sampler.batches_per_epoch < n:
        raise SystemExit(f"--clips {args.clips} gives {sampler.batches_per_epoch} batches; need {n}")
    held = [b for b, _ in zip(iter(loader), range(n))]     # also starts the (persistent) workers
    alone = max(loader_alone(loader, n) for _ in range(3))
    steps = args.frozen_steps if frozen else args.steps
    feeds = {"loader": lambda: loader, "memory": lambda: held}
    rates: dict[str, list[float]] = {"loader": [], "memory": []}
    for r in range(args.rounds):
        for name in (("loader", "memory") if r % 2 == 0 else ("memory", "loader")):
            rates[name].append(time_steps(run, feeds[name](), steps, args.warmup))
    paired = np.array(rates["loader"]) / np.array(rates["memory"])
    memory = float(np.median(rates["memory"]))
    return {"loader_steps_s": float(np.median(rates["loader"])), "memory_steps_s": memory,
            "ratio": float(np.median(paired)), "ratio_min": float(paired.min()), "ratio_max": float(paired.max()),
            "loader_alone_batches_s": alone, "loading_share": memory / alone,
            "clips_s": float(np.median(rates["loader"])) * cfg.batch_size, "setup_s": setup}


def main() -> None:
    """Parse options, build the cache, print both modes and their ratios."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=1536, help="training clips in the cache")
    p.add_argument("--frame-size", type=int, default=112)
    p.add_argument("--feature-dim", type=int, default=768)
    p.add_argument("--variant", default="egodistill")
    p.add_argument("--frames", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps per feed and round")
    p.add_argument("--frozen-steps", type=int, default=40,
                   help="the same for the frozen-encoder mode, whose steps are ~5x shorter")
    p.add_argument("--rounds", type=int, default=5, help="rounds of (loader, memory), order flipped each round")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = write_cache(str(Path(tmp) / "bench.zarr"), clips=args.clips, frame_size=args.frame_size,
                            feature_dim=args.feature_dim)
        results = {mode: measure(cache, Path(tmp) / mode, args, frozen=mode == "frozen")
                   for mode in ("trained-encoder", "frozen")}
    if args.json:
        print(json.dumps({"args": vars(args), "torch_threads": torch.get_num_threads(), **results}, indent=2))
        return
    print(f"{args.variant} N={args.frames} {args.frame_size}px batch {args.batch_size} on {args.device} "
          f"({torch.get_num_threads()} threads, {args.num_workers} loader workers), {args.rounds} rounds of "
          f"{args.steps} (frozen: {args.frozen_steps}) timed steps per feed (medians)")
    for mode, r in results.items():
        print(f"  {mode:<16} loader {r['loader_steps_s']:7.2f} steps/s ({r['clips_s']:7.1f} clips/s)  "
              f"memory {r['memory_steps_s']:7.2f} steps/s  ratio {r['ratio']:.3f} ({r['ratio_min']:.3f}-"
              f"{r['ratio_max']:.3f})  loader alone {r['loader_alone_batches_s']:.0f} batches/s = "
              f"{100 * r['loading_share']:.1f} % of a step  (setup {r['setup_s']:.1f} s)")


if __name__ == "__main__":
    main()
