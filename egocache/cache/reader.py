"""Read a cache for training: a torch Dataset of one split's ok clips and a batch-at-a-time DataLoader.

The Dataset holds only the path and small index arrays; each process opens the store lazily on its
first read. The small per-clip arrays (feature, logits, IMU, labels: ~14 KB/clip) are loaded into
memory once per process (3-4x faster than reading them clip by clip); only frames are read from
the store per batch, and they stay uint8 until they reach the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from egocache.cache.frames import FrameReader
from egocache.cache.info import CacheInfo, open_cache
from egocache.cache.schema import STATUS_OK, read_array
from egocache.cache.selections import available_selections, draw_frames, selection_indices
from egocache.errors import CacheError


@dataclass
class _Loaded:
    """Per-process state: the small arrays of this split's rows and the frame reader."""

    pid: int
    feature: np.ndarray
    imu: np.ndarray
    logits: dict[str, np.ndarray]
    label: dict[str, np.ndarray]
    frames: FrameReader | None


class CacheDataset(Dataset):
    """Clips of one split with status ok: frames for N, IMU window, teacher feature/logits, labels, ids."""

    def __init__(self, path: str | os.PathLike, *, split: str = "train", frames: int = 1,
                 read_frames: bool = True, first_last: bool = False, require_imu: bool = False,
                 selection: str = "uniform", selection_seed: int = 0, whole_pool: bool = False,
                 direct: bool | None = None) -> None:
        """Index `split`'s ok clips of the cache at `path` for a `frames`-frame (N) student.

        `selection` is the frame selection (cache/selections.py; "random" draws N of its pool per clip,
        fixed by `selection_seed`; `whole_pool` returns all of the pool instead). `require_imu` keeps only clips with their IMU window (imu_present;
        caches older than that flag have IMU for every ok clip); `skipped_without_imu` counts the others.
        `read_frames=False` leaves frames out of the items; `direct=False` forces zarr frame reads.
        """
        import zarr

        self.path = os.fspath(path)
        self.info: CacheInfo = open_cache(self.path)
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
        group = zarr.open_group(self.path, mode="r")
        split_arr = read_array(group, "split", self.path)
        status = read_array(group, "status", self.path)
        usable = (split_arr == split) & (status == STATUS_OK)
        present = (read_array(group, "imu_present", self.path) == 1 if "imu_present" in group
                   else np.ones_like(usable))
        self.skipped_without_imu = int((usable & ~present).sum()) if require_imu else 0
        if require_imu:
            usable &= present
        self.rows: np.ndarray = np.flatnonzero(usable).astype(np.int64)
        seg = read_array(group, "segment_id", self.path)[self.rows]
        names, codes = np.unique(seg, return_inverse=True)
        self.segment_ids: list[str] = names.tolist()
        self._segment = codes.astype(np.int64)
        self._state: _Loaded | None = None

    def __len__(self) -> int:
        """Number of ok clips in this split."""
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the loaded arrays/handles: each worker process loads its own."""
        state = self.__dict__.copy()
        state["_state"] = None
        return state

    def _load(self) -> _Loaded:
        """Load this process's small arrays and frame reader on first use (again after a fork)."""
        if self._state is not None and self._state.pid == os.getpid():
            return self._state
        import zarr

        group = zarr.open_group(self.path, mode="r")
        rows = self.rows
        heads = self.info.heads

        def take(name: str) -> np.ndarray:
            return np.ascontiguousarray(read_array(group, name, self.path)[rows])

        reader = (FrameReader(self.path, self.info.attrs, direct=self.direct)
                  if self._stored or self._fl else None)
        self._state = _Loaded(pid=os.getpid(), feature=take("features"), imu=take("imu"),
                              logits={h: take(f"logits_{h}") for h in heads},
                              label={h: take(f"label_{h}") for h in heads}, frames=reader)
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
        rows = self.rows[idx]
        out: dict[str, Any] = {
            "imu": torch.from_numpy(st.imu[idx]), "feature": torch.from_numpy(st.feature[idx]),
            "logits": {h: torch.from_numpy(v[idx]) for h, v in st.logits.items()},
            "label": {h: torch.from_numpy(v[idx]) for h, v in st.label.items()},
            "row": torch.from_numpy(rows.copy()), "segment": torch.from_numpy(self._segment[idx]),
        }
        if st.frames is not None:
            got = st.frames.read(rows, self._stored + self._fl)
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
