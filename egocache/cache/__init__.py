"""Zarr cache format: schema, shard writer, reader and torch Dataset, verify, info, HDF5 export."""
