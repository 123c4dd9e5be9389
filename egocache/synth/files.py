"""Files of the synthetic dataset: EPIC-100 timestamps and CSVs, IMU tables in the EPIC-100 layout (as
gopro-utils' gpmd2csv writes them: m/s^2 and rad/s, each sensor on its own clock, Milliseconds a GPMF
payload counter) and the Ego4D layout (m/s^2, rad/s, one row per sample), RGB-frame folders, and links
that let both layouts share one video file."""

from __future__ import annotations

import csv
import os
from typing import Any, Iterator

import numpy as np

from egocache.core.files import write_atomic
from egocache.synth.motion import HeadMotion, imu_times, measure

IMU_RATE_HZ = 200.0
EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                "noun_class", "all_nouns", "all_noun_classes")
CLASS_COLUMNS = ("id", "key", "instances", "category")
EPIC_ACCL_COLUMNS = ("Milliseconds", "AcclX", "AcclY", "AcclZ")
EPIC_GYRO_COLUMNS = ("Milliseconds", "GyroX", "GyroY", "GyroZ")
EGO4D_IMU_COLUMNS = ("component_idx", "component_timestamp_ms", "canonical_timestamp_ms", "gyro_x", "gyro_y",
                     "gyro_z", "accl_x", "accl_y", "accl_z")


def epic_timestamp(seconds: float, decimals: int = 2) -> str:
    """EPIC-100 style HH:MM:SS.ff timestamp (HH:MM:SS.fff with decimals=3, as narration times are)."""
    scale = 10 ** decimals
    whole, frac = divmod(int(round(seconds * scale)), scale)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}.{frac:0{decimals}d}"



def write_csv(path: str, header: tuple[str, ...], rows: list[list[Any]]) -> None:
    """Write a CSV file with a header line."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(header)
            out.writerows(rows)

    write_atomic(path, write)


def _write_table(path: str, header: tuple[str, ...], columns: list[np.ndarray], fmt: list[str]) -> None:
    """Write numeric columns as CSV with fixed number formats (same numbers, same bytes)."""
    write_atomic(path, lambda tmp: np.savetxt(tmp, np.column_stack(columns), fmt=fmt, delimiter=",",
                                              header=",".join(header), comments=""))


def payload_counter_ms(ts: np.ndarray) -> np.ndarray:
    """gpmd2csv's Milliseconds for samples taken at `ts` (s): payload p = floor(t) holds n samples, the
    i-th written as p*1000 + i*1000/n (each payload taken as 1 s, its samples spread evenly)."""
    payload = np.floor(ts).astype(np.int64)
    starts = np.searchsorted(payload, payload, side="left")
    counts = np.bincount(payload - payload[0])[payload - payload[0]]
    return payload * 1000.0 + (np.arange(ts.size) - starts) * 1000.0 / counts


def write_imu(motion: HeadMotion, duration_s: float, rngs: list[np.random.Generator], accl_csv: str | None,
              gyro_csv: str | None, ego4d_csv: str | None) -> None:
    """IMU files of one video: EPIC accl and gyro (each its own jittered clock, gpmd2csv timestamps) if
    their paths are given, Ego4D if its path is given. rngs: one generator each for EPIC accl, EPIC gyro
    and Ego4D."""
    for sensor, path, rng, header in (("accl", accl_csv, rngs[0], EPIC_ACCL_COLUMNS),
                                      ("gyro", gyro_csv, rngs[1], EPIC_GYRO_COLUMNS)):
        if path is not None:
            ts = imu_times(duration_s, IMU_RATE_HZ, rng)
            _write_table(path, header, [payload_counter_ms(ts), measure(motion, sensor, ts, rng)],
                         ["%.3f"] + ["%.6f"] * 3)
    if ego4d_csv is not None:
        rng = rngs[2]
        ts = imu_times(duration_s, IMU_RATE_HZ, rng)
        gyro, accl = measure(motion, "gyro", ts, rng), measure(motion, "accl", ts, rng)
        ms = ts * 1000.0
        _write_table(ego4d_csv, EGO4D_IMU_COLUMNS, [np.zeros_like(ms), ms, ms, gyro, accl],
                     ["%d", "%.3f", "%.3f"] + ["%.6f"] * 6)


def write_rgb_frames(folder: str, frames: Iterator[np.ndarray], quality: int = 95) -> int:
    """Write frames as EPIC's RGB-frame release does (frame_0000000001.jpg, ...); returns the count.

    The folder is filled under a temporary name and renamed when complete, so it is whole or absent.
    """
    import shutil

    import simplejpeg

    tmp = f"{folder}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    n = 0
    for n, img in enumerate(frames, start=1):
        with open(os.path.join(tmp, f"frame_{n:010d}.jpg"), "wb") as fh:
            fh.write(simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality, colorspace="RGB"))
    os.replace(tmp, folder)
    return n


def link(src: str, dst: str) -> None:
    """Make `dst` the same file as `src`: a hard link, or a relative symlink where hard links are refused."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
