"""IMU streams: read EPIC-KITCHENS-100, Ego4D and generic CSVs, repair them, cut mean-centred windows.

A stream is six channels in CHANNELS order (accelerometer xyz, then gyroscope xyz) on one sorted,
unique time base in seconds from the video start. Units stay native (UNITS: EPIC's gpmd2csv writes
the GPMF values, accelerometer m/s^2 and gyroscope rad/s; Ego4D does not document its units); every
window is mean-centred per channel (EgoDistill, App. C), so only the scale matters.

EPIC-KITCHENS-100 time base, an assumption stated here once: gopro-utils' gpmd2csv writes
`Milliseconds` as a payload counter, each GPMF payload taken as 1,000 ms with payload 1 at 0 ms and
its n samples spread evenly inside it (payload*1000 + i*1000/n). egocache reads those numbers as
milliseconds from the video start. If a camera's payloads are not exactly 1 s long the error grows
along the video; nothing in the files can tell. gpmd2csv drops the last 1-2 payloads, so EPIC IMU
ends 2-3 s before its video (preflight reports videos whose IMU ends earlier than that).

Ego4D timestamps that run backwards in file order (by more than BACKWARDS_MIN_S: two swapped rows are
only unsorted) are kept in the stream (sorted), but the time span they cover twice is recorded (`ImuStream.backwards`): Ego4D issue #158 reports the IMU 0.5-1 s
off the video there, so a window overlapping such a span is refused unless `keep_backwards`.

Where a channel has no reading at a time of the common base (EPIC's accelerometer and gyroscope are
sampled at different instants; Ego4D rows can lack accelerometer values), `values` holds NaN there
and `imu_window` interpolates that channel from its own readings only.

Repairs made when reading (counted in `ImuStream.repairs`): NULL/empty/unparsable timestamps are
dropped; timestamps below 0 s or above MAX_TIMESTAMP_S are dropped; a timestamp more than
ABSURD_JUMP_S away from the median of its ABSURD_NEIGHBOURS neighbours on each side (file order)
is dropped as an absurd jump; rows are sorted stably; Ego4D/generic rows sharing a timestamp are
averaged (gpmd2csv never writes equal timestamps). Limits used
when cutting a window: gaps up to MAX_GAP_S are interpolated across, and the window may reach
EDGE_TOLERANCE_S past either end of a channel's readings (the edge value is held). Anything
beyond these limits raises IMUError naming the file, what the stream covers and what was needed.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from egocache.cache.schema import IMU_CHANNELS
from egocache.core.files import read_text
from egocache.errors import IMUError

IMU_RATE_HZ = 198.0
IMU_WINDOW = 422
CHANNELS = IMU_CHANNELS          # accelerometer xyz then gyroscope xyz: the cache format's order
IMU_FORMATS = ("epic100", "ego4d", "csv")

# Repair limits: the one place they are set (imu_limits() records them in cache attributes).
MAX_GAP_S = 0.1                  # longest gap between readings interpolated across inside a window
EDGE_TOLERANCE_S = 0.05          # how far a window may reach past a channel's first/last reading
MAX_TIMESTAMP_S = 86400.0        # timestamps beyond one day are absurd
ABSURD_JUMP_S = 1.0              # distance from the local (file-order) median that marks a jump
ABSURD_NEIGHBOURS = 5            # rows on each side forming that local median
BACKWARDS_MIN_S = 0.05           # a step back in file order longer than this marks a span read twice
CACHE_STREAMS = 4                # parsed streams kept per process (clips are sorted by video)

_GAP_EPS = 1e-9
_MISSING = r"[ \t]*(?:null|none|nan|na)?[ \t]*"
_MISSING_FIELD = re.compile(rf"(?im)(?<=,){_MISSING}(?=,|$)|^{_MISSING}(?=,)")
_EPIC_ACCL = ("acclx", "accly", "acclz")
_EPIC_GYRO = ("gyrox", "gyroy", "gyroz")


def imu_limits() -> dict:
    """The IMU resampling settings and repair limits, for a cache's attributes."""
    return {"rate_hz": IMU_RATE_HZ, "window": IMU_WINDOW, "channels": list(CHANNELS),
            "centred": True, "max_gap_s": MAX_GAP_S, "edge_tolerance_s": EDGE_TOLERANCE_S,
            "max_timestamp_s": MAX_TIMESTAMP_S, "absurd_jump_s": ABSURD_JUMP_S,
            "absurd_neighbours": ABSURD_NEIGHBOURS, "backwards_min_s": BACKWARDS_MIN_S}


UNITS = {"epic100": {"accl": "m/s^2", "gyro": "rad/s"},   # GPMF ACCL/GYRO as gpmd2csv writes them
         "ego4d": {"accl": "unspecified (Ego4D does not document them)",
                   "gyro": "unspecified (Ego4D does not document them)"},
         "csv": {"accl": "unspecified", "gyro": "unspecified"}}


def channel_units(fmt: str | None, declared: dict[str, str] | None = None) -> dict[str, str]:
    """Unit of every channel for streams of format `fmt`; `declared` ({"accl": .., "gyro": ..}, from the
    dataset metadata file) takes precedence."""
    units = {**UNITS.get(fmt or "csv", UNITS["csv"]), **(declared or {})}
    return {c: units[c.split("_")[0]] for c in CHANNELS}


@dataclass(eq=False)
class ImuStream:
    """Six IMU channels on a sorted unique time base (s from video start); NaN = no reading there."""

    t_s: np.ndarray
    values: np.ndarray
    source: str = ""
    repairs: dict[str, int] = field(default_factory=dict)
    backwards: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (k, 2) spans read twice
    finite: np.ndarray = field(init=False, repr=False)
    extent: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Check shapes and order, record each channel's first/last reading, freeze the arrays."""
        name = self.source or "IMU stream"
        t = np.array(self.t_s, dtype=np.float64)
        v = np.array(self.values, dtype=np.float64)
        if t.ndim != 1 or v.shape != (t.size, len(CHANNELS)):
            raise IMUError(f"{name}: expected t_s (n,) and values (n, 6), got {t.shape} and {v.shape}")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise IMUError(f"{name}: timestamps must be finite, sorted and unique")
        fin = np.isfinite(v)
        extent = np.full((len(CHANNELS), 2), np.nan)
        for c in range(len(CHANNELS)):
            idx = np.flatnonzero(fin[:, c])
            if idx.size:
                extent[c] = t[idx[0]], t[idx[-1]]
        for arr in (t, v, fin, extent):
            arr.flags.writeable = False
        self.t_s, self.values, self.finite, self.extent = t, v, fin, extent


def read_imu(fmt: str, paths: tuple[str, ...]) -> ImuStream:
    """Read and repair one video's IMU files; parsed streams are cached by path and mtime."""
    if fmt not in IMU_FORMATS:
        raise IMUError(f"{', '.join(paths)}: unknown IMU format {fmt!r} "
                       f"(known: {', '.join(IMU_FORMATS)})")
    want = 2 if fmt == "epic100" else 1
    if len(paths) != want:
        raise IMUError(f"{', '.join(paths) or '(no file)'}: IMU format {fmt!r} needs {want} file(s), "
                       f"got {len(paths)}")
    stamps = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            raise IMUError(f"{p}: cannot read IMU file ({e.strerror or e})") from e
        stamps.append((st.st_mtime_ns, st.st_size))
    result = _read_cached(fmt, tuple(os.path.abspath(p) for p in paths), tuple(stamps))
    if isinstance(result, IMUError):
        raise IMUError(str(result))
    return result


def guess_imu_format(path: str) -> str:
    """"ego4d" if the CSV header has canonical_timestamp_ms, else "csv" (also when unreadable)."""
    try:
        with open(path, "rb") as f:
            first = f.readline().decode("utf-8-sig", "replace")
    except OSError:
        return "csv"
    header = [h.strip().lower() for h in next(csv.reader([first]), [])]
    return "ego4d" if "canonical_timestamp_ms" in header else "csv"


def imu_window(stream: ImuStream, centre_s: float, *, rate: float = IMU_RATE_HZ,
               length: int = IMU_WINDOW, keep_backwards: bool = False) -> np.ndarray:
    """(length, 6) float32 window resampled at `rate` around `centre_s`, each channel minus its mean.

    Sample k sits at centre_s + (k - (length - 1) / 2) / rate, by linear interpolation of each
    channel's own readings; raises IMUError when a gap or the stream's ends exceed the limits, when
    a value is not finite, or (unless `keep_backwards`) when the window overlaps a span where the
    file's timestamps ran backwards.
    """
    if rate <= 0 or length < 2:
        raise ValueError(f"rate must be > 0 and length >= 2, got {rate} and {length}")
    grid = centre_s + (np.arange(length) - (length - 1) / 2.0) / rate
    lo, hi = float(grid[0]), float(grid[-1])
    if not keep_backwards:
        hit = stream.backwards[(stream.backwards[:, 0] < hi) & (stream.backwards[:, 1] > lo)]
        if len(hit):
            raise IMUError(f"{stream.source}: timestamps run backwards over {hit[0, 0]:.3f}-{hit[0, 1]:.3f} s, "
                           f"inside the window at {centre_s:.3f} s (the IMU is often 0.5-1 s off the video "
                           "there, Ego4D issue #158); --imu-keep-backwards keeps such windows")
    i0 = int(np.searchsorted(stream.t_s, lo - MAX_GAP_S, side="left"))
    i1 = int(np.searchsorted(stream.t_s, hi + MAX_GAP_S, side="right"))
    need = f"the window at {centre_s:.3f} s needs {lo:.3f}-{hi:.3f} s"
    out = np.empty((length, len(CHANNELS)), dtype=np.float64)
    for c, name in enumerate(CHANNELS):
        first, last = stream.extent[c]
        if not np.isfinite(first):
            raise IMUError(f"{stream.source}: no {name} readings in the stream; {need}")
        if first > lo + EDGE_TOLERANCE_S or last < hi - EDGE_TOLERANCE_S:
            raise IMUError(f"{stream.source}: {name} covers {first:.3f}-{last:.3f} s but {need} "
                           f"(edge tolerance {EDGE_TOLERANCE_S} s)")
        keep = stream.finite[i0:i1, c]
        tc = stream.t_s[i0:i1][keep]
        gap = _widest_gap(stream, c, tc, max(lo, first), min(hi, last), i0, i1)
        if gap is not None:
            a, b = gap
            raise IMUError(f"{stream.source}: {name} has a {b - a:.3f} s gap ({a:.3f}-{b:.3f} s) "
                           f"and {need}; at most {MAX_GAP_S} s is interpolated")
        out[:, c] = np.interp(grid, tc, stream.values[i0:i1, c][keep])
    if not np.isfinite(out).all():
        raise IMUError(f"{stream.source}: the window at {centre_s:.3f} s holds non-finite values (inf or "
                       "overflow in the file)")
    out -= out.mean(axis=0)
    return out.astype(np.float32)


def _widest_gap(stream: ImuStream, c: int, tc: np.ndarray, start: float, stop: float,
                i0: int, i1: int) -> tuple[float, float] | None:
    """The first gap longer than MAX_GAP_S over [start, stop] among channel c's readings, if any."""
    fin = stream.finite[:, c]
    if tc.size == 0 or tc[0] > start:
        prev = stream.t_s[np.flatnonzero(fin[:i0])[-1]]
        nxt = tc[0] if tc.size else stream.t_s[i1 + np.flatnonzero(fin[i1:])[0]]
        return float(prev), float(nxt)
    if tc[-1] < stop:
        return float(tc[-1]), float(stream.t_s[i1 + np.flatnonzero(fin[i1:])[0]])
    d = np.diff(tc)
    if d.size and d.max() > MAX_GAP_S + _GAP_EPS:
        j = int(np.argmax(d > MAX_GAP_S + _GAP_EPS))
        return float(tc[j]), float(tc[j + 1])
    return None


@lru_cache(maxsize=CACHE_STREAMS)
def _read_cached(fmt: str, paths: tuple[str, ...], stamps: tuple) -> ImuStream | IMUError:
    """The stream, or the reason it cannot be read (cached too: many clips share one file)."""
    try:
        return _read_stream(fmt, paths)
    except IMUError as e:
        return e


def _read_stream(fmt: str, paths: tuple[str, ...]) -> ImuStream:
    """Parse and repair one video's IMU files."""
    repairs: dict[str, int] = {}
    if fmt == "epic100":
        ta, va = _read_epic_part(paths[0], _EPIC_ACCL, repairs)
        tg, vg = _read_epic_part(paths[1], _EPIC_GYRO, repairs)
        t = np.union1d(ta, tg)
        values = np.full((t.size, len(CHANNELS)), np.nan)
        values[np.searchsorted(t, ta), :3] = va
        values[np.searchsorted(t, tg), 3:] = vg
        return ImuStream(t, values, " + ".join(paths), repairs)
    path = paths[0]
    time_names = ("canonical_timestamp_ms",) if fmt == "ego4d" else ("t_s", "timestamp_ms")
    cols, used = _read_columns(path, [time_names] + [(c,) for c in CHANNELS])
    t_raw = cols[:, 0] / (1.0 if used[0] == "t_s" else 1000.0)
    backwards: list[tuple[float, float]] = []
    t, v = _clean_times(path, t_raw, cols[:, 1:], repairs, backwards)
    t, v = _average_duplicates(t, v, repairs)
    return ImuStream(t, v, path, repairs, np.array(backwards, dtype=np.float64).reshape(-1, 2))


def _read_epic_part(path: str, names: tuple[str, ...], repairs: dict[str, int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One EPIC CSV (gpmd2csv: Milliseconds + three axes), cleaned, duplicates averaged."""
    cols, _ = _read_columns(path, [("milliseconds",)] + [(n,) for n in names])
    t, v = _clean_times(path, cols[:, 0] / 1000.0, cols[:, 1:], repairs, [])
    return _average_duplicates(t, v, repairs)


def _read_columns(path: str, wanted: list[tuple[str, ...]]) -> tuple[np.ndarray, list[str]]:
    """(n, len(wanted)) float64 of the named columns (first alias found, returned too); NaN = missing."""
    first, _, body = read_text(path, IMUError).partition("\n")
    header = [h.strip().lower() for h in next(csv.reader([first]), [])]
    used = [next((a for a in aliases if a in header), "") for aliases in wanted]
    missing = [" or ".join(aliases) for aliases, name in zip(wanted, used) if not name]
    if missing:
        raise IMUError(f"{path}: missing column(s) {', '.join(missing)} in header {','.join(header)}")
    if not body.strip():
        raise IMUError(f"{path}: no IMU rows")
    cols = [header.index(name) for name in used]
    for fill_missing in (False, True):          # clean files skip the substitution
        text = _MISSING_FIELD.sub("nan", body) if fill_missing else body
        try:
            return np.loadtxt(io.StringIO(text), delimiter=",", usecols=cols, ndmin=2,
                              dtype=np.float64, comments=None), used
        except ValueError:
            continue
    return _parse_slowly(body, cols), used


def _parse_slowly(body: str, cols: list[int]) -> np.ndarray:
    """Cell-by-cell parse for files the fast parser rejects (ragged rows, stray text)."""
    rows = []
    for rec in csv.reader(io.StringIO(body)):
        if not rec:
            continue
        vals = []
        for c in cols:
            try:
                vals.append(float(rec[c]))
            except (IndexError, ValueError):
                vals.append(np.nan)
        rows.append(vals)
    return np.array(rows, dtype=np.float64).reshape(-1, len(cols))


def _clean_times(path: str, t: np.ndarray, v: np.ndarray, repairs: dict[str, int],
                 backwards: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Drop NULL, out-of-range and absurd-jump timestamps, then sort stably; counts the repairs and
    appends to `backwards` the time spans that the file order covers twice (merged)."""
    _count(repairs, "missing_values", int(np.count_nonzero(~np.isfinite(v))))
    ok = np.isfinite(t)
    _count(repairs, "null_timestamps", int(np.count_nonzero(~ok)))
    t, v = t[ok], v[ok]
    ok = (t >= 0) & (t <= MAX_TIMESTAMP_S)
    _count(repairs, "out_of_range_timestamps", int(np.count_nonzero(~ok)))
    t, v = t[ok], v[ok]
    ok = ~_absurd_jumps(t)
    _count(repairs, "absurd_timestamps", int(np.count_nonzero(~ok)))
    t, v = t[ok], v[ok]
    if t.size == 0:
        raise IMUError(f"{path}: no usable timestamps")
    if t.size > 1 and np.ptp(t) == 0:
        raise IMUError(f"{path}: every timestamp is {t[0]:.3f} s; the file has no time base to resample on")
    steps = np.flatnonzero(np.diff(t) < 0)
    _count(repairs, "unsorted_rows", int(steps.size))
    for a, b in sorted((float(t[i + 1]), float(t[i])) for i in steps if t[i] - t[i + 1] > BACKWARDS_MIN_S):
        if backwards and a <= backwards[-1][1] + BACKWARDS_MIN_S:   # adjacent spans: one region
            backwards[-1] = (backwards[-1][0], max(b, backwards[-1][1]))
        else:
            backwards.append((a, b))
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _absurd_jumps(t: np.ndarray) -> np.ndarray:
    """Rows whose timestamp is far from the median of their neighbours in file order."""
    k = ABSURD_NEIGHBOURS
    if t.size <= 2 * k:
        return np.abs(t - np.median(t)) > ABSURD_JUMP_S if t.size else np.zeros(0, bool)
    local = np.median(sliding_window_view(np.pad(t, k, mode="reflect"), 2 * k + 1), axis=1)
    return np.abs(t - local) > ABSURD_JUMP_S


def _average_duplicates(t: np.ndarray, v: np.ndarray, repairs: dict[str, int]
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Merge rows with equal (sorted) timestamps into one, averaging each channel's readings."""
    uniq, first = np.unique(t, return_index=True)
    if uniq.size == t.size:
        return t, v
    _count(repairs, "duplicate_rows_averaged", int(t.size - uniq.size))
    fin = np.isfinite(v)
    sums = np.add.reduceat(np.where(fin, v, 0.0), first, axis=0)
    n = np.add.reduceat(fin.astype(np.int64), first, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return uniq, np.where(n > 0, sums / n, np.nan)


def _count(repairs: dict[str, int], key: str, n: int) -> None:
    """Add n to a repair counter, keeping zero counts out of the record."""
    if n:
        repairs[key] = repairs.get(key, 0) + n


def stream_span(fmt: str, paths: tuple[str, ...]) -> tuple[float, float]:
    """(first, last) timestamp in seconds of an IMU source from its first and last rows only.

    Cheap enough to run over every video before extraction (preflight); EPIC's two files give the
    span both cover. IMUError if a file is missing or its time column cannot be read.
    """
    spans = []
    for path in paths:
        names = (("milliseconds",) if fmt == "epic100" else ("canonical_timestamp_ms",) if fmt == "ego4d"
                 else ("t_s", "timestamp_ms"))
        try:
            with open(path, "rb") as fh:
                head = fh.read(65536)
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - 65536))
                tail = fh.read()
        except OSError as e:
            raise IMUError(f"{path}: cannot read IMU file ({e.strerror or e})") from e
        lines = head.decode("utf-8-sig", "replace").splitlines()
        header = [h.strip().lower() for h in (lines[0] if lines else "").split(",")]
        col = next((header.index(n) for n in names if n in header), None)
        if col is None:
            raise IMUError(f"{path}: no {' or '.join(names)} column in header {','.join(header)}")
        scale = 1.0 if header[col] == "t_s" else 1000.0
        first = _first_time(lines[1:], col)
        last = _first_time(reversed(tail.decode("utf-8", "replace").splitlines()[1:]), col)
        if first is None or last is None:
            raise IMUError(f"{path}: no readable timestamp in its first or last rows")
        spans.append((first / scale, last / scale))
    return max(a for a, _ in spans), min(b for _, b in spans)


def _first_time(lines, col: int) -> float | None:
    """The first finite value in column `col` of CSV `lines` (None if none)."""
    for line in lines:
        cells = line.split(",")
        try:
            value = float(cells[col])
        except (IndexError, ValueError):
            continue
        if np.isfinite(value):
            return value
    return None
