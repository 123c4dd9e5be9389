"""Per-video teacher outputs: a teacher's per-clip auxiliary output averaged over each video's clips.

A teacher may declare per-video outputs (TeacherSpec.aux_video, {name: the per-clip aux output it
averages}; objects-tiny: video_object_score = the mean object_score of the video, which objects the
video holds). They are stored once per video beside the teacher's per-clip arrays, in its group (the
cache root for the cache's own teacher, teachers/<name> for an added one):

    videos/video_id    (V,)    string    the clip table's videos, sorted
    videos/clips       (V,)    int32     the video's clips this teacher has (status ok) that were averaged
    videos/<name>      (V, A)  float32   mean of the source output over those clips (float64 sums);
                                          zero for a video without any

videos/zarr.json's attributes ({"outputs": {name: source}, "clip_table_sha256"}) are written last, so
an interrupted write leaves no outputs, and every extraction run that ends with every shard done writes
them again from the committed per-clip arrays (it takes seconds). verify recomputes them the same way
and compares bit for bit (the per-clip arrays are checksummed by shard, so nothing else is needed);
CacheDataset gives each clip its video's row, under the teacher's "aux" like a per-clip output, so
`train-student --aux TEACHER/NAME:WEIGHT` distils either kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from egocache.cache.schema import FORMAT_VERSION, ArraySpec, create_array, load_json_object, read_array
from egocache.cache.store import CacheStore
from egocache.errors import CacheError

VIDEOS_GROUP = "videos"
STATUS_OK = 1


@dataclass
class VideoOutputs:
    """A teacher's per-video outputs: sorted video ids, ok clips per video, {name: (V, A) float32}."""

    video_ids: np.ndarray
    clips: np.ndarray
    values: dict[str, np.ndarray]


def declared(teacher: dict[str, Any]) -> dict[str, str]:
    """{per-video output: per-clip source} that a teacher section declares (none for most teachers)."""
    return dict(teacher.get("aux_video") or {})


def compute(root: CacheStore, store: CacheStore, attrs: dict[str, Any]) -> VideoOutputs:
    """The per-video outputs of the group at `store` (attributes `attrs`) of the cache at `root` from its
    committed per-clip arrays, shard by shard (memory: one shard and V x A sums), over the clip table's
    videos."""
    from egocache.cache.info import zarr_group

    outputs = declared(attrs["teacher"])
    video_id = read_array(zarr_group(root)(), "video_id", root.url)
    ids, which = np.unique(np.asarray(video_id, dtype=np.str_), return_inverse=True)
    group = zarr_group(store)()
    rows, n = int(attrs["layout"]["shard_size"]), int(attrs["layout"]["num_clips"])
    dims = {name: int(attrs["teacher"]["aux"][src]) for name, src in outputs.items()}
    sums = {name: np.zeros((len(ids), d), np.float64) for name, d in dims.items()}
    counts = np.zeros(len(ids), np.int64)
    for lo in range(0, n, rows):
        part = slice(lo, min(lo + rows, n))
        ok = read_array(group, "status", store.url, part) == STATUS_OK
        at = which[part][ok]
        np.add.at(counts, at, 1)
        for name, src in outputs.items():
            np.add.at(sums[name], at, read_array(group, f"aux_{src}", store.url, part)[ok].astype(np.float64))
    safe = np.maximum(counts, 1)[:, None]
    return VideoOutputs(ids, counts.astype(np.int32),
                        {name: (s / safe).astype(np.float32) for name, s in sums.items()})


def _specs(out: VideoOutputs) -> list[tuple[ArraySpec, np.ndarray]]:
    """The arrays of videos/ with their data."""
    v = len(out.video_ids)
    return [(ArraySpec("video_id", (v,), "string", max(v, 1), False, "video ids, sorted"), out.video_ids),
            (ArraySpec("clips", (v,), "int32", max(v, 1), False, "ok clips averaged per video"), out.clips),
            *((ArraySpec(name, values.shape, "float32", max(v, 1), False, f"per-video output {name}"), values)
              for name, values in out.values.items())]


def write(root: CacheStore, store: CacheStore, attrs: dict[str, Any]) -> VideoOutputs | None:
    """Compute and store the group's per-video outputs (None if it declares none); the attributes last."""
    import zarr

    from egocache.cache.writer import group_meta, write_meta

    outputs = declared(attrs["teacher"])
    if not outputs:
        return None
    out = compute(root, store, attrs)
    key = f"{VIDEOS_GROUP}/zarr.json"
    try:
        write_meta(store, key, group_meta({}))          # outputs absent until the attributes below
        group = zarr.open_group(store.child(VIDEOS_GROUP).zarr_store(read_only=False), mode="r+")
        for spec, data in _specs(out):
            create_array(group, spec, FORMAT_VERSION)[:] = data
    except Exception as exc:  # zarr and fsspec raise many types; name the cache in one line
        raise store.failure("write the per-video outputs", VIDEOS_GROUP, exc) from exc
    write_meta(store, key, group_meta({"outputs": outputs,
                                       "clip_table_sha256": attrs["layout"]["clip_table_sha256"]}))
    return out


def read(store: CacheStore, attrs: dict[str, Any]) -> VideoOutputs:
    """The stored per-video outputs of the group at `store`; CacheError (one line) if they are not there
    or are not those its attributes declare."""
    from egocache.cache.info import zarr_group

    outputs = declared(attrs["teacher"])
    key = f"{VIDEOS_GROUP}/zarr.json"
    meta = load_json_object(store, key) if store.exists(key) else {}
    saved = meta.get("attributes") or {}
    if saved.get("outputs") != outputs or saved.get("clip_table_sha256") != attrs["layout"]["clip_table_sha256"]:
        raise CacheError(f"{store.url}: the per-video outputs {', '.join(outputs)} are not written (they are, once "
                         "every shard is extracted): run the same extract command again")
    group = zarr_group(store.child(VIDEOS_GROUP))()
    where = f"{store.url}/{VIDEOS_GROUP}"
    return VideoOutputs(read_array(group, "video_id", where), read_array(group, "clips", where),
                        {name: read_array(group, name, where) for name in outputs})


def check(root: CacheStore, store: CacheStore, attrs: dict[str, Any]) -> list[str]:
    """verify's problems with the group's per-video outputs: absent, or not equal to a recomputation."""
    if not declared(attrs["teacher"]):
        return []
    try:
        stored = read(store, attrs)
    except CacheError as exc:
        return [str(exc).split(": ", 1)[-1]]
    want = compute(root, store, attrs)
    if not (np.array_equal(stored.video_ids, want.video_ids) and np.array_equal(stored.clips, want.clips)):
        return [f"{VIDEOS_GROUP}: the videos or their clip counts differ from the clip table and statuses"]
    return [f"{VIDEOS_GROUP}/{name}: differs from the mean of aux_{declared(attrs['teacher'])[name]} over each "
            "video's clips; run the extract command again to rewrite it"
            for name, values in want.values.items() if not np.array_equal(stored.values[name], values)]
