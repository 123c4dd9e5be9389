"""Frames on disk: JPEG and shard encoding for the writer, and a fast batch reader of the sharded frames array.

zarr 3.1 reads a batch of clips out of a sharded array slowly (orthogonal indexing ~15-31 clips/s,
per-chunk async reads ~600 clips/s here). The frames array is written in a layout this module
knows exactly (one inner chunk per clip and frame position, no compression, spec-defined
`sharding_indexed` index), so a batch is read by reading each clip's entries of its shard's index
(one small read per clip, nothing kept per shard) and then the wanted inner chunks straight into the
output array (rows.ShardFiles: `os.preadv`, or ranged GETs on object storage; ~memmap speed). Any
other layout falls back to concurrent reads through zarr's async API, so the reader stays correct
whatever wrote the store.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Callable

import google_crc32c
import numpy as np
import simplejpeg

from egocache.cache.rows import Request, ShardFiles
from egocache.cache.schema import ArraySpec, array_specs, chunk_key, load_json_object
from egocache.cache.store import CacheStore, open_store
from egocache.errors import CacheError, CacheFormatError

JPEG_SUBSAMPLING = "444"
_MISSING = 2**64 - 1


def encode_jpeg_frames(frames: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-encode (m,K,S,S,3) uint8 RGB frames into an (m,K) object array of bytes."""
    out = np.empty(frames.shape[:2], dtype=object)
    for i in range(frames.shape[0]):
        for k in range(frames.shape[1]):
            out[i, k] = simplejpeg.encode_jpeg(np.ascontiguousarray(frames[i, k]), quality=quality,
                                               colorspace="RGB", colorsubsampling=JPEG_SUBSAMPLING)
    return out


def decode_jpeg_into(data: bytes | memoryview, out: np.ndarray, where: str) -> None:
    """Decode one JPEG into the (S,S,3) uint8 array `out`, naming `where` on failure."""
    try:
        img = simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
    except ValueError as exc:
        raise CacheError(f"{where}: JPEG frame cannot be decoded ({exc})") from exc
    if img.shape != out.shape:
        raise CacheFormatError(f"{where}: JPEG frame is {img.shape}, expected {out.shape}")


def encode_frames_shard(frames: np.ndarray, shard_rows: int) -> bytes:
    """One frames shard file (zarr `sharding_indexed`, index at the end) holding `frames`, the (m, K, S, S, 3)
    uint8 frames or (m, K) JPEG bytes of a shard's m <= `shard_rows` clips, each clip's K inner chunks back
    to back. zarr writes a shard's chunks in Morton order, which scatters a clip's frames over the file and
    made batch reads 5-6 % slower than reading them in one piece (docs/benchmarks.md); the spec leaves the
    order to the writer, since every chunk is found through the index."""
    m, k = frames.shape[:2]
    if frames.dtype == np.uint8:
        chunks: list[Any] = [np.ascontiguousarray(frames).reshape(-1)]
        sizes = np.full(m * k, frames[0, 0].nbytes, np.uint64)
    else:           # vlen-bytes inner chunks: u32 item count (1), u32 length, the JPEG
        chunks = [part for jpeg in frames.reshape(-1)
                  for part in (np.array([1, len(jpeg)], "<u4").tobytes(), jpeg)]
        sizes = np.array([8 + len(jpeg) for jpeg in frames.reshape(-1)], np.uint64)
    index = np.full((shard_rows * k, 2), _MISSING, "<u8")
    index[:m * k, 0] = np.cumsum(sizes) - sizes          # each chunk right after the one before
    index[:m * k, 1] = sizes
    raw = index.tobytes()
    return b"".join([*chunks, raw, np.array(google_crc32c.value(raw), "<u4").tobytes()])


def _direct_layout(meta: dict[str, Any], spec: ArraySpec, codec: str) -> str | None:
    """The shard index location if the frames array has the layout the direct reader knows, else None."""
    codecs = meta.get("codecs") or []
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    cfg = codecs[0].get("configuration", {})
    inner = [c.get("name") for c in cfg.get("codecs", [])]
    index = [c.get("name") for c in cfg.get("index_codecs", [])]
    endian = [c.get("configuration", {}).get("endian", "little") for c in cfg.get("index_codecs", [])]
    want_chunk = [1] * 2 + list(spec.shape[2:])
    ok = (cfg.get("chunk_shape") == want_chunk
          and meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
          == [spec.chunk_rows, *spec.shape[1:]]
          and inner == (["bytes"] if codec == "raw" else ["vlen-bytes"])
          and index == ["bytes", "crc32c"] and endian[0] == "little"
          and meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/") == "/")
    loc = cfg.get("index_location", "end")
    return loc if ok and loc in ("start", "end") else None


class FrameReader:
    """Reads the stored frames of many clips at once; one instance per process (see rows.ShardFiles)."""

    def __init__(self, path: str | CacheStore, attrs: dict[str, Any], *, direct: bool | None = None,
                 files: ShardFiles | None = None) -> None:
        """Prepare reading the cache's frames; `direct=False` forces the generic zarr path."""
        self.store = open_store(path)
        self.path = self.store.url
        self.codec = attrs["frames"]["codec"]
        self.size = attrs["sampling"]["frame_size"]
        self.spec = next(s for s in array_specs(attrs) if s.name == "frames")
        meta = load_json_object(self.store, "frames/zarr.json")
        loc = _direct_layout(meta, self.spec, self.codec)
        self.index_location = loc if direct is not False else None
        if direct and loc is None:
            raise CacheFormatError(f"{self.store.where('frames/zarr.json')}: frames layout is not the one the "
                                   "direct reader knows")
        self.files = files if files is not None else ShardFiles(self.store)
        self._zarr: Any = None
        # local raw shards: key -> (the map's view, its frame chunks (M, frame bytes), chunk grid or None), per
        # mapping (`_grid`)
        self._grids: OrderedDict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = OrderedDict()

    @property
    def index_bytes(self) -> int:
        """Bytes of a frames shard's index: (offset, length) u64 pairs per inner chunk, then a crc32c."""
        return self.spec.chunk_rows * self.spec.shape[1] * 16 + 4

    @property
    def direct(self) -> bool:
        """Whether frames are read straight from the shard files (else through zarr)."""
        return self.index_location is not None

    def read(self, rows: np.ndarray, stored: list[int]) -> np.ndarray:
        """uint8 (len(rows), len(stored), S, S, 3) frames of cache rows at stored position indices."""
        s = self.size
        out = np.empty((len(rows), len(stored), s, s, 3), dtype=np.uint8)
        if len(rows):
            if self.direct:
                reqs, finish = self.requests(np.asarray(rows, np.int64), stored, out)
                self.files.read_into(reqs)
                finish()
            else:
                self._read_zarr(np.asarray(rows), stored, out)
        return out

    def requests(self, rows: np.ndarray, stored: list[int], out: np.ndarray
                 ) -> tuple[list[Request], Callable[[], None]]:
        """The reads that fill `out` with the frames of `rows` (direct layout), and what to run after them
        (JPEG decoding). Each clip's shard index entries are read first, one small read per clip. Raw
        frames of a local cache are gathered here at once instead (no requests left)."""
        if self.codec == "raw" and self.store.local:
            self._gather_local(rows, stored, out)
            return [], lambda: None
        r, k = self.spec.chunk_rows, self.spec.shape[1]
        index_bytes = self.index_bytes
        entries = np.empty((len(rows), k, 2), dtype="<u8")
        keys = [chunk_key(self.spec, int(row) // r) for row in rows.tolist()]
        index_reqs: list[Request] = []
        for b, (key, row) in enumerate(zip(keys, rows.tolist())):
            size = self.files.size(key)
            if size < index_bytes:
                raise CacheError(f"{self.store.where(key)}: shard file truncated ({size} bytes, index needs "
                                 f"{index_bytes})")
            start = size - index_bytes if self.index_location == "end" else 0
            index_reqs.append((key, start + (row % r) * k * 16, entries[b], 0))
        self.files.read_into(index_reqs)
        frame_bytes = out[0, 0].nbytes
        reqs: list[Request] = []
        blobs: list[tuple[np.ndarray, np.ndarray, str]] = []
        for b, (key, row) in enumerate(zip(keys, rows.tolist())):
            for j, pos in enumerate(stored):
                off, nb = int(entries[b, pos, 0]), int(entries[b, pos, 1])
                if off == _MISSING:
                    raise CacheError(f"{self.store.where(key)}: no frame stored for row {row} position {pos}")
                if self.codec == "raw":
                    if nb != frame_bytes:
                        raise CacheFormatError(f"{self.store.where(key)}: raw frame chunk of {nb} bytes, "
                                               f"expected {frame_bytes}")
                    reqs.append((key, off, out[b, j], 0))
                else:
                    buf = np.empty(nb, np.uint8)
                    reqs.append((key, off, buf, 0))
                    blobs.append((buf, out[b, j], f"{self.store.where(key)} row {row}"))

        def decode() -> None:
            self.files.map(lambda item: self._decode_vlen(*item), blobs)

        return reqs, decode

    def _gather_local(self, rows: np.ndarray, stored: list[int], out: np.ndarray) -> None:
        """Raw frames of a local cache: numpy gathers them straight from each shard file's map by the
        shard's chunk grid (parsed and checked once per mapping, `_grid`), one np.take per run of the
        batch's clips in one shard (a sorted batch: one per shard). The bookkeeping is plain Python over
        the batch's rows, a few numpy calls per shard, and runs before the copies: after a batch's copies
        have evicted the CPU's caches every small numpy call is several times slower than alone, and a
        vectorised version of this loop cost the reader ~6 % against a memmap (docs/benchmarks.md).
        Entries off the grid take the checked per-entry path, which names what is wrong."""
        r, k = self.spec.chunk_rows, self.spec.shape[1]
        frame_bytes = out[0, 0].nbytes
        n = len(stored)
        flat = out.reshape(len(rows) * n, frame_bytes)       # row b * n + j: clip b's j-th frame
        runs: list[list[int]] = []                            # [shard, first clip in the batch, rows in shard...]
        for b, row in enumerate(rows.tolist()):
            shard, local = divmod(row, r)
            if runs and runs[-1][0] == shard and runs[-1][1] + len(runs[-1]) - 2 == b:
                runs[-1].append(local)
            else:
                runs.append([shard, b, local])
        copies: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []      # (frame chunks, chunk numbers, out view)
        for shard, b, *local in runs:
            key = chunk_key(self.spec, shard)
            view, chunks, grid = self._grid(key, frame_bytes)
            at = [i * k + p for i in local for p in stored]       # entries in the shard's (r * K) index
            dst = flat[b * n:(b + len(local)) * n]
            if grid is None:                                       # clip-major and complete: entry = chunk
                copies.append((chunks, at, dst))
                continue
            idx = grid[at]
            if (idx < 0).any():
                self._gather_entries(key, view, rows[b:b + len(local)], stored, dst, frame_bytes)
            else:
                copies.append((chunks, idx, dst))
        for chunks, idx, dst in copies:
            chunks.take(idx, 0, dst, "clip")      # indices checked on the grid; "raise" would buffer `dst`

    def _grid(self, key: str, frame_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(view, frame chunks, chunk grid) of local shard `key`, computed when its map is new. The grid
        (r * K,) holds each index entry's chunk number, -1 where the entry is missing or off the grid (the
        chunks lie back to back, so an entry on it is at lo + a whole number of frames); None when every
        entry is on it in index order (egocache's clip-major shards, complete), the entry then being the
        chunk number."""
        view = self.files.view(key)          # checks the file has not shrunk, every call
        got = self._grids.get(key)
        if got is not None and got[0] is view:
            self._grids.move_to_end(key)
            return got
        index_bytes = self.index_bytes
        if len(view) < index_bytes:
            raise CacheError(f"{self.store.where(key)}: shard file truncated ({len(view)} bytes, index needs "
                             f"{index_bytes})")
        lo, hi = self._data_range(len(view))
        entries = self._index(view).reshape(-1, 2)
        off, nb = entries[:, 0], entries[:, 1]
        on_grid = ((off != _MISSING) & (nb == frame_bytes) & (off >= lo) & (off + frame_bytes <= hi)
                   & ((off - lo) % frame_bytes == 0))
        grid = np.where(on_grid, ((off - lo) // frame_bytes).astype(np.int64), -1)
        chunks = view[lo:lo + (hi - lo) // frame_bytes * frame_bytes].reshape(-1, frame_bytes)
        got = (view, chunks, None if np.array_equal(grid, np.arange(len(grid))) else grid)
        self._grids[key] = got
        while len(self._grids) > self.files.max_open:
            self._grids.popitem(last=False)
        return got

    def _data_range(self, size: int) -> tuple[int, int]:
        """(lo, hi): where a shard file of `size` bytes may hold frame chunks, by its index's location."""
        return (0, size - self.index_bytes) if self.index_location == "end" else (self.index_bytes, size)

    def _index(self, view: np.ndarray) -> np.ndarray:
        """The shard index of a mapped shard file as (r, K, 2) <u8 (offset, bytes) entries."""
        r, k = self.spec.chunk_rows, self.spec.shape[1]
        first = len(view) - self.index_bytes if self.index_location == "end" else 0
        return view[first:first + r * k * 16].view("<u8").reshape(r, k, 2)

    def _gather_entries(self, key: str, view: np.ndarray, rows: np.ndarray, stored: list[int], dst: np.ndarray,
                        frame_bytes: int) -> None:
        """The frames of `rows` of shard `key` into `dst` (row b * len(stored) + j: clip b's j-th frame) entry
        by entry, after checking each (one-line errors)."""
        lo, hi = self._data_range(len(view))
        entries = self._index(view)[rows % self.spec.chunk_rows][:, stored]
        off, nb = entries[..., 0], entries[..., 1]
        self._bad_entries(key, rows, stored, off, nb, lo, hi, frame_bytes)
        for q, o in enumerate(off.reshape(-1).tolist()):   # valid, but not on the back-to-back grid
            dst[q] = view[o:o + frame_bytes]

    def _bad_entries(self, key: str, rows: np.ndarray, stored: list[int], off: np.ndarray, nb: np.ndarray,
                     lo: int, hi: int, frame_bytes: int) -> None:
        """Raise the one-line error for the first shard index entry that cannot be read (missing, wrong
        size, outside the shard's data); return if every entry is readable."""
        where = self.store.where(key)
        missing = off == _MISSING
        if missing.any():
            b, j = np.argwhere(missing)[0]
            raise CacheError(f"{where}: no frame stored for row {int(rows[b])} position {stored[j]}")
        if (nb != frame_bytes).any():
            raise CacheFormatError(f"{where}: raw frame chunk of {int(nb[nb != frame_bytes][0])} bytes, "
                                   f"expected {frame_bytes}")
        if (off < lo).any() or (off + nb > hi).any():
            raise CacheError(f"{where}: a frame chunk lies outside the shard's data (damaged or truncated); "
                             f"run `egocache verify {self.store.url}`")

    @staticmethod
    def _decode_vlen(buf: np.ndarray, out: np.ndarray, where: str) -> None:
        """Decode one vlen-bytes inner chunk (u32 count = 1, u32 length, JPEG bytes) into `out`."""
        count, length = np.frombuffer(buf[:8], dtype="<u4") if len(buf) >= 8 else (0, 0)
        if count != 1 or 8 + int(length) != len(buf):
            raise CacheFormatError(f"{where}: malformed vlen-bytes frame chunk")
        decode_jpeg_into(memoryview(buf)[8:], out, where)

    def _read_zarr(self, rows: np.ndarray, stored: list[int], out: np.ndarray) -> None:
        """Generic path: one async zarr read per (clip, position), all gathered in zarr's event loop."""
        import zarr
        from zarr.core.sync import sync

        if self._zarr is None:
            self._zarr = sync(zarr.api.asynchronous.open_array(
                store=self.store.zarr_store(read_only=True), path="frames", mode="r"))
        arr = self._zarr
        keys = [(b, j, int(r), k) for b, r in enumerate(rows) for j, k in enumerate(stored)]

        async def gather() -> list[Any]:
            # a length-1 slice, not a scalar index: zarr 3.1 wraps scalar vlen-bytes in 0-d arrays
            return await asyncio.gather(*(arr.getitem((r, slice(k, k + 1))) for _, _, r, k in keys))

        for (b, j, r, _), value in zip(keys, sync(gather())):
            if self.codec == "raw":
                out[b, j] = value[0]
            else:
                decode_jpeg_into(bytes(value[0]), out[b, j], f"{self.path} frames row {r}")
