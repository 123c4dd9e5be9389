"""Frames on disk: JPEG encoding for the writer and a fast batch reader of the sharded frames array.

zarr 3.1 reads a batch of clips out of a sharded array slowly (orthogonal indexing ~15-31 clips/s,
per-chunk async reads ~600 clips/s here). The frames array is written in a layout this module
knows exactly (one inner chunk per clip and frame position, no compression, spec-defined
`sharding_indexed` index), so a batch is read by parsing each shard's index once and reading the
wanted inner chunks with `os.preadv` straight into the output array (~memmap speed). Any other
layout falls back to concurrent reads through zarr's async API, so the reader stays correct
whatever wrote the store.
"""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import simplejpeg

from egocache.cache.schema import ArraySpec, array_specs, chunk_file
from egocache.errors import CacheError, CacheFormatError

JPEG_SUBSAMPLING = "444"
_MISSING = np.uint64(2**64 - 1)
_MAX_IOV = 512


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
    """Reads the stored frames of many clips at once; one instance per process (holds no handles)."""

    def __init__(self, path: str, attrs: dict[str, Any], *, direct: bool | None = None,
                 threads: int = 4) -> None:
        """Prepare reading `path`'s frames; `direct=False` forces the generic zarr path."""
        self.path = path
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.codec = attrs["frames"]["codec"]
        self.size = attrs["sampling"]["frame_size"]
        self.spec = next(s for s in array_specs(attrs) if s.name == "frames")
        meta_path = os.path.join(path, "frames", "zarr.json")
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as exc:
            raise CacheFormatError(f"{meta_path}: frames metadata unreadable ({exc})") from exc
        loc = _direct_layout(meta, self.spec, self.codec)
        self.index_location = loc if direct is not False else None
        if direct and loc is None:
            raise CacheFormatError(f"{meta_path}: frames layout is not the one the direct reader knows")
        self._indices: dict[int, np.ndarray] = {}
        self._zarr: Any = None

    @property
    def direct(self) -> bool:
        """Whether frames are read straight from the shard files (else through zarr)."""
        return self.index_location is not None

    def read(self, rows: np.ndarray, stored: list[int]) -> np.ndarray:
        """uint8 (len(rows), len(stored), S, S, 3) frames of cache rows at stored position indices."""
        s = self.size
        out = np.empty((len(rows), len(stored), s, s, 3), dtype=np.uint8)
        if len(rows):
            (self._read_direct if self.direct else self._read_zarr)(np.asarray(rows), stored, out)
        return out

    def _shard_index(self, shard: int, fd: int, file: str) -> np.ndarray:
        """(rows, K, 2) uint64 (offset, nbytes) of every inner chunk in one shard, read once."""
        idx = self._indices.get(shard)
        if idx is None:
            rows, k = self.spec.chunk_rows, self.spec.shape[1]
            nbytes = rows * k * 16 + 4
            size = os.fstat(fd).st_size
            start = size - nbytes if self.index_location == "end" else 0
            raw = os.pread(fd, nbytes, max(start, 0))
            if size < nbytes or len(raw) != nbytes:
                raise CacheError(f"{file}: shard file truncated ({size} bytes, index needs {nbytes})")
            idx = np.frombuffer(raw[:-4], dtype="<u8").reshape(rows, k, 2)
            ends = idx[..., 0] + idx[..., 1]
            if ((idx[..., 0] != _MISSING) & (ends > size)).any():
                raise CacheError(f"{file}: shard index points past the end of the file")
            self._indices[shard] = idx
        return idx

    def _read_direct(self, rows: np.ndarray, stored: list[int], out: np.ndarray) -> None:
        """Read each touched shard's inner chunks, shards in parallel threads (preadv drops the GIL)."""
        shards = rows // self.spec.chunk_rows
        tasks = [(int(s), np.flatnonzero(shards == s)) for s in np.unique(shards)]
        if self._pool is None and len(tasks) > 1 and self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="egocache-frames")
        if self._pool is None or len(tasks) == 1:
            for shard, which in tasks:
                self._read_shard(shard, which, rows, stored, out)
        else:
            for done in [self._pool.submit(self._read_shard, s, w, rows, stored, out) for s, w in tasks]:
                done.result()

    def _read_shard(self, shard: int, which: np.ndarray, rows: np.ndarray, stored: list[int],
                    out: np.ndarray) -> None:
        """Read the frames of batch positions `which` (all in `shard`): preadv (raw) or JPEG decode."""
        file = chunk_file(self.path, self.spec, shard)
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError as exc:
            raise CacheError(f"{file}: frames shard file unreadable ({exc})") from exc
        try:
            idx = self._shard_index(shard, fd, file)
            entries = []
            for b in which:
                w = int(rows[b]) - shard * self.spec.chunk_rows
                for j, k in enumerate(stored):
                    off, nb = idx[w, k]
                    if off == _MISSING:
                        raise CacheError(f"{file}: no frame stored for row {int(rows[b])} position {k}")
                    entries.append((int(off), int(nb), int(b), j))
            entries.sort()
            if self.codec == "raw":
                self._preadv_runs(fd, file, entries, out)
            else:
                for off, nb, b, j in entries:
                    self._decode_vlen(os.pread(fd, nb, off), out[b, j], f"{file} row {int(rows[b])}")
        finally:
            os.close(fd)

    def _preadv_runs(self, fd: int, file: str, entries: list[tuple[int, int, int, int]],
                     out: np.ndarray) -> None:
        """Read raw inner chunks, merging chunks that lie back to back into one preadv call."""
        frame_bytes = out[0, 0].nbytes
        i = 0
        while i < len(entries):
            start, bufs, end = entries[i][0], [], entries[i][0]
            while i < len(entries) and entries[i][0] == end and len(bufs) < _MAX_IOV:
                off, nb, b, j = entries[i]
                if nb != frame_bytes:
                    raise CacheFormatError(f"{file}: raw frame chunk of {nb} bytes, expected {frame_bytes}")
                bufs.append(memoryview(out[b, j]).cast("B"))
                end += nb
                i += 1
            got = os.preadv(fd, bufs, start)
            if got != end - start:
                raise CacheError(f"{file}: short read at byte {start} ({got} of {end - start})")

    @staticmethod
    def _decode_vlen(buf: bytes, out: np.ndarray, where: str) -> None:
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
            self._zarr = sync(zarr.api.asynchronous.open_array(store=self.path, path="frames", mode="r"))
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
