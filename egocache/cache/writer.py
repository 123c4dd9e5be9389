"""Create a cache at its final size, write whole shards, commit each with an atomic done marker.

zarr's sharding rewrites a whole shard on any partial write, without a lock, so two writers on one
shard lose data. Hence: every array is created at its final length up front, all per-shard arrays
share the same boundaries along the clip axis, one writer writes one shard in one aligned write per
array, and only then is the shard's done marker (with sha256 checksums of the files just written)
written atomically. A rerun writes only shards without a marker. The cache may be a local folder or
an fsspec URL (store.py); one extraction at a time holds its lease (lease.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from egocache import __version__
from egocache.cache.frames import encode_frames_shard, encode_jpeg_frames
from egocache.cache.lease import LeaseToken, check_lease, extraction_lock
from egocache.cache.schema import (
    CONTROL_GROUP, FORMAT_NAME, ArraySpec, FORMAT_VERSION, FRAME_CODECS, MARKER_GROUP, STATUS_FAILED, STATUS_OK,
    SAMPLING_ALIASES, array_specs, attrs_sha256, check_attr_sections, chunk_key, committed_shards,
    create_array, marker_digest, marker_key, merge_section, read_attrs, table_sha256, validate_clip_table,
)
from egocache.cache.store import CacheStore, open_store
from egocache.errors import CacheError

__all__ = ["CacheWriter", "extraction_lock", "write_meta"]


SHARD_SIZE = 256        # clips per shard unless told otherwise


def write_meta(store: CacheStore, key: str, obj: Any) -> None:
    """Write a zarr metadata document atomically (keys in the order zarr writes them)."""
    store.write(key, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def group_meta(attributes: dict[str, Any]) -> dict[str, Any]:
    """zarr v3 group metadata document holding `attributes`."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _only_a_lease(store: CacheStore) -> bool:
    """Whether everything under the root belongs to an extraction lease (taken before creation)."""
    return all(key.startswith(f"{CONTROL_GROUP}/lease/") for key, _ in store.walk())


def _final_attrs(attrs: dict[str, Any], *, n: int, shard_size: int, table_sha: str, feature_dim: int,
                 heads: dict[str, list[str]], frame_size: int, frame_positions: list[float],
                 frames_for_n: dict[int, list[int]], first_last: list[int] | None,
                 frame_codec: str, jpeg_quality: int, aux: dict[str, int]) -> dict[str, Any]:
    """Root attributes: the caller's sections plus everything the writer knows (JSON-normalised)."""
    check_attr_sections(attrs)
    k = len(frame_positions)
    used = [i for idx in frames_for_n.values() for i in idx] + list(first_last or [])
    if any(not 0 <= i < k for i in used) or not frames_for_n:
        raise CacheError(f"frames_for_n {frames_for_n} / first_last {first_last} must index the "
                         f"{k} frame_positions")
    if first_last is not None and len(first_last) != 2:
        raise CacheError(f"first_last must be [first, last] stored indices, got {first_last}")
    final = {key: value for key, value in attrs.items() if key not in ("teacher", "sampling")}
    final.update({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "created_by": f"egocache {__version__}",
        "layout": {"num_clips": n, "shard_size": shard_size, "num_shards": -(-n // shard_size),
                   "clip_table_sha256": table_sha},
        "teacher": merge_section("teacher", attrs["teacher"],
                                 {"feature_dim": feature_dim, "heads": heads, **({"aux": aux} if aux else {})}),
        "sampling": merge_section("sampling", attrs["sampling"], {
            **{key: attrs["sampling"].get(key, attrs["sampling"].get(alias))
               for key, alias in SAMPLING_ALIASES.items()},
            "frame_size": frame_size, "positions": [float(p) for p in frame_positions],
            "frames_for_n": {str(nf): [int(i) for i in idx] for nf, idx in frames_for_n.items()},
            "first_last": None if first_last is None else [int(i) for i in first_last]}),
        "frames": {"codec": frame_codec, "quality": jpeg_quality if frame_codec == "jpeg" else None,
                   "colorsubsampling": "444" if frame_codec == "jpeg" else None},
    })
    return finish_attrs(final, "cache attrs")


def finish_attrs(attrs: dict[str, Any], what: str) -> dict[str, Any]:
    """`attrs` JSON-normalised (CacheError naming `what` if it cannot be) with the `arrays` listing its
    format implies: the last step of a cache's or a teacher group's attributes."""
    try:
        out = json.loads(json.dumps(attrs))
    except (TypeError, ValueError) as exc:
        raise CacheError(f"{what} must be JSON-serialisable: {exc}") from exc
    out["arrays"] = {s.name: s.description for s in array_specs(out)}
    return out


def create_arrays(store: CacheStore, final: dict[str, Any], table: dict[str, np.ndarray]) -> None:
    """Write the root metadata `final`, create every array it describes at its final length (filling the
    create-time ones from `table`) and record the control hashes: the one creation of a cache or of a
    teacher group (a store rooted at teachers/<name>)."""
    import zarr

    try:
        write_meta(store, "zarr.json", group_meta(final))
        group = zarr.open_group(store.zarr_store(read_only=False), mode="r+")
        with zarr.config.set({"array.write_empty_chunks": True}):
            for spec in array_specs(final):
                arr = create_array(group, spec, FORMAT_VERSION)
                if not spec.per_shard:
                    arr[:] = table[spec.name]
    except Exception as exc:  # zarr and fsspec raise many types; name the cache in one line
        raise store.failure("create the cache", "", exc) from exc
    sums = {s.name: store.sha256(chunk_key(s, 0)) for s in array_specs(final) if not s.per_shard}
    meta_sums = {s.name: store.sha256(f"{s.name}/zarr.json") for s in array_specs(final)}
    write_meta(store, f"{MARKER_GROUP}/zarr.json", group_meta({}))
    write_meta(store, f"{CONTROL_GROUP}/zarr.json", group_meta({
        "table_checksums": sums, "array_metadata_sha256": meta_sums, "attrs_sha256": attrs_sha256(final)}))


def commit_shard(store: CacheStore, specs: list[ArraySpec], i: int, rows: slice, data: dict[str, Any],
                 lease: LeaseToken | None, lease_store: CacheStore | None = None) -> None:
    """Write shard `i` of every per-shard array in `specs` (one aligned write each, `data` keyed by array
    name, with its "status"), then its done marker with the files' checksums; with `lease`, only while
    that extraction lease is the current one of `lease_store` (the cache root; default `store`)."""
    import zarr

    marker = marker_key(i)
    lease_store = lease_store or store
    if lease is not None:
        check_lease(lease_store, lease)
    store.delete(marker)  # a rewrite must never leave the old checksums claiming the new data
    spec_name = ""
    try:
        with zarr.config.set({"array.write_empty_chunks": True}):
            group = zarr.open_group(store.zarr_store(read_only=False), mode="r+")
            for spec in specs:
                spec_name = spec.name
                if spec.name == "frames":   # written whole, each clip's frames together (encode_frames_shard)
                    store.write(chunk_key(spec, i), encode_frames_shard(data["frames"], spec.chunk_rows))
                else:
                    group[spec.name][rows] = data[spec.name]
    except Exception as exc:  # OSError locally; fsspec/botocore types on object storage
        target = chunk_key(next(s for s in specs if s.name == spec_name), i) if spec_name else ""
        raise store.failure(f"write shard {i} ({spec_name or 'open'}) of", target, exc) from exc
    sums = {}
    for spec in specs:
        key = chunk_key(spec, i)
        if not store.exists(key):
            raise CacheError(f"{store.where(key)}: shard {i} of array {spec.name} was not written")
        sums[spec.name] = store.sha256(key)
    st = data["status"]
    done = {"shard": i, "rows": [rows.start, rows.stop], "checksums": sums,
            "ok": int((st == STATUS_OK).sum()), "failed": int((st == STATUS_FAILED).sum())}
    if lease is not None:
        check_lease(lease_store, lease)
    write_meta(store, marker, group_meta({**done, "marker_sha256": marker_digest(done),
                                           "written_by": f"egocache {__version__}"}))


def check_finite(where: str, arrays: dict[str, np.ndarray], status: np.ndarray) -> None:
    """CacheError naming the array and row if an ok row of any of `arrays` holds inf/NaN."""
    ok = status == STATUS_OK
    for name, values in arrays.items():
        bad = ok & ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise CacheError(f"{where}: {name} of ok row {int(np.flatnonzero(bad)[0])} is not finite; an ok "
                             "clip must hold finite values (fail the clip instead)")


def check_teacher_outputs(where: str, teacher: dict[str, Any], m: int, features: np.ndarray,
                          logits: dict[str, np.ndarray], aux: dict[str, np.ndarray], status: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """A shard's teacher outputs checked against a `teacher` attributes section (heads, feature size,
    auxiliary outputs; shapes; finite in ok rows), keyed by array name."""
    heads, aux_dims = teacher["heads"], teacher.get("aux") or {}
    if set(logits) != set(heads):
        raise CacheError(f"{where}: logits for heads {sorted(logits)}, the teacher has {sorted(heads)}")
    if set(aux) != set(aux_dims):
        raise CacheError(f"{where}: auxiliary outputs {sorted(aux)}, the teacher declares {sorted(aux_dims)}")
    data = {"features": np.asarray(features, dtype=np.float32),
            **{f"logits_{h}": np.asarray(v, dtype=np.float32) for h, v in logits.items()},
            **{f"aux_{a}": np.asarray(v, dtype=np.float32) for a, v in aux.items()}}
    want = {"features": (m, teacher["feature_dim"]), **{f"logits_{h}": (m, len(n)) for h, n in heads.items()},
            **{f"aux_{a}": (m, int(d)) for a, d in aux_dims.items()}}
    for name, shape in want.items():
        if data[name].shape != shape:
            raise CacheError(f"{where}: {name} has shape {data[name].shape}, expected {shape}")
    check_finite(where, data, status)
    return data


class ShardedWriter:
    """What a writer of a cache root or of a teacher group shares: its store, its attributes' per-shard
    arrays and shard layout, and which shards are committed."""

    def __init__(self, store: CacheStore, attrs: dict[str, Any]) -> None:
        """Bind to the created store `store` with attributes `attrs`."""
        self.store = store
        self.path = store.url
        self.attrs = attrs
        self.specs = [s for s in array_specs(attrs) if s.per_shard]
        self.shard_size: int = attrs["layout"]["shard_size"]
        self.num_clips: int = attrs["layout"]["num_clips"]

    @property
    def num_shards(self) -> int:
        """Number of shards along the clip axis."""
        return int(self.attrs["layout"]["num_shards"])

    def shard_slice(self, i: int) -> slice:
        """Rows (clips) of shard `i`."""
        if not 0 <= i < self.num_shards:
            raise CacheError(f"{self.path}: shard {i} out of range 0..{self.num_shards - 1}")
        return slice(i * self.shard_size, min((i + 1) * self.shard_size, self.num_clips))

    def done_shards(self) -> set[int]:
        """Shards already committed (their done marker exists); a resumed extraction skips these."""
        return {i for i in committed_shards(self.store) if i < self.num_shards}


class CacheWriter(ShardedWriter):
    """Writes shards of one cache; cheap to construct, safe to use from many processes on disjoint shards."""

    @classmethod
    def create(cls, path: str | CacheStore, *, clips: dict[str, Any], feature_dim: int, heads: dict[str, list[str]],
               frame_size: int, frame_positions: list[float], frames_for_n: dict[int, list[int]],
               first_last: list[int] | None, attrs: dict[str, Any], shard_size: int = SHARD_SIZE,
               frame_codec: str = "raw", jpeg_quality: int = 90, aux: dict[str, int] | None = None) -> CacheWriter:
        """Create the store with every array at its final length, or reopen the same cache to resume."""
        if frame_codec not in FRAME_CODECS:
            raise CacheError(f"frame_codec must be one of {FRAME_CODECS}, got {frame_codec!r}")
        if not 1 <= jpeg_quality <= 100 or shard_size < 1:
            raise CacheError(f"jpeg_quality must be 1..100 and shard_size >= 1 "
                             f"(got {jpeg_quality}, {shard_size})")
        bad = [h for h in heads if not re.fullmatch(r"[A-Za-z0-9_]+", h)]
        if bad or not heads:
            raise CacheError(f"head names must be non-empty [A-Za-z0-9_]+, got {list(heads)}")
        table = validate_clip_table(clips, heads)
        final = _final_attrs(attrs, n=len(table["clip_id"]), shard_size=shard_size,
                             table_sha=table_sha256(table), feature_dim=feature_dim, heads=heads,
                             frame_size=frame_size, frame_positions=frame_positions,
                             frames_for_n=frames_for_n, first_last=first_last,
                             frame_codec=frame_codec, jpeg_quality=jpeg_quality, aux=dict(aux or {}))
        store = open_store(path)
        path = store.url
        control = f"{CONTROL_GROUP}/zarr.json"
        if store.exists("zarr.json"):
            existing = read_attrs(store)
            # a cache begun by an older egocache (format 1) resumes in its own format
            differs = sorted(k for k in set(existing) | set(final) if k not in ("created_by", "format_version")
                             and existing.get(k) != final.get(k))
            if store.exists(control):
                if differs:
                    what = ("a different clip table" if "layout" in differs else "different attributes")
                    hint = ("; it was begun without audio: resume it with --audio none" if "audio" in differs
                            and "audio" not in existing else "")
                    raise CacheError(f"{path}: an existing cache has {what} (differs in {differs}); "
                                     f"choose another path or delete it{hint}")
                return cls(store, existing)
        elif not _only_a_lease(store):
            raise CacheError(f"{path}: exists, is not empty and is not a cache; refusing to write")
        create_arrays(store, final, table)
        return cls(store, final)

    @classmethod
    def open(cls, path: str | CacheStore) -> CacheWriter:
        """Open a created cache for writing shards (in a worker process)."""
        store = open_store(path)
        attrs = read_attrs(store)
        if not store.exists(f"{CONTROL_GROUP}/zarr.json"):
            raise CacheError(f"{store.url}: cache creation did not finish; call CacheWriter.create again")
        return cls(store, attrs)

    @property
    def has_imu_flags(self) -> bool:
        """Whether this cache stores a per-clip imu_present flag (caches written since IMU modes exist)."""
        return any(s.name == "imu_present" for s in self.specs)

    @property
    def has_audio(self) -> bool:
        """Whether this cache stores audio spectrograms (and their audio_present flag)."""
        return any(s.name == "audio" for s in self.specs)

    def write_shard(self, i: int, features: np.ndarray, logits: dict[str, np.ndarray], imu: np.ndarray,
                    frames: np.ndarray, status: np.ndarray, errors: list[str],
                    imu_present: np.ndarray | None = None, lease: LeaseToken | None = None,
                    aux: dict[str, np.ndarray] | None = None, *,
                    audio: np.ndarray | None = None, audio_present: np.ndarray | None = None) -> None:
        """Write every per-shard array of shard `i` in one aligned write each, then commit it.

        `imu_present` (0/1 per clip) is required by caches whose IMU section has a `mode` (new caches)
        and refused by older ones; `audio` (spectrograms) and `audio_present` likewise by caches with an
        `audio` section, and refused by the others; `aux` holds the teacher's auxiliary outputs when it
        declares any. With `lease`, the shard is written and committed only while that extraction lease
        is the cache's current one (CacheLockedError otherwise).
        """
        rows = self.shard_slice(i)
        data = self._check_shard(i, rows.stop - rows.start, features, logits, imu, frames, status, errors,
                                 imu_present)
        data.update(check_teacher_outputs(f"{self.path} shard {i}", self.attrs["teacher"], rows.stop - rows.start,
                                          features, logits, aux or {}, data["status"]))
        data.update(self._check_audio(i, rows.stop - rows.start, audio, audio_present, data["status"]))
        commit_shard(self.store, self.specs, i, rows, data, lease)

    def _check_audio(self, i: int, m: int, audio: np.ndarray | None, present: np.ndarray | None,
                     status: np.ndarray) -> dict[str, np.ndarray]:
        """Validate one shard's audio arrays (cast to the cache's dtype) against the schema."""
        where = f"{self.path} shard {i}"
        spec = next((s for s in self.specs if s.name == "audio"), None)
        if (spec is not None) != (audio is not None) or (audio is None) != (present is None):
            raise CacheError(f"{where}: audio and audio_present are "
                             f"{'required' if spec is not None else 'not part of this cache'}")
        if spec is None:
            return {}
        data = {"audio": np.asarray(audio).astype(spec.dtype, copy=False),
                "audio_present": np.asarray(present, dtype=np.int8)}
        if data["audio"].shape != (m, *spec.shape[1:]) or data["audio_present"].shape != (m,):
            raise CacheError(f"{where}: audio has shape {data['audio'].shape} and audio_present "
                             f"{data['audio_present'].shape}, expected {(m, *spec.shape[1:])} and {(m,)}")
        if not np.isin(data["audio_present"], (0, 1)).all():
            raise CacheError(f"{where}: audio_present must be 0 or 1")
        bad = (status == STATUS_OK) & (data["audio_present"] == 1) & ~np.isfinite(
            data["audio"].reshape(m, -1)).all(axis=1)
        if bad.any():
            raise CacheError(f"{where}: audio of ok row {int(np.flatnonzero(bad)[0])} is not finite")
        return data

    def _check_shard(self, i: int, m: int, features: np.ndarray, logits: dict[str, np.ndarray],
                     imu: np.ndarray, frames: np.ndarray, status: np.ndarray,
                     errors: list[str], imu_present: np.ndarray | None) -> dict[str, Any]:
        """Validate one shard's arrays against the schema and return them keyed by array name."""
        where = f"{self.path} shard {i}"
        frames = np.asarray(frames)
        if frames.dtype != np.uint8:
            raise CacheError(f"{where}: frames must be uint8, got {frames.dtype}")
        st = np.asarray(status, dtype=np.int8)
        errs = np.asarray([str(e) for e in errors], dtype=np.str_)
        if len(errs) != m:
            raise CacheError(f"{where}: {len(errs)} error strings for {m} clips")
        if not np.isin(st, (STATUS_OK, STATUS_FAILED)).all():
            raise CacheError(f"{where}: status must be 1 (ok) or 2 (failed), got {sorted(set(st.tolist()))}")
        if ((st == STATUS_FAILED) & (errs == "")).any() or ((st == STATUS_OK) & (errs != "")).any():
            raise CacheError(f"{where}: failed clips need a reason and ok clips an empty error string")
        data: dict[str, Any] = {"imu": np.asarray(imu, dtype=np.float32), "frames": frames,
                                "status": st, "error": errs}
        has_flag = any(s.name == "imu_present" for s in self.specs)
        if has_flag != (imu_present is not None):
            raise CacheError(f"{where}: imu_present is {'required' if has_flag else 'not part of this cache'}")
        if imu_present is not None:
            data["imu_present"] = np.asarray(imu_present, dtype=np.int8)
            if not np.isin(data["imu_present"], (0, 1)).all():
                raise CacheError(f"{where}: imu_present must be 0 or 1")
        sam = self.attrs["sampling"]
        want_frames = (len(sam["positions"]), sam["frame_size"], sam["frame_size"], 3)
        for spec in self.specs:
            if spec.name not in data:
                continue                          # teacher outputs and audio: checked on their own
            want = (m, *want_frames) if spec.name == "frames" else (m, *spec.shape[1:])
            if data[spec.name].shape != want:
                raise CacheError(f"{where}: {spec.name} has shape {data[spec.name].shape}, expected {want}")
        check_finite(where, {"imu": data["imu"]}, st)
        if self.attrs["frames"]["codec"] == "jpeg":
            data["frames"] = encode_jpeg_frames(frames, self.attrs["frames"]["quality"])
        return data
