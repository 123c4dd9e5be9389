"""Random-order batch read throughput of the cache reader against a numpy memmap of the same arrays.

Builds, in a temporary directory, a cache of synthetic clips (smooth, image-like frames so JPEG
behaves as on natural images) once per frame codec plus .npy memmaps holding the same arrays, then
reads every clip in random batches of 64 (each batch sorted) with CacheDataset (frames and every
small array, read from the store) and with numpy fancy indexing of the memmaps, and the frames alone
(the cache's FrameReader against the frames memmap; and the memmap into one reused output array, which
shows what the fresh output's page faults cost both). It reports a cold-ish first pass (the files'
pages dropped from the page cache with posix_fadvise) and the best of the warm passes (readers
interleaved), bytes on disk per clip, the frames-alone ratio FrameReader/memmap as best pass against
best pass and as the median (and range) of the ratios of passes of the same round, which a load spike
during one pass moves less, and, on the last line, the warm read ratio cache/memmap of whole items of
the first codec listed (the default, raw).

    python benchmarks/cache_read.py [--clips 2000] [--codecs raw,jpeg] [--batch 64] [--rounds 5] [--shard-size 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Callable

import numpy as np
import torch

from egocache.cache import CacheDataset, CacheWriter
from egocache.cache.info import disk_size
from egocache.cache.writer import SHARD_SIZE
from egocache.pipeline.sampling import student_positions

SIZE, FEAT, HEADS = 224, 768, {"verb": 97, "noun": 300}


def frame_bank(count: int, seed: int) -> np.ndarray:
    """`count` smooth RGB frames: bicubic-upsampled noise at three scales, like soft natural images."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(count, 3, SIZE, SIZE)
    for res, weight in ((7, 110.0), (28, 45.0), (112, 20.0)):
        x = torch.rand(count, 3, res, res, generator=g)
        out += weight * torch.nn.functional.interpolate(x, size=(SIZE, SIZE), mode="bicubic")
    return out.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def shard_frames(bank: np.ndarray, noise: np.ndarray, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """m clips of k frames: random bank frames, randomly shifted, plus sensor-like noise."""
    out = np.empty((m, k, SIZE, SIZE, 3), np.uint8)
    for i in range(m):
        for j in range(k):
            f = np.roll(bank[rng.integers(len(bank))], tuple(rng.integers(0, SIZE, 2)), axis=(0, 1))
            out[i, j] = np.clip(f.astype(np.int16) + noise[rng.integers(len(noise))], 0, 255)
    return out


def build(root: str, n: int, codecs: list[str], seed: int = 0, shard_size: int = SHARD_SIZE
          ) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Write one cache per codec (shards of `shard_size` clips) and the memmaps, all holding the same clips;
    return paths and memmaps."""
    rng = np.random.default_rng(seed)
    bank, noise = frame_bank(48, seed), rng.normal(0, 3, (8, SIZE, SIZE, 3)).astype(np.int16)
    positions, sets, _ = student_positions((4,), False)
    for_n = sets["uniform"]
    k = len(positions)
    clips = {"clip_id": [f"s{i}/0" for i in range(n)], "segment_id": [f"s{i}" for i in range(n)],
             "video_id": [f"v{i // 50}" for i in range(n)], "split": ["train"] * n,
             "start_s": np.arange(n) * 3.0, "end_s": np.arange(n) * 3.0 + 2.13,
             **{f"label_{h}": rng.integers(0, c, n) for h, c in HEADS.items()}}
    attrs = {"teacher": {"name": "benchmark", "config": {}, "checkpoint_sha256": None},
             "sampling": {"t": 16, "stride": 4, "clip_seconds": 2.1333},
             "imu": {"rate_hz": 198.0, "window": 422, "channels": ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"], "centred": True},
             "source": {"dataset": "synthetic", "manifest_sha256": "0" * 64}}
    shapes = {"frames": (n, k, SIZE, SIZE, 3), "features": (n, FEAT), "imu": (n, 422, 6),
              **{f"logits_{h}": (n, c) for h, c in HEADS.items()}, **{f"label_{h}": (n,) for h in HEADS}}
    mm = {name: np.lib.format.open_memmap(os.path.join(root, f"{name}.npy"), mode="w+",
                                          dtype=np.uint8 if name == "frames" else
                                          np.int64 if name.startswith("label") else np.float32, shape=shape)
          for name, shape in shapes.items()}
    for h in HEADS:
        mm[f"label_{h}"][:] = clips[f"label_{h}"]
    writers = {c: CacheWriter.create(os.path.join(root, f"{c}.zarr"), clips=clips, feature_dim=FEAT,
                                     heads={h: [str(i) for i in range(c_)] for h, c_ in HEADS.items()},
                                     frame_size=SIZE, frame_positions=positions, frames_for_n=for_n,
                                     first_last=None, attrs=attrs, frame_codec=c, shard_size=shard_size)
               for c in codecs}
    first = writers[codecs[0]]
    for i in range(first.num_shards):
        sl = first.shard_slice(i)
        m = sl.stop - sl.start
        data = {"frames": shard_frames(bank, noise, m, k, rng),
                "features": rng.standard_normal((m, FEAT)).astype(np.float32),
                "imu": rng.standard_normal((m, 422, 6)).astype(np.float32),
                **{f"logits_{h}": rng.standard_normal((m, c)).astype(np.float32) for h, c in HEADS.items()}}
        for name, value in data.items():
            mm[name][sl] = value
        for w in writers.values():
            w.write_shard(i, data["features"], {h: data[f"logits_{h}"] for h in HEADS}, data["imu"],
                          data["frames"], np.ones(m, np.int8), [""] * m)
    for a in mm.values():
        a.flush()
    return {c: w.path for c, w in writers.items()}, mm


def drop_page_cache(paths: list[str]) -> None:
    """Ask the kernel to forget the cached pages of every file under `paths` (cold-ish reads)."""
    for p in paths:
        files = [p] if os.path.isfile(p) else [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs]
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def one_pass(read: Callable[[np.ndarray], object], n: int, batch: int, seed: int) -> float:
    """clips/s of one pass over all clips in random batches (each batch sorted)."""
    order = np.random.default_rng(seed).permutation(n)
    t = time.perf_counter()
    for b in range(0, n, batch):
        read(np.sort(order[b:b + batch]))
    return n / (time.perf_counter() - t)


def memmap_reader(root: str, only: str | None = None) -> Callable[[np.ndarray], dict]:
    """Batch read of the same arrays (or array `only`) from freshly opened .npy memmaps."""
    arrays = {name[:-4]: np.load(os.path.join(root, name), mmap_mode="r")
              for name in os.listdir(root) if name.endswith(".npy") and only in (None, name[:-4])}
    return lambda idx: {name: np.ascontiguousarray(a[idx]) for name, a in arrays.items()}


def reused_reader(root: str) -> Callable[[np.ndarray], np.ndarray]:
    """The frames memmap read into one output array reused by every batch: the copy without the page
    faults of a fresh output (what a reader returning new arrays, as both above do, cannot avoid)."""
    frames = np.load(os.path.join(root, "frames.npy"), mmap_mode="r")
    out = np.empty((0,) + frames.shape[1:], np.uint8)

    def read(idx: np.ndarray) -> np.ndarray:
        nonlocal out
        if len(out) < len(idx):
            out = np.empty((len(idx),) + frames.shape[1:], np.uint8)
        np.take(frames, idx, axis=0, out=out[:len(idx)], mode="clip")
        return out[:len(idx)]
    return read


def frames_reader(path: str) -> Callable[[np.ndarray], np.ndarray]:
    """Batch read of the cache's frames alone (the FrameReader a CacheDataset uses)."""
    ds = CacheDataset(path, split="train", frames=4)
    reader, stored = ds._load().frames, ds._stored
    return lambda idx: reader.read(ds.rows[idx].astype(np.int64), stored)


def main() -> None:
    """Build, measure, print the table and the ratio line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--codecs", default="raw,jpeg", help="frame codecs to measure; the first gives the ratio")
    ap.add_argument("--rounds", type=int, default=5, help="warm passes per reader (best is reported)")
    ap.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                    help="clips per shard (the writer's default); small shards show a large cache, where each "
                         "clip of a batch lies in a shard of its own")
    args = ap.parse_args()
    codecs = args.codecs.split(",")
    with tempfile.TemporaryDirectory(prefix="egocache-bench-") as root:
        t = time.perf_counter()
        caches, mm = build(root, args.clips, codecs, shard_size=args.shard_size)
        print(f"cache read benchmark: {args.clips} clips x 4 frames {SIZE}x{SIZE} in shards of {args.shard_size}, "
              f"batch {args.batch}, random order; built in {time.perf_counter() - t:.0f} s")
        npy = [os.path.join(root, f"{name}.npy") for name in mm]
        del mm
        files = {"memmap": npy, **{c: [p] for c, p in caches.items()}}
        sizes = {"memmap": sum(os.path.getsize(p) for p in npy),
                 **{c: disk_size(p) for c, p in caches.items()}}
        readers, results = {}, {}
        for name, paths in files.items():   # cold-ish: first pass after dropping the files' pages
            drop_page_cache(paths)
            readers[name] = (memmap_reader(root) if name == "memmap"
                             else CacheDataset(caches[name], split="train", frames=4).__getitem__)
            results[name] = [one_pass(readers[name], args.clips, args.batch, 0)]
        readers["memmap frames"] = memmap_reader(root, "frames")
        readers[f"{codecs[0]} frames"] = frames_reader(caches[codecs[0]])
        readers["memmap frames reused"] = reused_reader(root)
        for name in ("memmap frames", f"{codecs[0]} frames", "memmap frames reused"):
            results[name] = [one_pass(readers[name], args.clips, args.batch, 0)]     # after the warm-up above
        for r in range(args.rounds):        # warm: readers interleaved so machine load hits all alike
            for name, read in readers.items():
                results[name].append(one_pass(read, args.clips, args.batch, r + 1))
        print(f"{'reader':<20}{'cold-ish clips/s':>18}{'warm clips/s':>15}{'KB/clip':>10}")
        for name, r in results.items():
            label = name if name.startswith("memmap") else f"cache {name}"
            cold = f"{r[0]:>18.0f}" if "frames" not in name else f"{'-':>18}"
            size = f"{sizes[name] / args.clips / 1e3:>10.1f}" if name in sizes else f"{'-':>10}"
            print(f"{label:<20}{cold}{max(r[1:]):>15.0f}{size}")
        ours, ref = results[f"{codecs[0]} frames"], results["memmap frames"]
        paired = np.array(ours[1:]) / np.array(ref[1:])       # the same round: the same machine load
        print(f"frames alone ({codecs[0]}): warm ratio FrameReader/memmap {max(ours[1:]) / max(ref[1:]):.2f} "
              f"(best pass each); per-round ratio median {np.median(paired):.2f} "
              f"({paired.min():.2f}-{paired.max():.2f}, {len(paired)} rounds)")
        for c in codecs:
            print(f"{c}: warm ratio {max(results[c][1:]) / max(results['memmap'][1:]):.2f}, cold-ish ratio "
                  f"{results[c][0] / results['memmap'][0]:.2f}, size x{sizes['memmap'] / sizes[c]:.2f} smaller")
        ratio = max(results[codecs[0]][1:]) / max(results["memmap"][1:])
        print(f"read ratio cache/memmap ({codecs[0]} frames, warm): {ratio:.2f}")


if __name__ == "__main__":
    main()
