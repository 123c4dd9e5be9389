"""IMU reading, repair and windowing on small CSVs written by the tests."""

from __future__ import annotations

import csv

import os

import numpy as np
import pytest

from egocache.errors import IMUError
from files import write_csv
from egocache.pipeline import imu
from egocache.pipeline.imu import (stream_span, CHANNELS, EDGE_TOLERANCE_S, IMU_RATE_HZ, IMU_WINDOW, MAX_GAP_S,
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


def test_windows_over_timestamps_that_ran_backwards_are_refused_unless_kept(tmp_path):
    t = np.arange(0, 8, 0.005)
    order = np.concatenate([np.arange(0, 800), np.arange(640, 800), np.arange(800, t.size)])  # 3.2-4.0 s twice
    rows = ego4d_rows(t[order], linear(t[order]))
    stream = read_imu("ego4d", (write_csv(tmp_path / "back.csv", EGO4D_HEADER, rows),))
    np.testing.assert_allclose(stream.backwards, [[3.2, 3.995]], atol=1e-6)
    with pytest.raises(IMUError, match=r"back.csv: timestamps run backwards over 3.200-3.995 s.*#158"):
        imu_window(stream, 4.5)
    assert imu_window(stream, 4.5, keep_backwards=True).shape == (IMU_WINDOW, 6)
    assert imu_window(stream, 6.5).shape == (IMU_WINDOW, 6)              # a window clear of the span


def test_every_timestamp_equal_is_refused_not_repaired(tmp_path):
    rows = ego4d_rows(np.full(50, 1.0), linear(np.arange(50) / 200.0))
    with pytest.raises(IMUError, match="every timestamp is 1.000 s"):
        read_imu("ego4d", (write_csv(tmp_path / "flat.csv", EGO4D_HEADER, rows),))


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


def gpmd2csv_files(tmp_path, seconds: float, rates: list[float], gyro_rates: list[float] | None = None,
                   dropped_payloads: int = 0) -> tuple[str, str]:
    """EPIC accl/gyro CSVs as gopro-utils' gpmd2csv writes them: payload p of n samples gets
    Milliseconds p*1000 + i*1000/n; each payload's samples are taken uniformly inside it (so the payload
    counter is right); the last `dropped_payloads` payloads are missing, as in real EPIC files."""
    paths = []
    for name, cols, sl, sensor_rates in (("accl", ["AcclX", "AcclY", "AcclZ"], slice(0, 3), rates),
                                         ("gyro", ["GyroX", "GyroY", "GyroZ"], slice(3, 6), gyro_rates or rates)):
        rows = []
        for p in range(int(seconds) - dropped_payloads):
            n = int(sensor_rates[p % len(sensor_rates)])
            stamps = p + np.arange(n) / n
            rows += [[f"{s_ * 1000:.3f}", *(f"{x:.9f}" for x in row)]
                     for s_, row in zip(stamps, linear(stamps)[:, sl])]
        paths.append(write_csv(tmp_path / f"P01_101-{name}.csv", ["Milliseconds", *cols], rows))
    return tuple(paths)


def test_epic_gpmd2csv_payload_counters_read_as_milliseconds(tmp_path):
    paths = gpmd2csv_files(tmp_path, 8, rates=[198, 225, 201], dropped_payloads=2)
    stream = read_imu("epic100", paths)
    assert stream.source == f"{os.path.abspath(paths[0])} + {os.path.abspath(paths[1])}"
    assert stream.repairs == {} and stream.backwards.size == 0   # gpmd2csv never repeats a timestamp
    g = grid(3.0)
    np.testing.assert_allclose(imu_window(stream, 3.0), SLOPES[None, :] * (g - g.mean())[:, None], atol=1e-4)
    assert stream_span("epic100", paths) == pytest.approx((0.0, 5.0 + 200 / 201), abs=1e-6)
    with pytest.raises(IMUError, match=r"P01_101-accl\.csv \+ .*P01_101-gyro\.csv: accl_x covers "
                                       r"0\.000-5\.99\d s but the window at 5\.500 s"):
        imu_window(stream, 5.5)                   # the IMU ends before the video does (dropped payloads)


def test_epic_accelerometer_and_gyroscope_on_their_own_instants_are_merged(tmp_path):
    stream = read_imu("epic100", gpmd2csv_files(tmp_path, 6, rates=[200]))
    assert not np.isnan(stream.values).any()     # same instants: one row each
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = read_imu("epic100", gpmd2csv_files(other_dir, 6, rates=[199, 203], gyro_rates=[201]))
    assert np.isnan(other.values).any()          # accl and gyro samples at different instants
    g = grid(3.0)
    np.testing.assert_allclose(imu_window(other, 3.0), SLOPES[None, :] * (g - g.mean())[:, None], atol=1e-4)


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
