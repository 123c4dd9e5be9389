"""Read a cache for training: a torch Dataset of one split's ok clips and a batch-at-a-time DataLoader.

The Dataset holds the cache's location and its split's index (cache row and segment code of each
clip, 4 bytes each); each process opens its readers lazily on its first read. Format-2 caches store
every fixed-size per-clip array uncompressed, so a batch reads its rows of features, logits, IMU and
labels straight from the shard files together with its frames (rows.ShardFiles: one batch of
`preadv`s, or ranged GETs on object storage): no process holds a copy of any array, and memory per
DataLoader worker does not grow with the cache. Format-1 caches (zstd small arrays) load the split's
small arrays into each process as before (~14 KB per clip). Frames stay uint8 until the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from egocache.cache.frames import FrameReader
from egocache.cache.info import CacheInfo, describe, split_and_status, zarr_group
from egocache.cache.rows import Request, RowReader, ShardFiles, read_small_column, read_strings
from egocache.cache.schema import (STATUS_OK, ArraySpec, array_specs, direct_rows, read_array, read_attrs,
                                   teacher_output_specs)
from egocache.cache.teachers import group_key, read_group_attrs
from egocache.cache.store import open_store
from egocache.cache.selections import available_selections, draw_frames, selection_indices
from egocache.errors import CacheError


@dataclass
class _Process:
    """Per-process state: the file reader, the row reader (format 2) or the split's small arrays
    loaded in memory (format 1), and the frame reader."""

    pid: int
    files: ShardFiles
    rows: RowReader | None
    memory: dict[str, np.ndarray] | None
    frames: FrameReader | None
    groups: dict[str, RowReader]           # added teachers' outputs, read directly from their groups


def _factorize(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(sorted distinct values, int32 code of each value), like np.unique(return_inverse) on str."""
    seen: dict[str, int] = {}
    first = np.fromiter((seen.setdefault(v, len(seen)) for v in values.tolist()), np.int64, len(values))
    names = list(seen)
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), np.int32)
    rank[order] = np.arange(len(names), dtype=np.int32)
    return [names[i] for i in order], rank[first] if len(first) else np.zeros(0, np.int32)


def _release_freed_heap() -> None:
    """Hand the heap freed after indexing (the clip table's decoded strings, ~70 bytes a clip) back to
    the OS (glibc malloc_trim). Freed but kept, it stays resident, and every DataLoader worker forked
    later counts it in its RSS: +7 MB per 100k clips of the split, measured in benchmarks/scale.py."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):      # not glibc (macOS, musl without malloc_trim): nothing to do
        pass


class CacheDataset(Dataset):
    """Clips of one split with status ok: frames for N, IMU window, teacher feature/logits, labels, ids."""

    def __init__(self, path: str | os.PathLike, *, split: str = "train", frames: int = 1,
                 read_frames: bool = True, first_last: bool = False, require_imu: bool = False,
                 selection: str = "uniform", selection_seed: int = 0, whole_pool: bool = False,
                 direct: bool | None = None, teachers: Sequence[str] = (), read_audio: bool = False,
                 require_audio: bool = False) -> None:
        """Index `split`'s ok clips of the cache at `path` (a folder or an fsspec URL) for a
        `frames`-frame (N) student.

        `selection` is the frame selection (cache/selections.py; "random" draws N of its pool per clip,
        fixed by `selection_seed`; `whole_pool` returns all of the pool instead). `require_imu` keeps only clips with their IMU window (imu_present;
        caches older than that flag have IMU for every ok clip); `skipped_without_imu` counts the others.
        `read_frames=False` leaves frames out of the items; `direct=False` forces zarr frame reads.
        `teachers` names teachers whose outputs each item carries under "teachers" ({name: {"feature",
        "logits", "aux"}}; "aux" holds its per-clip and per-video outputs, cache/videos.py): the cache's
        own teacher or ones added to it (cache/teachers.py); clips that
        an added teacher failed are left out (`skipped_by_teacher` counts them per teacher).
        `read_audio` adds each clip's log spectrogram ("audio", (201, frames) in the cache's dtype, float16 by
        default; zeros where audio_present is 0), read directly from the shards like the IMU;
        `require_audio` keeps only clips with their audio window (`skipped_without_audio` counts the
        others). Both refuse a cache without audio (CacheError).
        """
        self.store = open_store(path)
        self.path = self.store.url
        attrs = read_attrs(self.store)
        group = zarr_group(self.store)
        files = ShardFiles(self.store)
        split_arr, status = split_and_status(self.store, attrs, group, files)
        self.info: CacheInfo = describe(self.store, attrs, split_arr, status, measure_size=False)
        sam = self.info.sampling
        stored = selection_indices(sam, selection, frames)
        if stored is None:
            have = "; ".join(f"{sel} N in {ns}" for sel, ns in available_selections(sam).items())
            raise CacheError(f"{self.path}: no stored frames for N={frames} with frame selection {selection!r}; "
                             f"the cache has {have}")
        if first_last and sam["first_last"] is None:
            raise CacheError(f"{self.path}: the cache stores no first/last frames (first_last=None)")
        if split not in self.info.splits:
            raise CacheError(f"{self.path}: no split {split!r}; splits: {sorted(self.info.splits)}")
        self.split, self.frames, self.read_frames, self.first_last = split, frames, read_frames, first_last
        self.direct = direct
        self.selection, self.selection_seed, self.whole_pool = selection, selection_seed, whole_pool
        self.stored_frames = len(stored)           # frames read per clip: N, or the random pool
        self._stored: list[int] = stored if read_frames else []
        self._fl: list[int] = list(sam["first_last"]) if first_last else []
        usable = (split_arr == split) & (status == STATUS_OK)
        specs = {s.name: s for s in array_specs(attrs)}
        present = (read_small_column(self.store, group, attrs, "imu_present", files) == 1
                   if "imu_present" in specs else np.ones_like(usable))
        self.skipped_without_imu = int((usable & ~present).sum()) if require_imu else 0
        if require_imu:
            usable &= present
        self.teachers = list(dict.fromkeys(teachers))
        self._groups = {n: read_group_attrs(self.store, n) for n in self.teachers if n != self.info.teacher["name"]}
        self.skipped_by_teacher: dict[str, int] = {}
        for name, gattrs in self._groups.items():
            gstore = self.store.child(group_key(name))
            ok = read_small_column(gstore, zarr_group(gstore), gattrs, "status") == STATUS_OK
            self.skipped_by_teacher[name] = int((usable & ~ok).sum())
            usable &= ok
        if (read_audio or require_audio) and "audio_present" not in specs:
            raise CacheError(f"{self.path}: has no audio (extracted with --audio none, or by an egocache from "
                             "before audio); re-extract with --audio optional or required")
        self.read_audio = read_audio
        self.skipped_without_audio = 0
        if require_audio:
            heard = read_small_column(self.store, group, attrs, "audio_present", files) == 1
            self.skipped_without_audio = int((usable & ~heard).sum())
            usable &= heard
        index = np.int32 if self.info.num_clips < 2**31 else np.int64
        self.rows: np.ndarray = np.flatnonzero(usable).astype(index)
        # only the int32 segment code of each clip is kept: the ids themselves (a Python str per
        # segment, ~70 bytes each) would grow every forked DataLoader worker's RSS with the split
        self._segment = _factorize(read_strings(self.store, group, specs["segment_id"])[self.rows])[1]
        self._segment_names: list[str] | None = None
        self._videos = self._video_outputs(group, specs)
        heads = list(self.info.heads)
        root_aux = [f"aux_{a}" for a in self.info.teacher.get("aux") or {}]
        self._small = ["features", "imu", *(f"logits_{h}" for h in heads), *(f"label_{h}" for h in heads),
                       *root_aux, *(["audio"] if read_audio else [])]
        self._direct_rows = all(direct_rows(specs[n], int(attrs["format_version"])) for n in self._small)
        self._state: _Process | None = None
        files.close()
        _release_freed_heap()

    def _video_outputs(self, group: Any, specs: dict[str, ArraySpec]
                       ) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
        """{teacher: (each row's video index, {per-video output: (V, A)})} for the requested teachers that
        declare per-video outputs (cache/videos.py); held in memory: V x A values, 4 bytes per clip."""
        from egocache.cache import videos

        out: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        ids: np.ndarray | None = None
        for name in self.teachers:
            own = name not in self._groups
            gattrs = self.info.attrs if own else self._groups[name]
            if not videos.declared(gattrs["teacher"]):
                continue
            stored = videos.read(self.store if own else self.store.child(group_key(name)), gattrs)
            if ids is None:
                ids = np.asarray(read_strings(self.store, group, specs["video_id"])[self.rows], dtype=np.str_)
            out[name] = (np.searchsorted(stored.video_ids, ids).astype(np.int32), stored.values)
        return out

    @property
    def segment_ids(self) -> list[str]:
        """The split's distinct segment ids, sorted; the "segment" code of an item indexes this list.

        Read from the cache on first use (evaluation needs them, training workers do not)."""
        if self._segment_names is None:
            group = zarr_group(self.store)
            spec = next(s for s in array_specs(self.info.attrs) if s.name == "segment_id")
            self._segment_names = _factorize(read_strings(self.store, group, spec)[self.rows])[0]
        return self._segment_names

    def __len__(self) -> int:
        """Number of ok clips in this split."""
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the per-process readers: each worker process opens its own."""
        state = self.__dict__.copy()
        state["_state"] = None
        state["_segment_names"] = None
        return state

    def _load(self) -> _Process:
        """Open this process's readers on first use (again after a fork)."""
        if self._state is not None and self._state.pid == os.getpid():
            return self._state
        files = ShardFiles(self.store)
        memory = None
        if not self._direct_rows:      # format 1: this split's small arrays, once per process
            group = zarr_group(self.store)()
            memory = {n: np.ascontiguousarray(read_array(group, n, self.path)[self.rows]) for n in self._small}
        frames = (FrameReader(self.store, self.info.attrs, direct=self.direct, files=files)
                  if self._stored or self._fl else None)
        groups = {n: RowReader(files, g, [s.name for s in teacher_output_specs(g)], prefix=f"{group_key(n)}/")
                  for n, g in self._groups.items()}
        self._state = _Process(pid=os.getpid(), files=files, memory=memory, frames=frames, groups=groups,
                               rows=RowReader(files, self.info.attrs, self._small) if memory is None else None)
        return self._state

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, Any]:
        """One clip (int) or a whole batch (list of ints -> leading batch axis) as torch tensors."""
        batch = not isinstance(index, (int, np.integer)) and not (
            isinstance(index, torch.Tensor) and index.ndim == 0)
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if ((idx < -len(self)) | (idx >= len(self))).any():
            raise IndexError(f"index out of range for {len(self)} clips of split {self.split!r}")
        idx = idx % max(len(self), 1)
        st = self._load()
        rows = self.rows[idx].astype(np.int64)
        reqs: list[Request] = []
        finish: Callable[[], None] = lambda: None
        if st.memory is not None:
            small = {n: v[idx] for n, v in st.memory.items()}
        else:
            small = st.rows.allocate(len(rows))  # type: ignore[union-attr]
        added = {n: r.allocate(len(rows)) for n, r in st.groups.items()}
        readers = [(st.rows, small)] if st.memory is None else []
        for reader, out in [*readers, *((r, added[n]) for n, r in st.groups.items())]:
            reqs += reader.requests(rows, out)
        got = None
        if st.frames is not None:
            s = st.frames.size
            got = np.empty((len(rows), len(self._stored) + len(self._fl), s, s, 3), np.uint8)
            if st.frames.direct:
                frame_reqs, finish = st.frames.requests(rows, self._stored + self._fl, got)
                reqs += frame_reqs
            else:
                got = st.frames.read(rows, self._stored + self._fl)
        st.files.read_into(reqs)
        finish()
        heads = self.info.heads
        out: dict[str, Any] = {
            "imu": torch.from_numpy(small["imu"]), "feature": torch.from_numpy(small["features"]),
            "logits": {h: torch.from_numpy(small[f"logits_{h}"]) for h in heads},
            "label": {h: torch.from_numpy(small[f"label_{h}"]) for h in heads},
            "row": torch.from_numpy(rows), "segment": torch.from_numpy(self._segment[idx].astype(np.int64)),
        }
        if self.teachers:
            out["teachers"] = {n: _teacher_item(added[n] if n in added else small) for n in self.teachers}
            for n, (video, values) in self._videos.items():
                out["teachers"][n]["aux"].update({k: torch.from_numpy(v[video[idx]]) for k, v in values.items()})
        if self.read_audio:
            out["audio"] = torch.from_numpy(small["audio"])
        if got is not None:
            if self.read_frames:
                frames = got[:, :len(self._stored)]
                choice = self.frame_choice(rows)
                if choice is not None:
                    frames = np.take_along_axis(frames, choice[:, :, None, None, None], axis=1)
                out["frames"] = torch.from_numpy(np.ascontiguousarray(frames))
            if self.first_last:
                out["first_last"] = torch.from_numpy(got[:, len(self._stored):])
        return out if batch else _first(out)

    def frame_choice(self, rows: np.ndarray) -> np.ndarray | None:
        """(B, N) indices into the frames read per clip that a "random" selection uses for cache `rows`."""
        if self.selection != "random" or self.whole_pool:
            return None
        return draw_frames(rows, self.stored_frames, self.frames, self.selection_seed)


def _teacher_item(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """One teacher's outputs of a batch as tensors: {"feature", "logits" {head}, "aux" {name}}."""
    def part(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith(prefix)}

    return {"feature": torch.from_numpy(arrays["features"]), "logits": part("logits_"), "aux": part("aux_")}


def _first(out: dict[str, Any]) -> dict[str, Any]:
    """Drop the leading batch axis of every tensor (nested dicts included)."""
    return {k: _first(v) if isinstance(v, dict) else v[0] for k, v in out.items()}


def cache_loader(ds: CacheDataset, *, batch_size: int, shuffle: bool, seed: int, num_workers: int,
                 drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
    """DataLoader reading one whole batch per __getitem__ (BatchSampler, batch_size=None)."""
    if sampler is None:
        sampler = (RandomSampler(ds, generator=torch.Generator().manual_seed(seed)) if shuffle
                   else SequentialSampler(ds))
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None,
                      num_workers=num_workers, persistent_workers=num_workers > 0)
