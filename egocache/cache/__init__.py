"""Zarr cache format: schema, store (local or fsspec URL), lease, shard writer, direct row reads, reader
and torch Dataset, verify, info, HDF5 export.

Heavy pieces (torch Dataset, h5py export) are imported on first use, so `import egocache.cache`
stays cheap for the writer in extraction workers.
"""

from __future__ import annotations

from egocache.core.lazy import lazy_attributes

from egocache.cache.info import CacheInfo, open_cache
from egocache.cache.schema import (
    FORMAT_VERSION, STATUS_FAILED, STATUS_OK, STATUS_PENDING, array_specs, read_attrs,
)
from egocache.cache.lease import extraction_lock
from egocache.cache.store import CacheStore, is_url, open_store
from egocache.cache.writer import CacheWriter

_LAZY = {"CacheDataset": "reader", "cache_loader": "reader", "verify_cache": "verify",
         "VerifyReport": "verify", "export_hdf5": "export"}

__all__ = ["CacheDataset", "CacheInfo", "CacheStore", "CacheWriter", "FORMAT_VERSION", "STATUS_FAILED",
           "STATUS_OK", "STATUS_PENDING", "VerifyReport", "array_specs", "cache_loader", "export_hdf5",
           "extraction_lock", "is_url", "open_cache", "open_store", "read_attrs", "verify_cache"]


__getattr__ = lazy_attributes(__name__, _LAZY)
