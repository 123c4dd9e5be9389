"""Small caches written with CacheWriter directly (no teacher, no video), shared by the tests.

`create`/`write`/`make_cache`: a 10-clip cache with values derived from the row (cache format tests).
`make_test_cache`: a learnable cache for student tests. Each clip's verb label leaves a learnable trace everywhere a student looks: the frames carry a
class-coloured square, the IMU a class-specific sinusoid, and the teacher feature/logits a noisy
class prototype (and, with `audio`, the spectrogram a class-specific band). Training clips are one per
segment; validation segments have `eval_clips` clips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from egocache.cache import STATUS_FAILED, STATUS_OK
from egocache.cache.writer import CacheWriter
from egocache.pipeline.sampling import student_positions

HEADS = {"verb": ["take", "put", "open"], "noun": ["cup", "pan", "lid", "knife", "tap"]}
SIZE = 16
FEAT = 8


def clip_table(n: int = 10) -> dict:
    """Clip table of n clips: 6 train (one per segment), the rest validation (2 clips per segment)."""
    seg = [f"tr{i}" for i in range(6)] + [f"va{(i - 6) // 2}" for i in range(6, n)]
    return {"clip_id": [f"{s}/{i}" for i, s in enumerate(seg)], "segment_id": seg,
            "video_id": [f"v{i % 3}" for i in range(n)], "split": ["train"] * 6 + ["validation"] * (n - 6),
            "start_s": np.arange(n) * 3.0, "end_s": np.arange(n) * 3.0 + 2.13,
            "label_verb": np.arange(n) % 3, "label_noun": (np.arange(n) % 6) - 1}


def cache_attrs(name: str = "tiny", config: dict | None = None, **source: Any) -> dict:
    """Minimal caller attrs with every required section (`source` adds keys to the source section)."""
    return {"teacher": {"name": name, "config": {"dim": FEAT} if config is None else config,
                        "checkpoint_sha256": None},
            "sampling": {"t": 16, "stride": 4, "clip_seconds": 2.1333},
            "imu": {"rate_hz": 198.0, "window": 422, "channels": ["accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z"],
                    "centred": True},
            "source": {"dataset": "synthetic", "manifest_sha256": "ab" * 32, **source}}


def create(path, n: int = 10, shard_size: int = 4, codec: str = "raw", **kw) -> CacheWriter:
    """Create a small cache (positions for N in 1,2,4 plus first/last: 9 stored frames)."""
    pos, sets, fl = student_positions((1, 2, 4), True)
    args = dict(clips=clip_table(n), feature_dim=FEAT, heads=HEADS, frame_size=SIZE, frame_positions=pos,
                frames_for_n=sets["uniform"], first_last=fl, attrs=cache_attrs(), shard_size=shard_size,
                frame_codec=codec)
    args.update(kw)
    return CacheWriter.create(str(path), **args)


def shard_data(writer: CacheWriter, i: int, fail_first: bool = False) -> dict:
    """Deterministic shard content: values derived from the cache row, smooth frames."""
    rows = np.arange(writer.shard_slice(i).start, writer.shard_slice(i).stop)
    m, k = len(rows), len(writer.attrs["sampling"]["positions"])
    ramp = np.linspace(0, 60, SIZE)[None, :, None] + np.linspace(0, 40, SIZE)[:, None, None]
    frames = (rows[:, None, None, None, None] * 10 + np.arange(k)[None, :, None, None, None] * 3
              + ramp[None, None]).astype(np.uint8)
    frames = np.broadcast_to(frames, (m, k, SIZE, SIZE, 3)).copy()
    status = np.full(m, STATUS_OK, np.int8)
    errors = [""] * m
    if fail_first:
        status[0], errors[0] = STATUS_FAILED, "video.mp4: frames 900-963 outside 0-899"
    return {"features": rows[:, None] + np.zeros((m, FEAT), np.float32),
            "logits": {h: rows[:, None] * 0.5 + np.zeros((m, len(c)), np.float32) for h, c in HEADS.items()},
            "imu": rows[:, None, None] + np.zeros((m, 422, 6), np.float32),
            "frames": frames, "status": status, "errors": errors}


def write(writer: CacheWriter, i: int, **kw) -> None:
    """Write shard i with shard_data."""
    d = shard_data(writer, i, **kw)
    writer.write_shard(i, d["features"], d["logits"], d["imu"], d["frames"], d["status"], d["errors"])


def make_cache(path, n: int = 10, shard_size: int = 4, codec: str = "raw", fail_shard: int | None = 1) -> str:
    """A complete cache; the first clip of `fail_shard` failed."""
    w = create(path, n, shard_size, codec)
    for i in range(w.num_shards):
        write(w, i, fail_first=(i == fail_shard))
    return str(path)


VERBS = ["take", "put", "open", "close", "wash", "cut"]
NOUNS = ["cup", "plate", "drawer"]
MOTION_VERBS = ["take", "put", "open", "close"]


def make_test_cache(tmp_path: Path, *, name: str = "cache.zarr", n_train: int = 96, n_val_segments: int = 12,
                    eval_clips: int = 2, frame_size: int = 32, feature_dim: int = 16,
                    frame_counts: tuple[int, ...] = (1, 2), first_last: bool = True, imu: bool = True,
                    features: bool = True, shard_size: int = 64, seed: int = 0,
                    attrs_extra: dict[str, Any] | None = None, selections: tuple[str, ...] = ("uniform",),
                    audio: bool = False, audio_seconds: float = 0.5) -> str:
    """Write a cache of `n_train` train clips and `n_val_segments` x `eval_clips` validation clips.

    Frames are noise with a class-coloured centre square; the top-left pixel of each holds the index of
    its stored position (so tests can tell which stored frames a read returns). With `audio`, the cache has
    an audio section for windows of `audio_seconds` (short: fast students) and log spectrograms that are
    noise plus a loud band at bin 20 + 25 * verb; every 8th clip has none (audio_present 0).
    """
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
    positions, sets, fl = student_positions(frame_counts, first_last, selections)
    for_n = sets["uniform"]
    attrs = {**cache_attrs("synthetic-test", {}, motion_pair_verbs=MOTION_VERBS), **(attrs_extra or {})}
    if audio:
        from egocache.pipeline.audio import audio_attrs

        attrs["audio"] = audio_attrs(audio_seconds, "optional", "float16")
    attrs["sampling"] = {**attrs["sampling"], "frame_sets": {sel: {str(k): v for k, v in by_n.items()}
                                                             for sel, by_n in sets.items()}}
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
        frames[:, :, 0, 0, :] = np.arange(len(positions), dtype=np.uint8)[None, :, None]
        wave = np.sin(2 * np.pi * (1.0 + v[:, None, None]) * t[None, :, None] + np.arange(6)[None, None, :])
        imu_arr = (wave + 0.2 * rng.normal(size=(m, 422, 6))).astype(np.float32) if imu else \
            np.zeros((m, 422, 6), np.float32)
        imu_arr -= imu_arr.mean(axis=1, keepdims=True)
        sound = {}
        if audio:
            bins, width = attrs["audio"]["freq_bins"], attrs["audio"]["frames"]
            spec = rng.normal(-10.0, 1.0, size=(m, bins, width)).astype(np.float32)
            spec[np.arange(m), 20 + 25 * v] += 8.0
            present = (np.arange(rows.start, rows.stop) % 8 != 7).astype(np.int8)
            sound = {"audio": spec * present[:, None, None], "audio_present": present}
        writer.write_shard(i, feats if features else np.zeros_like(feats),
                           logits if features else {h: np.zeros_like(x) for h, x in logits.items()},
                           imu_arr, frames, np.ones(m, np.int8), [""] * m, **sound)
    return path
