"""Direct reads of a cache's stored bytes: batches of rows without a per-process copy of any array.

Format 2 stores every fixed-size per-clip array uncompressed (schema.direct_rows), so row r of an
array lives at a fixed offset of one file: chunk r // R, byte (r % R) * row_bytes. A process reads
the rows of a batch straight into the batch's arrays (`os.preadv` from cached file descriptors, or
concurrent ranged GETs on object storage) and holds nothing per clip: memory per DataLoader worker
does not grow with the cache. Raw frames, the bulk of a batch, are gathered instead by numpy from
read-only memory maps of their shard files (`view`, used by cache/frames.py): a copy out of mapped
pages, where preadv paid the kernel's page-cache walk per range (0.65x a numpy memmap, now 0.94x median).
Small arrays keep preadv: a random batch of a large cache touches hundreds of small files, and mapping
each (and faulting its pages in) cost 3x in reads at 100k clips (benchmarks/scale.py). A mapped file
that shrinks under the reader would raise SIGBUS on access, killing the process without a message;
egocache's writers replace files by rename (the mapping keeps the old inode), and `view` checks the
file's size again (fstat) before every read, so a file truncated in place by another program is a
one-line CacheError instead (a truncation within that microsecond window is the remaining risk). The clip table's string columns (split, segment_id) are decoded here
from their one chunk (vlen-utf8 + zstd) when they have that layout, ~2.5x faster than through zarr;
anything else is read through zarr.
"""

from __future__ import annotations

import mmap
import os
import resource
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from egocache.cache.schema import (
    ArraySpec, array_specs, chunk_key, direct_rows, expected_array_metadata, load_json_object, read_array,
)
from egocache.cache.store import CacheStore
from egocache.errors import CacheError, CacheFormatError

_MAX_IOV = 512
# (key, byte offset, C-contiguous array to fill, the file's exact size in bytes or 0 if it varies)
Request = tuple[str, int, np.ndarray, int]


def io_threads() -> int:
    """Threads a process reads with: up to 4, never more than its cores (they overlap cold reads)."""
    return max(1, min(4, os.cpu_count() or 1))


class ShardFiles:
    """Reads byte ranges of a cache's files into arrays; one per process (file descriptors, a thread pool).

    Local caches: a bounded LRU of open file descriptors and `os.preadv` of runs of adjacent ranges,
    files read in parallel threads (preadv releases the GIL); frame shard files also mapped read-only
    (`view`). Object storage: one concurrent batch of
    ranged GETs (fsspec `cat_ranges`). Every range is checked against the file's size first.
    """

    def __init__(self, store: CacheStore, *, threads: int | None = None) -> None:
        self.store = store
        self.threads = io_threads() if threads is None else threads
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_open = max(8, min(256, (soft if soft > 0 else 1024) // 4))
        self._open: OrderedDict[str, tuple[int, int]] = OrderedDict()    # key -> (fd, size), local
        self._maps: dict[str, np.ndarray] = {}                           # key -> uint8 view of its mmap
        self._sizes: OrderedDict[str, int] = OrderedDict()               # key -> size, object storage
        self._pool: ThreadPoolExecutor | None = None
        self.pid = os.getpid()

    def size(self, key: str) -> int:
        """Bytes of file `key` (remembered for the most recently used files)."""
        if self.store.local:
            return self._fd(key)[1]
        if key not in self._sizes:
            try:
                self._sizes[key] = self.store.size(key)
            except FileNotFoundError as exc:
                raise CacheError(f"{self.store.where(key)}: missing; run `egocache verify "
                                 f"{self.store.url}`") from exc
            while len(self._sizes) > 4 * self.max_open:
                self._sizes.popitem(last=False)
        self._sizes.move_to_end(key)
        return self._sizes[key]

    def _fd(self, key: str) -> tuple[int, int]:
        """(fd, size) of local file `key`, opened once and kept while recently used (at most `max_open`:
        opening one more closes the least recently used; a view taken from its map stays valid, the
        map living as long as a view of it does)."""
        got = self._open.get(key)
        if got is None:
            self._evict(keep=0, room=1)
            path = self.store.where(key)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise CacheError(f"{path}: unreadable ({exc.strerror or exc}); run `egocache verify "
                                 f"{self.store.url}`") from exc
            got = (fd, os.fstat(fd).st_size)
            self._open[key] = got
        self._open.move_to_end(key)
        return got

    def _evict(self, keep: int, room: int = 0) -> None:
        """Close the least recently used descriptors beyond the limit, leaving `room` for new ones (never
        the `keep` newest)."""
        while self._open and len(self._open) + room > max(self.max_open, keep):
            key, (fd, _) = self._open.popitem(last=False)
            self._maps.pop(key, None)      # the map closes with its last view
            os.close(fd)

    def view(self, key: str) -> np.ndarray:
        """The bytes of local file `key` as a read-only uint8 array over its map (mapped once while the file
        is open), after checking that the file has not shrunk since it was opened (a shrunk mapping raises
        SIGBUS when read)."""
        fd, size = self._fd(key)
        now = os.fstat(fd).st_size
        if now < size:
            raise CacheError(f"{self.store.where(key)}: file shrank from {size} to {now} bytes while being read "
                             f"(truncated in place?); run `egocache verify {self.store.url}`")
        view = self._maps.get(key)
        if view is None:
            view = (np.frombuffer(mmap.mmap(fd, size, access=mmap.ACCESS_READ), np.uint8) if size
                    else np.zeros(0, np.uint8))
            self._maps[key] = view
        return view

    def close(self) -> None:
        """Close every descriptor and the thread pool."""
        self._maps.clear()
        while self._open:
            os.close(self._open.popitem()[1][0])
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:
        if getattr(self, "pid", None) == os.getpid():
            self.close()

    def map(self, fn: Callable[[Any], None], items: list[Any]) -> None:
        """fn over items, in the reading threads when there are several (JPEG decoding drops the GIL)."""
        if len(items) > 1 and self.threads > 1:
            list(self._threads().map(fn, items))
        else:
            for item in items:
                fn(item)

    def _threads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="egocache-read")
        return self._pool

    def read_into(self, requests: list[Request]) -> None:
        """Fill each request's array with the bytes of its file at its offset (files in batches of at
        most `max_open`, so the descriptors stay within the process limit)."""
        groups: dict[str, list[tuple[int, np.ndarray]]] = {}
        expect: dict[str, int] = {}
        for key, offset, out, size in requests:
            groups.setdefault(key, []).append((offset, out))
            expect[key] = size
        keys = list(groups)
        for start in range(0, len(keys), self.max_open):
            part = {k: groups[k] for k in keys[start:start + self.max_open]}
            for key, items in part.items():
                self._check(key, items, expect[key])
            if self.store.local:
                self._read_local(part)
            else:
                self._read_remote(part)

    def check_size(self, key: str, expect: int) -> None:
        """CacheError naming file `key` unless it is exactly `expect` bytes."""
        size = self.size(key)
        if size != expect:
            raise CacheError(f"{self.store.where(key)}: file is {size} bytes, expected {expect} (damaged or "
                             f"truncated); run `egocache verify {self.store.url}`")

    def _check(self, key: str, items: list[tuple[int, np.ndarray]], expect: int) -> None:
        """Refuse a file whose size is not the expected one, or that ends before a read does."""
        size = self.size(key)
        end = max(off + out.nbytes for off, out in items)
        if (expect and size != expect) or end > size:
            want = f"expected {expect}" if expect else f"a read needs {end}"
            raise CacheError(f"{self.store.where(key)}: file is {size} bytes, {want} (damaged or truncated); "
                             f"run `egocache verify {self.store.url}`")

    def _read_local(self, groups: dict[str, list[tuple[int, np.ndarray]]]) -> None:
        """preadv every file's runs; the files split by bytes over the reading threads (one task each)."""
        self._evict(keep=len(groups))
        fds = {key: self._fd(key)[0] for key in groups}
        jobs = [(fds[key], self.store.where(key), items) for key, items in groups.items()]
        if len(jobs) < 2 or self.threads < 2:
            for job in jobs:
                _preadv_runs(*job)
            return
        shares: list[list[tuple[int, str, list[tuple[int, np.ndarray]]]]] = [[] for _ in range(self.threads)]
        load = [0] * self.threads
        for job in sorted(jobs, key=lambda j: -sum(out.nbytes for _, out in j[2])):
            i = load.index(min(load))                # greedy: the least loaded thread takes the next file
            shares[i].append(job)
            load[i] += sum(out.nbytes for _, out in job[2])
        list(self._threads().map(lambda share: [_preadv_runs(*job) for job in share], [s for s in shares if s]))

    def _read_remote(self, groups: dict[str, list[tuple[int, np.ndarray]]]) -> None:
        """One concurrent batch of ranged GETs; each merged run is copied into its arrays."""
        runs = [(key, run) for key, items in groups.items() for run in _runs(items)]
        ranges = [(key, run[0][0], run[-1][0] + run[-1][1].nbytes) for key, run in runs]
        try:
            got = self.store.read_ranges(ranges)
        except FileNotFoundError as exc:
            raise CacheError(f"{self.store.url}: a file of the cache is missing ({exc}); run `egocache "
                             f"verify {self.store.url}`") from exc
        for (key, run), data, (_, start, stop) in zip(runs, got, ranges):
            if len(data) != stop - start:
                raise CacheError(f"{self.store.where(key)}: short read at byte {start}")
            pos = 0
            for _, out in run:
                out.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8, out.nbytes, pos)
                pos += out.nbytes


def _runs(items: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
    """Requests sorted by offset and cut into runs of back-to-back ranges."""
    items = sorted(items, key=lambda x: x[0])
    runs: list[list[tuple[int, np.ndarray]]] = []
    end = -1
    for off, out in items:
        if runs and off == end and len(runs[-1]) < _MAX_IOV:
            runs[-1].append((off, out))
        else:
            runs.append([(off, out)])
        end = off + out.nbytes
    return runs


def _preadv_runs(fd: int, where: str, items: list[tuple[int, np.ndarray]]) -> None:
    """preadv each run of back-to-back ranges of one file straight into its arrays."""
    for run in _runs(items):
        start = run[0][0]
        want = run[-1][0] + run[-1][1].nbytes - start
        got = os.preadv(fd, [memoryview(out).cast("B") for _, out in run], start)
        if got != want:
            raise CacheError(f"{where}: short read at byte {start} ({got} of {want})")


def _check_uncompressed(store: CacheStore, spec: ArraySpec, prefix: str = "") -> None:
    """Refuse (CacheFormatError) an array whose layout is not format 2's uncompressed rows (compared
    with the format's one definition, schema.expected_array_metadata)."""
    key = f"{prefix}{spec.name}/zarr.json"
    meta = load_json_object(store, key)
    want = expected_array_metadata(spec, 2)
    if any(meta.get(k) != want.get(k) for k in ("codecs", "chunk_grid", "chunk_key_encoding", "data_type", "shape")):
        raise CacheFormatError(f"{store.where(key)}: array {spec.name} is not stored as "
                               f"format 2's uncompressed rows; run `egocache verify {store.url}`")


class RowReader:
    """Reads rows of a format-2 cache's fixed-size arrays (features, logits, IMU, labels, ...) directly."""

    def __init__(self, files: ShardFiles, attrs: dict[str, Any], names: list[str], prefix: str = "") -> None:
        """Check the layout of arrays `names` and prepare reading them; with `prefix` (a teacher group,
        "teachers/<name>/"), `attrs` are the group's and the arrays lie under it."""
        version = int(attrs["format_version"])
        specs = {s.name: s for s in array_specs(attrs)}
        self.files, self.specs, self.prefix = files, [specs[n] for n in names], prefix
        for spec in self.specs:
            if not direct_rows(spec, version):
                raise CacheFormatError(f"{files.store.url}: array {prefix}{spec.name} has no directly readable rows "
                                       f"in format {version}")
            _check_uncompressed(files.store, spec, prefix)
        self.dtypes = {s.name: np.dtype(s.dtype).newbyteorder("<") for s in self.specs}
        self.row_bytes = {s.name: int(np.prod(s.shape[1:], dtype=np.int64)) * self.dtypes[s.name].itemsize
                          for s in self.specs}

    def allocate(self, m: int) -> dict[str, np.ndarray]:
        """Empty output arrays for `m` rows."""
        return {s.name: np.empty((m, *s.shape[1:]), self.dtypes[s.name]) for s in self.specs}

    def requests(self, rows: np.ndarray, out: dict[str, np.ndarray]) -> list[Request]:
        """The reads that fill out[name][b] with row rows[b] of every array."""
        reqs: list[Request] = []
        for spec in self.specs:
            r, nb, dst = spec.chunk_rows, self.row_bytes[spec.name], out[spec.name]
            size = r * nb                 # a chunk file holds exactly its R uncompressed rows
            for b, row in enumerate(rows.tolist()):
                reqs.append((self.prefix + chunk_key(spec, row // r), (row % r) * nb, dst[b:b + 1], size))
        return reqs

    def read(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """{array: (len(rows), ...)} rows read straight from the store."""
        out = self.allocate(len(rows))
        self.files.read_into(self.requests(np.asarray(rows, np.int64), out))
        return out


def read_strings(store: CacheStore, group: Any, spec: ArraySpec) -> np.ndarray:
    """A one-chunk string column of the clip table as an object array of str (decoded directly when
    stored as vlen-utf8 + zstd, else through zarr)."""
    meta = load_json_object(store, f"{spec.name}/zarr.json")
    names = [c.get("name") for c in meta.get("codecs", [])]
    n = spec.shape[0]
    if names != ["vlen-utf8", "zstd"] or meta.get("chunk_grid", {}).get("configuration", {}).get(
            "chunk_shape") != [n]:
        return read_array(group(), spec.name, store.url).astype(object)
    import numcodecs

    key = chunk_key(spec, 0)
    try:
        values = numcodecs.VLenUTF8().decode(numcodecs.Zstd().decode(store.read(key)))
    except FileNotFoundError as exc:
        raise CacheFormatError(f"{store.where(key)}: missing; run `egocache verify {store.url}`") from exc
    except Exception as exc:  # numcodecs raises RuntimeError/ValueError for damaged bytes
        raise CacheError(f"{store.where(key)}: cannot be read ({type(exc).__name__}: {exc}); run "
                         f"`egocache verify {store.url}`") from exc
    if len(values) != n:
        raise CacheError(f"{store.where(key)}: holds {len(values)} values, expected {n}; run "
                         f"`egocache verify {store.url}`")
    return values


def read_small_column(store: CacheStore, group: Any, attrs: dict[str, Any], name: str,
                      files: ShardFiles | None = None) -> np.ndarray:
    """A whole per-clip column (status, imu_present, ...): format 2 reads its shard files directly,
    format 1 through zarr (`group` is a callable giving the zarr group, opened only if needed).
    Shards never written read as 0 (pending), as through zarr."""
    spec = next(s for s in array_specs(attrs) if s.name == name)
    if not direct_rows(spec, int(attrs["format_version"])):
        return read_array(group(), name, store.url)
    if len(spec.shape) != 1:
        raise CacheError(f"{store.url}: {name} is not a one-value-per-clip column")
    files = files or ShardFiles(store)
    reader = RowReader(files, attrs, [name])
    n, r = spec.shape[0], spec.chunk_rows
    out = np.zeros(-(-n // r) * r, reader.dtypes[name])
    size = r * reader.row_bytes[name]
    written = {int(c) for c in store.list(f"{name}/c") if c.isdigit()}    # one listing, not a stat per shard
    files.read_into([(chunk_key(spec, i // r), 0, out[i:i + r], size) for i in range(0, len(out), r)
                     if i // r in written])
    return out[:n]
