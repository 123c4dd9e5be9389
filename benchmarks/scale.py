"""Cache scale: per-worker memory, open + index time, info and verify time, random batch reads at 10k-1M clips.

Builds (once, kept under --root) caches of each size with tiny frames (one 8x8 RGB frame per clip) and
real small arrays (768-d features, 97 + 300 logits, a 422x6 IMU window, two labels: 14.7 KB per clip,
as an EPIC/Ego4D cache holds), then measures for each size side by side:
- open + index: building CacheDataset(split="train") in this process, warm (best of 3);
- per-worker memory: in a fresh process (as a training process: it opens the split, then forks its
  loader's workers), a DataLoader with --workers worker processes reading --batches random batches
  of 64 each, then each worker's RSS, PSS and USS (private) from /proc/<pid>/smaps_rollup;
- `info` (open_cache) and `verify` (verify_cache: every file hashed) wall time, verify in MB/s;
- random batch reads in this process (clips/s).
The last lines print the ratios the goals are stated in: RSS per worker at the largest size over
the smallest (goal <= 1.10), open + index of the largest (goal <= 2 s), verify MB/s spread.

    python benchmarks/scale.py [--sizes 10000,100000,1000000] [--root /tmp/egocache-scale] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import numpy as np

from egocache.cache import CacheDataset, CacheWriter, cache_loader, open_cache, verify_cache
from egocache.cache.info import disk_size
from egocache.pipeline.sampling import student_positions

HEADS = {"verb": 97, "noun": 300}
FEAT, WINDOW, SIZE, SHARD = 768, 422, 8, 256


def build(path: str, n: int, seed: int = 0) -> float:
    """Write an n-clip cache (90% train, 10% validation) at `path`; seconds taken (0 if it exists)."""
    if os.path.exists(os.path.join(path, "_egocache", "built")):
        return 0.0
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    per_video = 50
    n_val = n // 10
    clips = {"clip_id": [f"P{i // 100_000:02d}_{i // per_video:06d}_{i}/0" for i in range(n)],
             "segment_id": [f"P{i // 100_000:02d}_{i // per_video:06d}_{i}" for i in range(n)],
             "video_id": [f"P{i // 100_000:02d}_{i // per_video:06d}" for i in range(n)],
             "split": ["train"] * (n - n_val) + ["validation"] * n_val,
             "start_s": (np.arange(n) % per_video) * 3.0, "end_s": (np.arange(n) % per_video) * 3.0 + 2.13,
             **{f"label_{h}": rng.integers(0, c, n) for h, c in HEADS.items()}}
    positions, sets, _ = student_positions((1,), False)
    for_n = sets["uniform"]
    attrs = {"teacher": {"name": "scale", "config": {}, "checkpoint_sha256": None},
             "sampling": {"t": 16, "stride": 4, "clip_seconds": 2.1333},
             "imu": {"rate_hz": 198.0, "window": WINDOW, "centred": True,
                     "channels": ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"]},
             "source": {"dataset": "synthetic", "manifest_sha256": "0" * 64}}
    w = CacheWriter.create(path, clips=clips, feature_dim=FEAT, frame_size=SIZE, frame_positions=positions,
                           heads={h: [f"{h}{i}" for i in range(c)] for h, c in HEADS.items()},
                           frames_for_n=for_n, first_last=None, attrs=attrs, shard_size=SHARD)
    block = {"features": rng.standard_normal((SHARD, FEAT)).astype(np.float32),
             "imu": rng.standard_normal((SHARD, WINDOW, 6)).astype(np.float32),
             **{h: rng.standard_normal((SHARD, c)).astype(np.float32) for h, c in HEADS.items()},
             "frames": rng.integers(0, 256, (SHARD, 1, SIZE, SIZE, 3), dtype=np.uint8)}
    for i in range(w.num_shards):
        sl = w.shard_slice(i)
        m, shift = sl.stop - sl.start, np.float32(i % 97)     # every shard's values differ
        w.write_shard(i, block["features"][:m] + shift, {h: block[h][:m] + shift for h in HEADS},
                      block["imu"][:m] + shift, block["frames"][:m], np.ones(m, np.int8), [""] * m)
    with open(os.path.join(path, "_egocache", "built"), "w") as fh:
        fh.write("built by benchmarks/scale.py\n")
    return time.perf_counter() - t0


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private clean + dirty) of a process in MB."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                fields[parts[0].rstrip(":")] = int(parts[1])
    uss = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return {"rss_mb": fields["Rss"] / 1024, "pss_mb": fields.get("Pss", 0) / 1024, "uss_mb": uss / 1024}


def worker_memory(path: str, workers: int, batches: int) -> dict[str, float]:
    """Mean memory of the DataLoader workers after each read `batches` random batches of 64."""
    ds = CacheDataset(path, split="train", frames=1)
    loader = cache_loader(ds, batch_size=64, shuffle=True, seed=0, num_workers=workers, drop_last=True)
    if batches * workers > len(loader):
        raise SystemExit(f"{path}: {len(loader)} batches of 64 per epoch, fewer than --batches {batches} x "
                         f"{workers} workers; lower --batches")
    it = iter(loader)
    for _ in range(batches * workers):
        next(it)
    pids = [w.pid for w in it._workers]           # the worker processes of this iterator
    got = [memory(p) for p in pids]
    parent = memory(os.getpid())
    del it, loader
    return {**{k: float(np.mean([g[k] for g in got])) for k in got[0]}, "parent_rss_mb": parent["rss_mb"]}


def worker_memory_fresh(path: str, workers: int, batches: int) -> dict[str, float]:
    """worker_memory in a new process that only opens the split and iterates its loader, as a training
    process does: a forked worker's RSS counts every page of its parent resident at the fork, so
    measured from this (long-running, much-allocating) benchmark process it would count this one's heap."""
    import subprocess
    import sys

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import scale; "
            "print(json.dumps(scale.worker_memory(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))")
    proc = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__)), path,
                           str(workers), str(batches)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_rate(ds: CacheDataset, batches: int, seed: int) -> float:
    """clips/s of random sorted batches of 64 read in this process."""
    rng = np.random.default_rng(seed)
    order = [np.sort(rng.choice(len(ds), 64, replace=False)) for _ in range(batches)]
    t0 = time.perf_counter()
    for idx in order:
        ds[idx.tolist()]
    return 64 * batches / (time.perf_counter() - t0)


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Best wall time of `repeats` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    """Build, measure, print one row per size and the goal ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--root", default="/tmp/egocache-scale")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=60,
                    help="random batches of 64 each worker reads (the same at every size; 10k clips hold 140)")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for n in sizes:
        path = os.path.join(args.root, f"c{n}.zarr")
        built = build(path, n)
        open_s, ds = timed(lambda: CacheDataset(path, split="train", frames=1))
        read_rate(ds, 20, 99)                                      # warm the reader
        rate = max(read_rate(ds, 100, s) for s in range(3))
        info_s, _ = timed(lambda: open_cache(path), 2)
        t0 = time.perf_counter()
        report = verify_cache(path)
        verify_s = time.perf_counter() - t0
        mem = worker_memory_fresh(path, args.workers, args.batches)
        rows.append({"clips": n, "train_clips": len(ds), "build_s": round(built, 1),
                     "bytes": disk_size(path), "open_index_s": open_s, "info_s": info_s, "verify_s": verify_s,
                     "verify_ok": report.ok, "verify_mb_s": report.checked["bytes_hashed"] / 1e6 / verify_s,
                     "read_clips_s": rate, **{f"worker_{k}": v for k, v in mem.items()}})
        r = rows[-1]
        print(f"{n:>8} clips ({r['bytes'] / 1e9:6.2f} GB, built in {built:5.0f} s): open+index "
              f"{open_s:5.2f} s  info {info_s:5.2f} s  verify {verify_s:6.1f} s ({r['verify_mb_s']:6.0f} MB/s, "
              f"{'ok' if report.ok else 'FAILED'})  random batch reads {rate:7.0f} clips/s  per worker RSS "
              f"{mem['rss_mb']:6.1f} MB, PSS {mem['pss_mb']:6.1f}, USS {mem['uss_mb']:6.1f} (parent RSS "
              f"{mem['parent_rss_mb']:6.1f})", flush=True)
    first, last = rows[0], rows[-1]
    print(f"per-worker RSS {last['clips']} / {first['clips']} clips: "
          f"{last['worker_rss_mb'] / first['worker_rss_mb']:.3f} (goal <= 1.10); USS "
          f"{last['worker_uss_mb'] / first['worker_uss_mb']:.3f}; format 1 would hold "
          f"{last['train_clips'] * 14.7e3 / 1e6:.0f} MB of small arrays per worker")
    print(f"open + index of {last['clips']} clips: {last['open_index_s']:.2f} s (goal <= 2 s warm)")
    speeds = [r["verify_mb_s"] for r in rows]
    print(f"verify MB/s from {first['clips']} to {last['clips']} clips: "
          + ", ".join(f"{s:.0f}" for s in speeds) + f" (spread x{max(speeds) / min(speeds):.2f}: linear in bytes)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
