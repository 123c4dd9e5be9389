"""Small synthetic caches for student tests, written with CacheWriter directly (no teacher, no video).

Each clip's verb label leaves a learnable trace everywhere a student looks: the frames carry a
class-coloured square, the IMU a class-specific sinusoid, and the teacher feature/logits a noisy
class prototype. Training clips are one per segment; validation segments have `eval_clips` clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from egocache.cache.writer import CacheWriter
from egocache.pipeline.sampling import student_positions

VERBS = ["take", "put", "open", "close", "wash", "cut"]
NOUNS = ["cup", "plate", "drawer"]
MOTION_VERBS = ["take", "put", "open", "close"]


def make_test_cache(tmp_path: Path, *, name: str = "cache.zarr", n_train: int = 96, n_val_segments: int = 12,
                    eval_clips: int = 2, frame_size: int = 32, feature_dim: int = 16,
                    frame_counts: tuple[int, ...] = (1, 2), first_last: bool = True, imu: bool = True,
                    features: bool = True, shard_size: int = 64, seed: int = 0,
                    attrs_extra: dict[str, Any] | None = None) -> str:
    """Write a cache of `n_train` train clips and `n_val_segments` x `eval_clips` validation clips."""
    rng = np.random.default_rng(seed)
    path = str(Path(tmp_path) / name)
    n_val = n_val_segments * eval_clips
    n = n_train + n_val
    verb = np.concatenate([rng.integers(0, len(VERBS), n_train),
                           np.repeat(np.arange(n_val_segments) % len(VERBS), eval_clips)])
    noun = verb % len(NOUNS)
    segment = [f"tr{i}" for i in range(n_train)] + [f"va{i // eval_clips}" for i in range(n_val)]
    clips = {
        "clip_id": [f"{s}/{i}" for i, s in enumerate(segment)], "segment_id": segment,
        "video_id": [f"vid{i % 5}" for i in range(n)],
        "split": ["train"] * n_train + ["validation"] * n_val,
        "start_s": np.arange(n, dtype=np.float64) * 3.0, "end_s": np.arange(n, dtype=np.float64) * 3.0 + 2.13,
        "label_verb": verb, "label_noun": noun,
    }
    positions, for_n, fl = student_positions(frame_counts, first_last)
    attrs = {
        "teacher": {"name": "synthetic-test", "config": {}, "checkpoint_sha256": None},
        "sampling": {"t": 16, "stride": 4, "clip_seconds": 2.1333},
        "imu": {"rate_hz": 198.0, "window": 422, "channels": ["ax", "ay", "az", "gx", "gy", "gz"], "centred": True},
        "source": {"dataset": "synthetic", "manifest_sha256": "0" * 64, "motion_pair_verbs": MOTION_VERBS},
        **(attrs_extra or {}),
    }
    writer = CacheWriter.create(path, clips=clips, feature_dim=feature_dim,
                                heads={"verb": VERBS, "noun": NOUNS}, frame_size=frame_size,
                                frame_positions=positions, frames_for_n=for_n, first_last=fl,
                                attrs=attrs, shard_size=shard_size)
    protos = rng.normal(size=(len(VERBS), feature_dim)).astype(np.float32)
    colours = rng.integers(0, 256, size=(len(VERBS), 3))
    t = np.arange(422) / 198.0
    for i in range(writer.num_shards):
        rows = writer.shard_slice(i)
        v = verb[rows]
        m = len(v)
        feats = np.tanh(protos[v] + 0.3 * rng.normal(size=(m, feature_dim))).astype(np.float32)
        logits = {"verb": (4.0 * np.eye(len(VERBS))[v] + rng.normal(size=(m, len(VERBS)))).astype(np.float32),
                  "noun": (4.0 * np.eye(len(NOUNS))[noun[rows]] + rng.normal(size=(m, len(NOUNS)))).astype(np.float32)}
        frames = rng.integers(0, 60, size=(m, len(positions), frame_size, frame_size, 3)).astype(np.uint8)
        half = frame_size // 4
        for k in range(m):
            frames[k, :, half:3 * half, half:3 * half] = colours[v[k]]
        wave = np.sin(2 * np.pi * (1.0 + v[:, None, None]) * t[None, :, None] + np.arange(6)[None, None, :])
        imu_arr = (wave + 0.2 * rng.normal(size=(m, 422, 6))).astype(np.float32) if imu else \
            np.zeros((m, 422, 6), np.float32)
        imu_arr -= imu_arr.mean(axis=1, keepdims=True)
        writer.write_shard(i, feats if features else np.zeros_like(feats),
                           logits if features else {h: np.zeros_like(x) for h, x in logits.items()},
                           imu_arr, frames, np.ones(m, np.int8), [""] * m)
    return path
