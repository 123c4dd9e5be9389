"""Annotations -> manifest: the dataset adapters (EPIC-KITCHENS-100, Ego4D FHO, generic CSV/JSONL),
the dataset metadata file, and the manifest of clips they produce."""

from egocache.pipeline.datasets.manifest import ADAPTERS, Clip, Manifest, clips_by_video, load_manifest
from egocache.pipeline.datasets.meta import DATASET_META_FILE, DatasetMeta, read_dataset_meta

__all__ = ["ADAPTERS", "Clip", "DATASET_META_FILE", "DatasetMeta", "Manifest", "clips_by_video", "load_manifest",
           "read_dataset_meta"]
