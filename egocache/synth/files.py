"""Files of the synthetic dataset: atomic writes, EPIC-100 timestamps and CSVs, IMU tables in the
EPIC-100 (accl in g, gyro in rad/s, one clock per sensor) and Ego4D (m/s^2, rad/s, one row per sample)
layouts, and links that let both layouts share one video file."""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from egocache.core.files import write_atomic
from egocache.synth.motion import GRAVITY, HeadMotion, imu_times, measure

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


def write_imu(motion: HeadMotion, duration_s: float, rngs: list[np.random.Generator], accl_csv: str | None,
              gyro_csv: str | None, ego4d_csv: str | None) -> None:
    """IMU files of one video: EPIC accl and gyro (each its own jittered clock) if their paths are given,
    Ego4D if its path is given. rngs: one generator each for EPIC accl, EPIC gyro and Ego4D."""
    for sensor, path, rng, scale, header in (("accl", accl_csv, rngs[0], 1.0 / GRAVITY, EPIC_ACCL_COLUMNS),
                                             ("gyro", gyro_csv, rngs[1], 1.0, EPIC_GYRO_COLUMNS)):
        if path is not None:
            ts = imu_times(duration_s, IMU_RATE_HZ, rng)
            _write_table(path, header, [ts * 1000.0, measure(motion, sensor, ts, rng) * scale],
                         ["%.3f"] + ["%.6f"] * 3)
    if ego4d_csv is not None:
        rng = rngs[2]
        ts = imu_times(duration_s, IMU_RATE_HZ, rng)
        gyro, accl = measure(motion, "gyro", ts, rng), measure(motion, "accl", ts, rng)
        ms = ts * 1000.0
        _write_table(ego4d_csv, EGO4D_IMU_COLUMNS, [np.zeros_like(ms), ms, ms, gyro, accl],
                     ["%d", "%.3f", "%.3f"] + ["%.6f"] * 6)


def link(src: str, dst: str) -> None:
    """Make `dst` the same file as `src`: a hard link, or a relative symlink where hard links are refused."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)
