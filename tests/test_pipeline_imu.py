"""IMU reading, repair and windowing on small CSVs written by the tests."""

from __future__ import annotations

import csv

import os

import numpy as np
import pytest

from egocache.errors import IMUError
from files import write_csv
from egocache.pipeline import imu
from egocache.pipeline.imu import (CHANNELS, EDGE_TOLERANCE_S, IMU_RATE_HZ, IMU_WINDOW, MAX_GAP_S,
                                   ImuStream, guess_imu_format, imu_window, read_imu)

SLOPES = np.array([1.0, -2.0, 3.0, 0.5, -0.25, 4.0])   # channel c = SLOPES[c] * t + c


def grid(centre: float) -> np.ndarray:
    """The documented window sample times."""
    return centre + (np.arange(IMU_WINDOW) - 210.5) / IMU_RATE_HZ


def linear(t: np.ndarray) -> np.ndarray:
    """A per-channel linear signal (linear interpolation reproduces it exactly)."""
    return SLOPES[None, :] * t[:, None] + np.arange(6)[None, :]


def ego4d_rows(t_s: np.ndarray, v: np.ndarray) -> list[list]:
    """Rows in Ego4D's column order (gyro before accl) from a time base and CHANNELS-ordered values."""
    return [[0, f"{t * 1000:.4f}", f"{t * 1000:.4f}", *(f"{x:.9f}" for x in row[3:]),
             *(f"{x:.9f}" for x in row[:3])] for t, row in zip(t_s, v)]


EGO4D_HEADER = ["component_idx", "component_timestamp_ms", "canonical_timestamp_ms",
                "gyro_x", "gyro_y", "gyro_z", "accl_x", "accl_y", "accl_z"]


def jittered_times(rng, duration: float, rate: float = 200.0) -> np.ndarray:
    """About `rate` Hz sample times with +-20% jitter, starting at 0."""
    n = int(duration * rate)
    return np.sort(np.arange(n) / rate + rng.uniform(-0.2, 0.2, n) / rate).clip(0)


def test_sine_resampled_exactly_and_mean_centred(tmp_path):
    rng = np.random.default_rng(0)
    t = jittered_times(rng, 6.0)
    freqs = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    v = np.sin(2 * np.pi * freqs[None, :] * t[:, None] + np.arange(6)[None, :]) + 10.0
    path = write_csv(tmp_path / "s.csv", ["t_s", *CHANNELS],
                     [[f"{a:.9f}", *(f"{x:.9f}" for x in row)] for a, row in zip(t, v)])
    win = imu_window(read_imu("csv", (path,)), 3.0)
    assert win.shape == (IMU_WINDOW, 6) and win.dtype == np.float32
    g = grid(3.0)
    ref = np.sin(2 * np.pi * freqs[None, :] * g[:, None] + np.arange(6)[None, :])
    ref -= ref.mean(axis=0)
    np.testing.assert_allclose(win, ref, atol=2e-3)
    np.testing.assert_allclose(win.mean(axis=0), 0.0, atol=1e-5)


def test_channel_order_follows_names_not_file_order(tmp_path):
    t = np.arange(0, 4, 0.005)
    v = linear(t)
    order = [5, 2, 0, 4, 1, 3]
    header = ["timestamp_ms"] + [CHANNELS[c] for c in order]
    rows = [[f"{a * 1000:.3f}", *(f"{row[c]:.9f}" for c in order)] for a, row in zip(t, v)]
    win = imu_window(read_imu("csv", (write_csv(tmp_path / "c.csv", header, rows),)), 2.0)
    g = grid(2.0)
    np.testing.assert_allclose(win, SLOPES[None, :] * (g - g.mean())[:, None], atol=1e-5)


def test_ego4d_messy_timestamps_repaired(tmp_path):
    t = np.arange(0, 5, 0.005)
    v = linear(t)
    rows = ego4d_rows(t, v)
    rows[100], rows[101] = rows[101], rows[100]                     # unsorted
    rows.insert(300, list(rows[300]))                               # exact duplicate row
    dup = list(rows[500])                                           # duplicate stamp, other values
    dup[3:] = [f"{float(x) + 2.0:.9f}" for x in dup[3:]]
    dup_minus = list(rows[500])
    dup_minus[3:] = [f"{float(x) - 2.0:.9f}" for x in dup_minus[3:]]
    rows[500:501] = [dup, dup_minus]                                # average = original
    rows.insert(600, [0, "", "NULL", *rows[600][3:]])               # NULL timestamp
    rows.insert(650, [0, "", "", *rows[650][3:]])                   # empty timestamp
    rows.insert(700, [0, "1", "-5000", *rows[700][3:]])             # negative
    rows.insert(720, [0, "1", "9e12", *rows[720][3:]])              # far outside any video
    rows.insert(740, [0, "1", "2000.0", *rows[740][3:]])            # jump into another window
    path = write_csv(tmp_path / "vid.csv", EGO4D_HEADER, rows)
    stream = read_imu("ego4d", (path,))
    assert stream.repairs["null_timestamps"] == 2
    assert stream.repairs["out_of_range_timestamps"] == 2
    assert stream.repairs["absurd_timestamps"] == 1
    assert stream.repairs["duplicate_rows_averaged"] == 2
    assert stream.repairs["unsorted_rows"] >= 1
    assert np.all(np.diff(stream.t_s) > 0)
    for centre in (1.5, 2.0, 3.5):
        g = grid(centre)
        np.testing.assert_allclose(imu_window(stream, centre), SLOPES[None, :] * (g - g.mean())[:, None],
                                   atol=1e-4)


def test_ego4d_nan_accelerometer_interpolated_per_channel(tmp_path):
    t = np.arange(0, 4, 0.005)
    rows = ego4d_rows(t, linear(t))
    for i in range(380, 395):                  # 75 ms without accelerometer values
        rows[i][6:9] = ["", "nan", "NULL"]
    stream = read_imu("ego4d", (write_csv(tmp_path / "n.csv", EGO4D_HEADER, rows),))
    assert stream.repairs["missing_values"] == 45
    assert np.isnan(stream.values[385, :3]).all() and np.isfinite(stream.values[385, 3:]).all()
    g = grid(2.0)
    np.testing.assert_allclose(imu_window(stream, 2.0), SLOPES[None, :] * (g - g.mean())[:, None],
                               atol=1e-4)


def test_gap_longer_than_limit_fails_with_reason(tmp_path):
    t = np.arange(0, 5, 0.005)
    keep = (t < 1.8) | (t > 1.8 + MAX_GAP_S + 0.1)
    path = write_csv(tmp_path / "gap.csv", EGO4D_HEADER, ego4d_rows(t[keep], linear(t[keep])))
    stream = read_imu("ego4d", (path,))
    with pytest.raises(IMUError, match=r"gap.csv: accl_x has a 0\.210 s gap \(1\.795-2\.005 s\)"):
        imu_window(stream, 2.0)
    imu_window(stream, 3.3)                      # a window clear of the gap is fine


def test_gap_at_window_edge_and_whole_window_missing(tmp_path):
    t = np.arange(0, 8, 0.005)
    keep = (t < 2.0) | (t > 5.0)
    stream = read_imu("ego4d", (write_csv(tmp_path / "g.csv", EGO4D_HEADER,
                                          ego4d_rows(t[keep], linear(t[keep]))),))
    with pytest.raises(IMUError, match="gap"):
        imu_window(stream, 3.5)                  # no readings at all inside the window
    with pytest.raises(IMUError, match="gap"):
        imu_window(stream, 2.5)                  # readings stop inside the window


def test_stream_ending_before_window_fails_and_edge_tolerance_holds(tmp_path):
    t = np.arange(0, 3, 0.005)
    stream = read_imu("ego4d", (write_csv(tmp_path / "end.csv", EGO4D_HEADER,
                                          ego4d_rows(t, linear(t))),))
    last = float(stream.t_s[-1])
    half = 210.5 / IMU_RATE_HZ
    win = imu_window(stream, last - half + EDGE_TOLERANCE_S * 0.6)   # reaches just past the end
    assert np.isfinite(win).all()
    with pytest.raises(IMUError, match=r"end\.csv: accl_x covers 0\.000-2\.995 s but the window at "
                                       r"2\.500 s needs 1\.437-3\.563 s"):
        imu_window(stream, 2.5)
    with pytest.raises(IMUError, match="covers"):
        imu_window(stream, 0.5)                  # starts before the stream


def epic_files(tmp_path, pieces: list[np.ndarray], packet: int, offset_s: float = 0.0):
    """EPIC accl/gyro CSVs whose Milliseconds repeat the first time of each `packet` samples."""
    paths = []
    for name, cols, sl in (("accl", ["AcclX", "AcclY", "AcclZ"], slice(0, 3)),
                           ("gyro", ["GyroX", "GyroY", "GyroZ"], slice(3, 6))):
        shift = offset_s if name == "gyro" else 0.0
        t = np.concatenate(pieces) + shift
        stamp = np.concatenate([p[(np.arange(p.size) // packet) * packet] + shift for p in pieces])
        rows = [[f"{s * 1000:.3f}", *(f"{x:.9f}" for x in row)]
                for s, row in zip(stamp, linear(t)[:, sl])]
        paths.append(write_csv(tmp_path / f"P01_01-{name}.csv", ["Milliseconds", *cols], rows))
    return tuple(paths)


def test_epic_gopro_packets_spread_and_merged(tmp_path):
    paths = epic_files(tmp_path, [np.arange(0, 6, 1 / 200.0)], packet=20, offset_s=0.0025)
    stream = read_imu("epic100", paths)
    assert stream.repairs["packet_rows_spread"] > 0
    assert stream.source == f"{os.path.abspath(paths[0])} + {os.path.abspath(paths[1])}"
    assert np.isnan(stream.values).any()          # accl and gyro sampled at different instants
    g = grid(3.0)
    np.testing.assert_allclose(imu_window(stream, 3.0), SLOPES[None, :] * (g - g.mean())[:, None],
                               atol=1e-3)
    with pytest.raises(IMUError, match=r"P01_01-accl\.csv \+ .*P01_01-gyro\.csv: accl_x covers "
                                       r"0\.000-5\.99\d s but the window at 5\.500 s"):
        imu_window(stream, 5.5)                   # the stream ends before the video does


def test_epic_packet_followed_by_gap_keeps_the_gap(tmp_path):
    t_true = np.arange(0, 8, 1 / 200.0)
    pieces = [t_true[t_true < 3.05], t_true[t_true >= 4.0]]
    stream = read_imu("epic100", epic_files(tmp_path, pieces, packet=20))
    assert stream.t_s[(stream.t_s > 3.06) & (stream.t_s < 3.99)].size == 0
    with pytest.raises(IMUError, match="gap"):
        imu_window(stream, 3.5)


def test_missing_file_column_and_format_errors(tmp_path):
    with pytest.raises(IMUError, match="nope.csv: cannot read IMU file"):
        read_imu("ego4d", (str(tmp_path / "nope.csv"),))
    bad = write_csv(tmp_path / "bad.csv", ["t_s", "accl_x"], [[0, 1]])
    with pytest.raises(IMUError, match="bad.csv: missing column\\(s\\) accl_y, accl_z, gyro_x"):
        read_imu("csv", (bad,))
    with pytest.raises(IMUError, match="unknown IMU format 'xyz'"):
        read_imu("xyz", (bad,))
    with pytest.raises(IMUError, match="needs 2 file"):
        read_imu("epic100", (bad,))
    empty = write_csv(tmp_path / "empty.csv", EGO4D_HEADER, [])
    for _ in range(2):                            # the second answer comes from the cache
        with pytest.raises(IMUError, match="empty.csv: no IMU rows"):
            read_imu("ego4d", (empty,))
    t = np.arange(0, 4, 0.005)
    only_accl = ImuStream(t, np.c_[np.ones((t.size, 3)), np.full((t.size, 3), np.nan)], "x.csv")
    with pytest.raises(IMUError, match="x.csv: no gyro_x readings"):
        imu_window(only_accl, 1.5)
    with pytest.raises(IMUError, match="sorted and unique"):
        ImuStream(np.array([0.0, 0.0]), np.zeros((2, 6)), "y.csv")


def test_ragged_and_quoted_rows_parse_cell_by_cell(tmp_path):
    t = np.arange(0, 4, 0.005)
    rows = [[f"{a:.6f}", *(f"{x:.9f}" for x in row)] for a, row in zip(t, linear(t))]
    rows[50] = rows[50][:4]                       # ragged row: gyro missing
    rows[60][2] = "oops"
    stream = read_imu("csv", (write_csv(tmp_path / "q.csv", ["t_s", *CHANNELS], rows, quoting=csv.QUOTE_ALL),))
    assert stream.repairs["missing_values"] == 4
    g = grid(2.0)
    np.testing.assert_allclose(imu_window(stream, 2.0), SLOPES[None, :] * (g - g.mean())[:, None],
                               atol=1e-4)


def test_streams_cached_per_path_and_mtime(tmp_path):
    t = np.arange(0, 3, 0.005)
    path = write_csv(tmp_path / "c.csv", EGO4D_HEADER, ego4d_rows(t, linear(t)))
    first = read_imu("ego4d", (path,))
    assert read_imu("ego4d", (path,)) is first
    assert not first.values.flags.writeable
    write_csv(path, EGO4D_HEADER, ego4d_rows(t[:300], linear(t[:300])))
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = read_imu("ego4d", (path,))
    assert second is not first and second.t_s.size == 300


def test_guess_format_and_limits(tmp_path):
    ego = write_csv(tmp_path / "e.csv", EGO4D_HEADER, [])
    gen = write_csv(tmp_path / "g.csv", ["t_s", *CHANNELS], [])
    assert guess_imu_format(ego) == "ego4d"
    assert guess_imu_format(gen) == "csv"
    assert guess_imu_format(str(tmp_path / "missing.csv")) == "csv"
    limits = imu.imu_limits()
    assert limits["channels"] == list(CHANNELS) and limits["max_gap_s"] == MAX_GAP_S
