"""egocache: run a heavy egocentric video teacher once, cache what students need, distil from the cache."""

__version__ = "0.1.0"
