"""Summarise a cache: clips per split, ok/failed/pending counts, teacher, sampling, size on disk."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from egocache.cache.rows import ShardFiles, read_small_column, read_strings
from egocache.cache.schema import (
    STATUS_FAILED, STATUS_OK, STATUS_PENDING, array_specs, committed_shards, read_attrs,
)
from egocache.cache.store import CacheStore, open_store
from egocache.errors import CacheError


@dataclass
class CacheInfo:
    """What a cache holds, from its root attributes and its small split/status arrays."""

    path: str
    format_version: int
    num_clips: int
    shard_size: int
    num_shards: int
    done_shards: int
    splits: dict[str, int]
    status: dict[str, dict[str, int]]
    teacher: dict[str, Any]
    heads: dict[str, list[str]]
    feature_dim: int
    sampling: dict[str, Any]
    imu: dict[str, Any]
    source: dict[str, Any]
    frames: dict[str, Any]
    created_by: str
    size_bytes: int | None             # None where not measured (a dataset's view of its cache)
    attrs: dict[str, Any] = field(repr=False)
    teachers: dict[str, dict[str, Any]] = field(default_factory=dict)   # added teachers (teachers/<name>)
    audio: dict[str, Any] | None = None  # the audio section of a cache extracted with audio, else None

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for `egocache info --json`)."""
        return asdict(self)

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        t, s = self.teacher, self.sampling
        lines = [
            f"cache      {self.path}  (format v{self.format_version}, {self.created_by})",
            f"clips      {self.num_clips} in {self.num_shards} shards of {self.shard_size}; "
            f"{self.done_shards}/{self.num_shards} shards committed",
        ]
        for split, counts in self.status.items():
            lines.append(f"  {split:<10} {self.splits[split]:>7} clips: {counts['ok']} ok, "
                         f"{counts['failed']} failed, {counts['pending']} pending")
        heads = ", ".join(f"{h} ({len(names)} classes)" for h, names in self.heads.items())
        sha = t.get("checkpoint_sha256")
        lines += [
            f"teacher    {t['name']}: feature {self.feature_dim}-d, heads {heads}{_outputs(t)}; checkpoint "
            f"sha256 {sha[:12] + '...' if sha else 'none'}",
            f"sampling   T={s['t']} stride={s['stride']} clip {s['clip_seconds']:.3f} s; "
            f"{len(s['positions'])} stored frames {self.frames['codec']} {s['frame_size']}px at "
            f"{[round(p, 3) for p in s['positions']]}; N -> index {s['frames_for_n']}; "
            f"first/last {s['first_last']}",
            f"imu        {self.imu['window']} samples at {self.imu['rate_hz']} Hz, channels "
            f"{self.imu['channels']}, centred={self.imu['centred']}",
            *([f"audio      {self.audio['freq_bins']}x{self.audio['frames']} log spectrogram per clip "
               f"({self.audio['rate_hz']} Hz mono, STFT {self.audio['n_fft']}/{self.audio['hop']} "
               f"{self.audio['window']}), {self.audio['dtype']}"] if self.audio else []),
            f"source     {self.source['dataset']} (manifest sha256 "
            f"{str(self.source['manifest_sha256'])[:12]}...)",
        ]
        for name, g in self.teachers.items():
            gt, counts = g["teacher"], g["status"]
            ok = sum(c["ok"] for c in counts.values())
            failed = sum(c["failed"] for c in counts.values())
            lines.append(f"teacher +  {name} ({gt['name']}): feature {gt['feature_dim']}-d, heads "
                         f"{', '.join(gt['heads'])}{_outputs(gt)}; {g['done_shards']}/{self.num_shards} shards, "
                         f"{ok} ok, {failed} failed")
        if self.size_bytes is not None:
            lines.append(f"size       {self.size_bytes / 1e6:.1f} MB on disk "
                         f"({self.size_bytes / max(self.num_clips, 1) / 1e3:.1f} KB/clip)")
        return "\n".join(lines)


def _outputs(teacher: dict[str, Any]) -> str:
    """', aux NAME (size), ...; per video NAME (size)' for a teacher section with auxiliary outputs."""
    aux = teacher.get("aux") or {}
    per_video = teacher.get("aux_video") or {}
    text = f", aux {', '.join(f'{a} ({d})' for a, d in aux.items())}" if aux else ""
    return text + (f"; per video {', '.join(f'{v} ({aux[src]})' for v, src in per_video.items())}" if per_video else "")


def disk_size(location: str | os.PathLike[str] | CacheStore) -> int:
    """Bytes of all files of the cache (or folder) at `location`."""
    return sum(size for _, size in open_store(location).walk())


def status_by_split(split: np.ndarray, status: np.ndarray) -> dict[str, dict[str, int]]:
    """{split: {ok, failed, pending}} counts."""
    out = {}
    for name in sorted(set(split.tolist())):
        st = status[split == name]
        out[name] = {"ok": int((st == STATUS_OK).sum()), "failed": int((st == STATUS_FAILED).sum()),
                     "pending": int((st == STATUS_PENDING).sum())}
    return out


def zarr_group(store: CacheStore) -> Callable[[], Any]:
    """A function opening the cache's zarr group read-only on first call (CacheError if it cannot)."""
    opened: list[Any] = []

    def group() -> Any:
        if not opened:
            import zarr

            try:
                opened.append(zarr.open_group(store.zarr_store(read_only=True), mode="r"))
            except CacheError:
                raise
            except Exception as exc:  # zarr raises several types for a store it cannot open
                raise CacheError(f"{store.url}: cannot be opened as a zarr group ({type(exc).__name__}: "
                                 f"{exc})") from exc
        return opened[0]

    return group


def split_and_status(store: CacheStore, attrs: dict[str, Any], group: Callable[[], Any],
                     files: ShardFiles | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every clip's split (object array of str) and status, read the fastest way the format allows."""
    spec = next(s for s in array_specs(attrs) if s.name == "split")
    return read_strings(store, group, spec), read_small_column(store, group, attrs, "status", files)


def describe_teachers(store: CacheStore, split: np.ndarray) -> dict[str, dict[str, Any]]:
    """{name: {teacher, sampling, done_shards, status by split}} of every teacher added to the cache."""
    from egocache.cache.teachers import group_key, list_groups, read_group_attrs

    out = {}
    for name in list_groups(store):
        gattrs = read_group_attrs(store, name)
        gstore = store.child(group_key(name))
        status = read_small_column(gstore, zarr_group(gstore), gattrs, "status")
        out[name] = {"teacher": gattrs["teacher"], "sampling": gattrs["sampling"],
                     "done_shards": len({i for i in committed_shards(gstore) if i < gattrs["layout"]["num_shards"]}),
                     "status": status_by_split(split, status)}
    return out


def describe(store: CacheStore, attrs: dict[str, Any], split: np.ndarray, status: np.ndarray, *,
             measure_size: bool = True) -> CacheInfo:
    """The CacheInfo of a cache from its attributes and its split and status columns."""
    lay, teacher = attrs["layout"], attrs["teacher"]
    split = np.asarray(split)
    names = sorted(set(split.tolist()))
    return CacheInfo(
        path=store.url, format_version=attrs["format_version"], num_clips=lay["num_clips"],
        shard_size=lay["shard_size"], num_shards=lay["num_shards"],
        done_shards=len({i for i in committed_shards(store) if i < lay["num_shards"]}),
        splits={str(k): int((split == k).sum()) for k in names}, status=status_by_split(split, status),
        teacher=teacher, heads=teacher["heads"], feature_dim=teacher["feature_dim"],
        sampling=attrs["sampling"], imu=attrs["imu"], source=attrs["source"], frames=attrs["frames"],
        created_by=attrs["created_by"], size_bytes=disk_size(store) if measure_size else None, attrs=attrs,
        teachers=describe_teachers(store, split),
        audio=attrs.get("audio") if isinstance(attrs.get("audio"), dict) else None)


def open_cache(path: str | os.PathLike[str] | CacheStore) -> CacheInfo:
    """Open a cache read-only and describe it; CacheFormatError if its format version is not one we read."""
    store = open_store(path)
    attrs = read_attrs(store)
    group = zarr_group(store)
    split, status = split_and_status(store, attrs, group)
    return describe(store, attrs, split, status)
