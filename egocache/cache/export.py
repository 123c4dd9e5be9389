"""Export a cache to one HDF5 file: the same arrays (JPEG frames decoded to uint8) and attributes."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

from egocache.core.files import atomic_path
from egocache.cache.frames import decode_jpeg_into
from egocache.cache.info import zarr_group
from egocache.cache.schema import array_specs, read_array, read_attrs
from egocache.cache.store import open_store
from egocache.errors import CacheError


def _frames_block(group: Any, attrs: dict[str, Any], sl: slice, path: str) -> np.ndarray:
    """uint8 (m,K,S,S,3) frames of rows `sl`, decoding JPEGs; never-written (pending) rows are zeros."""
    block = read_array(group, "frames", path, sl)
    if attrs["frames"]["codec"] == "raw":
        return np.asarray(block)
    s = attrs["sampling"]["frame_size"]
    out = np.zeros((*block.shape, s, s, 3), dtype=np.uint8)
    for (i, k), data in np.ndenumerate(block):
        if len(data):
            decode_jpeg_into(bytes(data), out[i, k], f"frames row {sl.start + i} position {k}")
    return out


def export_hdf5(path: str, out: str, *, skip_verify: bool = False) -> str:
    """Write every array and root attribute of the cache at `path` to the HDF5 file `out`, after
    verifying the cache (a cache that fails verification is refused unless `skip_verify`).

    Attributes are stored as JSON strings, one per root key. The file is written under a
    temporary name and renamed when complete, so a failed export leaves no partial `out`.
    """
    import h5py

    from egocache.cache.verify import ensure_verified

    store, out = open_store(path), os.fspath(out)
    path = store.url
    attrs = read_attrs(store)
    ensure_verified(path, skip=skip_verify, warn=lambda m: print(m, file=sys.stderr))
    group = zarr_group(store)()
    n, rows = attrs["layout"]["num_clips"], attrs["layout"]["shard_size"]
    try:
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
            for key, value in attrs.items():
                h5.attrs[key] = json.dumps(value)
            for spec in array_specs(attrs):
                if spec.dtype == "string":
                    h5.create_dataset(spec.name, data=read_array(group, spec.name, path).tolist(),
                                      dtype=h5py.string_dtype())
                    continue
                if spec.name == "frames":
                    s = attrs["sampling"]["frame_size"]
                    shape, dtype, chunks = (n, spec.shape[1], s, s, 3), np.uint8, (1, 1, s, s, 3)
                else:
                    shape, dtype, chunks = spec.shape, np.dtype(spec.dtype), None
                ds = h5.create_dataset(spec.name, shape=shape, dtype=dtype, chunks=chunks)
                for start in range(0, n, rows):
                    sl = slice(start, min(start + rows, n))
                    ds[sl] = (_frames_block(group, attrs, sl, path) if spec.name == "frames"
                              else read_array(group, spec.name, path, sl))
                ds.attrs["description"] = spec.description
    except (OSError, ValueError) as exc:
        raise CacheError(f"export of {path} to {out} failed: {exc}") from exc
    return out
