"""What a cache holds: format version, root attributes, clip table and the arrays with their layout.

Writer, reader, verify and export all derive array names, shapes, dtypes and file locations from
here, so the format is defined in one place (documented in docs/cache-format.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from egocache.cache.store import CacheStore, open_store
from egocache.errors import CacheError, CacheFormatError

FORMAT_NAME = "egocache"
FORMAT_VERSION = 2                       # 2: per-shard numeric arrays uncompressed (rows read directly)
READ_VERSIONS = (1, 2)                   # 1: the same arrays zstd-compressed (read whole, into memory)
STATUS_PENDING, STATUS_OK, STATUS_FAILED = 0, 1, 2
FRAME_CODECS = ("raw", "jpeg")
IMU_CHANNELS = ("accl_x", "accl_y", "accl_z", "gyro_x", "gyro_y", "gyro_z")   # the stored channel order

CONTROL_GROUP = "_egocache"              # zarr group holding the done markers, never data
MARKER_GROUP = f"{CONTROL_GROUP}/shards"  # one zarr group per committed shard: <MARKER_GROUP>/<i>
TEACHERS_GROUP = "teachers"              # teachers added to a cache: one group each, teachers/<name>
TEACHER_FORMAT = "egocache-teacher"      # `format` of a teacher group's attributes

TABLE_STR = ("clip_id", "segment_id", "video_id", "split")
TABLE_F64 = ("start_s", "end_s")

REQUIRED_ATTRS: dict[str, tuple[str, ...]] = {
    "teacher": ("name", "config", "checkpoint_sha256"),
    "sampling": ("clip_seconds",),
    "imu": ("rate_hz", "window", "channels", "centred"),
    "source": ("dataset", "manifest_sha256"),
}


@dataclass(frozen=True)
class ArraySpec:
    """One array of the cache: name, full shape, zarr data type, chunk rows, whether written per shard."""

    name: str
    shape: tuple[int, ...]
    dtype: str          # zarr v3 data_type name: float32, int64, int8, uint8, string, variable_length_bytes
    chunk_rows: int     # rows per chunk (per shard for per-shard arrays; the whole table otherwise)
    per_shard: bool     # written by write_shard (True) or once at create time (False)
    description: str


def validate_clip_table(clips: dict[str, Any], heads: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Check a clip table (equal lengths, unique clip ids, one label per head) and return numpy arrays."""
    wanted = [*TABLE_STR, *TABLE_F64, *(f"label_{h}" for h in heads)]
    missing = [k for k in wanted if k not in clips]
    extra = [k for k in clips if k not in wanted]
    if missing or extra:
        raise CacheError(f"clip table: missing columns {missing}, unexpected columns {extra}")
    out: dict[str, np.ndarray] = {}
    for k in TABLE_STR:
        out[k] = np.asarray([str(v) for v in clips[k]], dtype=np.str_)
    for k in TABLE_F64:
        out[k] = np.asarray(clips[k], dtype=np.float64)
    for h in heads:
        out[f"label_{h}"] = np.asarray(clips[f"label_{h}"], dtype=np.int64)
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise CacheError(f"clip table: columns have different lengths {lengths}")
    n = lengths["clip_id"]
    if n == 0:
        raise CacheError("clip table is empty: nothing to cache")
    uniq, counts = np.unique(out["clip_id"], return_counts=True)
    if (counts > 1).any():
        raise CacheError(f"clip table: duplicate clip_id {uniq[counts > 1][:5].tolist()}")
    for h, names in heads.items():
        lab = out[f"label_{h}"]
        bad = (lab < -1) | (lab >= len(names))
        if bad.any():
            raise CacheError(f"clip table: label_{h} of clip {out['clip_id'][bad][0]!r} is "
                             f"{lab[bad][0]}, outside -1..{len(names) - 1}")
    return out


def table_sha256(table: dict[str, np.ndarray]) -> str:
    """Hash of a validated clip table's content, to tell a resume from a different extraction."""
    h = hashlib.sha256()
    for k in sorted(table):
        h.update(k.encode())
        h.update(json.dumps(table[k].tolist()).encode())
    return h.hexdigest()


SAMPLING_ALIASES = {"t": "teacher_frames", "stride": "teacher_stride_at_30fps"}


def check_attr_sections(attrs: dict[str, Any]) -> None:
    """Refuse caller attrs that lack a section or key a student needs (listed in REQUIRED_ATTRS)."""
    missing = [f"{sec}.{key}" for sec, keys in REQUIRED_ATTRS.items()
               for key in keys if not isinstance(attrs.get(sec), dict) or key not in attrs[sec]]
    sampling = attrs.get("sampling") if isinstance(attrs.get("sampling"), dict) else {}
    missing += [f"sampling.{key} (or sampling.{alias})" for key, alias in SAMPLING_ALIASES.items()
                if key not in sampling and alias not in sampling]
    if missing:
        raise CacheError(f"cache attrs lack required keys {missing} (see docs/internals.md, Cache)")


def merge_section(section: str, given: dict[str, Any], derived: dict[str, Any]) -> dict[str, Any]:
    """Merge writer-derived keys into a caller's attrs section, refusing a conflicting value."""
    out = dict(given)
    for key, value in derived.items():
        if key in out and json.loads(json.dumps(out[key])) != json.loads(json.dumps(value)):
            raise CacheError(f"cache attrs: {section}.{key} is {out[key]!r} but the cache is "
                             f"written with {value!r}")
        out[key] = value
    return out


def teacher_output_specs(attrs: dict[str, Any]) -> list[ArraySpec]:
    """The teacher outputs of a cache root or a teacher group: feature, logits per head, auxiliary outputs."""
    n, rows, teacher = attrs["layout"]["num_clips"], attrs["layout"]["shard_size"], attrs["teacher"]
    return [
        ArraySpec("features", (n, teacher["feature_dim"]), "float32", rows, True, "teacher clip feature"),
        *(ArraySpec(f"logits_{h}", (n, len(names)), "float32", rows, True,
                    f"teacher logits of head {h} (never softmax)") for h, names in teacher["heads"].items()),
        *(ArraySpec(f"aux_{a}", (n, int(dim)), "float32", rows, True, f"teacher auxiliary output {a}")
          for a, dim in (teacher.get("aux") or {}).items()),
    ]


def _group_specs(attrs: dict[str, Any]) -> list[ArraySpec]:
    """Every array of a teacher group (teachers/<name>): its outputs and its own per-clip status."""
    n, rows = attrs["layout"]["num_clips"], attrs["layout"]["shard_size"]
    return [*teacher_output_specs(attrs),
            ArraySpec("status", (n,), "int8", rows, True, "0 pending, 1 ok, 2 failed (this teacher)"),
            ArraySpec("error", (n,), "string", rows, True, "reason this teacher failed a clip, empty if ok")]


def array_specs(attrs: dict[str, Any]) -> list[ArraySpec]:
    """Every array of a cache described by its root attributes, per-shard arrays first (or of a teacher
    group, by the group's attributes)."""
    if attrs.get("format") == TEACHER_FORMAT:
        return _group_specs(attrs)
    lay, sam, imu, fr = attrs["layout"], attrs["sampling"], attrs["imu"], attrs["frames"]
    n, rows = lay["num_clips"], lay["shard_size"]
    heads = attrs["teacher"]["heads"]
    k, s = len(sam["positions"]), sam["frame_size"]
    frames = (ArraySpec("frames", (n, k, s, s, 3), "uint8", rows, True,
                        "RGB uint8 frames at sampling.positions")
              if fr["codec"] == "raw" else
              ArraySpec("frames", (n, k), "variable_length_bytes", rows, True,
                        "one JPEG (bytes) per clip and sampling position"))
    specs = [
        *teacher_output_specs(attrs),
        ArraySpec("imu", (n, imu["window"], len(imu["channels"])), "float32", rows, True,
                  "IMU window, channels in imu.channels order"),
        *([ArraySpec("imu_present", (n,), "int8", rows, True,
                     "1 if the clip has its IMU window, 0 if not (imu rows then zero)")] if "mode" in imu else []),
        *audio_specs(attrs),
        frames,
        ArraySpec("status", (n,), "int8", rows, True, "0 pending, 1 ok, 2 failed"),
        ArraySpec("error", (n,), "string", rows, True, "reason a clip failed, empty if ok"),
        *(ArraySpec(k_, (n,), "string", n, False, f"clip table: {k_}") for k_ in TABLE_STR),
        *(ArraySpec(k_, (n,), "float64", n, False, f"clip table: {k_} (seconds)") for k_ in TABLE_F64),
        *(ArraySpec(f"label_{h}", (n,), "int64", n, False, f"label of head {h}, -1 unknown")
          for h in heads),
    ]
    return specs


def audio_specs(attrs: dict[str, Any]) -> list[ArraySpec]:
    """The audio arrays of a cache extracted with audio (root attribute section `audio`), else none."""
    au = attrs.get("audio")
    if not isinstance(au, dict):
        return []
    n, rows = attrs["layout"]["num_clips"], attrs["layout"]["shard_size"]
    return [ArraySpec("audio", (n, int(au["freq_bins"]), int(au["frames"])), str(au.get("dtype", "float32")), rows,
                      True, "log-magnitude spectrogram of the clip's audio window (audio section); zero where "
                            "audio_present is 0"),
            ArraySpec("audio_present", (n,), "int8", rows, True,
                      "1 if the clip has its audio window, 0 if not (audio rows then zero)")]


def chunk_key(spec: ArraySpec, chunk: int) -> str:
    """Key (relative to the cache root) of the file holding chunk (shard) `chunk` of an array."""
    return "/".join([spec.name, "c", str(chunk), *(["0"] * (len(spec.shape) - 1))])


def chunk_file(path: str, spec: ArraySpec, chunk: int) -> str:
    """Local path of the file holding chunk (shard) `chunk` along the clip axis of an array."""
    return os.path.join(path, *chunk_key(spec, chunk).split("/"))


def file_sha256(path: str) -> str:
    """sha256 of a local file's bytes (the stored, encoded chunk or shard)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_json_object(location: str | CacheStore, key: str | None = None, *, missing: str = "missing"
                     ) -> dict[str, Any]:
    """A JSON metadata file holding an object (a local path, or `key` of a store); CacheFormatError
    naming the file if it is not one."""
    store, key = (open_store(os.path.dirname(location)), os.path.basename(location)) if key is None else (
        open_store(location), key)
    where = store.where(key)
    try:
        obj = json.loads(store.read(key))
    except FileNotFoundError as exc:
        raise CacheFormatError(f"{where}: {missing}") from exc
    except (OSError, ValueError) as exc:
        raise CacheFormatError(f"{where}: unreadable or corrupt JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise CacheFormatError(f"{where}: not a JSON object")
    return obj


def read_attrs(location: str | os.PathLike[str] | CacheStore) -> dict[str, Any]:
    """Root attributes of the cache at `location`, after checking it is an egocache cache this code reads."""
    store = open_store(location)
    path = store.url
    if store.local and not os.path.isdir(path):
        raise CacheError(f"{path}: no cache here (not a directory)")
    if not store.local and not store.exists("zarr.json"):
        raise CacheError(f"{path}: no cache here (no zarr.json)")
    meta = load_json_object(store, "zarr.json", missing=f"missing; {path} is not a zarr v3 store")
    attrs = meta.get("attributes")
    if not isinstance(attrs, dict) or attrs.get("format") != FORMAT_NAME:
        raise CacheFormatError(f"{path}: not an egocache cache (root attribute format != {FORMAT_NAME!r})")
    version = attrs.get("format_version")
    if version not in READ_VERSIONS:
        raise CacheFormatError(f"{path}: cache format version {version!r} (written by "
                               f"{attrs.get('created_by')}) but this egocache reads versions "
                               f"{', '.join(map(str, READ_VERSIONS))}; re-extract the cache or use a "
                               "matching egocache")
    missing = [k for k in ("layout", "teacher", "sampling", "imu", "source", "frames") if k not in attrs]
    if missing:
        raise CacheFormatError(f"{store.where('zarr.json')}: root attributes lack sections {missing}")
    return attrs


def marker_key(shard: int) -> str:
    """Key of shard `shard`'s done marker (a zarr group metadata file whose attributes hold checksums)."""
    return f"{MARKER_GROUP}/{shard}/zarr.json"


def marker_path(path: str, shard: int) -> str:
    """Local path of shard `shard`'s done marker."""
    return os.path.join(path, *marker_key(shard).split("/"))


def read_marker(location: str | CacheStore, shard: int) -> dict[str, Any] | None:
    """A shard's done-marker attributes, or None if the shard was never committed."""
    store = open_store(location)
    key = marker_key(shard)
    try:
        meta = json.loads(store.read(key))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CacheFormatError(f"{store.where(key)}: done marker of shard {shard} is corrupt ({exc})") from exc
    attrs = meta.get("attributes", {}) if isinstance(meta, dict) else {}
    if not isinstance(attrs.get("checksums"), dict) or attrs.get("shard") != shard:
        raise CacheFormatError(f"{store.where(key)}: done marker of shard {shard} lacks its shard index "
                               "or checksums")
    return attrs


def committed_shards(location: str | CacheStore) -> set[int]:
    """Indices of shards whose done marker exists (marker content is checked by verify)."""
    store = open_store(location)
    if store.local:
        root = store.where(MARKER_GROUP)
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return set()
        return {int(n) for n in names if n.isdigit() and os.path.isfile(os.path.join(root, n, "zarr.json"))}
    # object storage has no empty folders: a shard's prefix exists only while its marker does
    return {int(n) for n in store.list(MARKER_GROUP) if n.isdigit()}


def direct_rows(spec: ArraySpec, version: int) -> bool:
    """Whether an array stores its rows uncompressed at fixed offsets of its chunk files (format 2:
    every fixed-size array except frames, per-shard and clip-table alike), so readers read single rows."""
    return version >= 2 and spec.name != "frames" and spec.dtype not in ("string", "variable_length_bytes")


_DIMS = {"features": ("clip", "feature"), "imu": ("clip", "imu_sample", "imu_channel"),
         "audio": ("clip", "audio_frequency", "audio_frame")}


def _dimension_names(name: str, ndim: int) -> tuple[str, ...]:
    """zarr dimension names of array `name` (every array's first dimension is the clip)."""
    if name in _DIMS:
        return _DIMS[name]
    if ndim == 1:
        return ("clip",)
    if name.startswith("aux_"):
        return ("clip", f"{name}_value")
    return ("clip", f"class_{name[len('logits_'):]}")


def create_array(group: Any, spec: ArraySpec, version: int = FORMAT_VERSION) -> Any:
    """Create one array of the cache at its final shape with format `version`'s chunk/shard layout (the
    one definition of every array's zarr metadata: the writer creates with it, verify compares against it)."""
    import zarr

    rest = spec.shape[1:]
    kw: dict[str, Any] = {"dimension_names": _dimension_names(spec.name, len(spec.shape))}
    if spec.name == "frames":
        kw.update(chunks=(1, 1, *rest[1:]), shards=(spec.chunk_rows, *rest), compressors=None)
        if spec.dtype == "uint8":
            kw["dimension_names"] = ("clip", "position", "y", "x", "rgb")
        else:
            kw["dimension_names"] = ("clip", "position")
    else:
        kw["chunks"] = (spec.chunk_rows, *rest)
        if direct_rows(spec, version):
            kw["compressors"] = None      # rows at fixed offsets: readers read single rows of a shard
    dtype: Any = {"variable_length_bytes": zarr.dtype.VariableLengthBytes(), "string": str}.get(
        spec.dtype, spec.dtype)
    with warnings.catch_warnings():
        # vlen-bytes (JPEG frames) has no ratified zarr v3 extension spec yet; zarr-python reads it
        # and docs/cache-format.md says so, so this known warning is not repeated to every user.
        warnings.simplefilter("ignore", zarr.errors.UnstableSpecificationWarning)
        return group.create_array(spec.name, shape=spec.shape, dtype=dtype, overwrite=True, **kw)


def expected_array_metadata(spec: ArraySpec, version: int = FORMAT_VERSION) -> dict[str, Any]:
    """The zarr.json document `create_array` writes for `spec` in format `version` (made in memory)."""
    import zarr
    from zarr.storage import MemoryStore

    store = MemoryStore()
    create_array(zarr.open_group(store, mode="w"), spec, version)
    raw = zarr.core.sync.sync(store.get(f"{spec.name}/zarr.json", prototype=zarr.core.buffer.default_buffer_prototype()))
    return json.loads(raw.to_bytes())


def attrs_sha256(attrs: dict[str, Any]) -> str:
    """Hash of the root attributes (recorded at creation; any later edit changes it)."""
    return hashlib.sha256(json.dumps(attrs, sort_keys=True).encode()).hexdigest()


def marker_digest(done: dict[str, Any]) -> str:
    """Hash a done marker stores of its own content, so a corrupted marker is told from corrupted data."""
    return hashlib.sha256(json.dumps(done, sort_keys=True).encode()).hexdigest()


def read_array(group: Any, name: str, path: str, rows: Any = slice(None)) -> np.ndarray:
    """`group[name][rows]` as numpy, or CacheError naming the array when zarr cannot read or decode it
    (a corrupt chunk, bad metadata): one line, never a codec traceback."""
    try:
        arr = group[name]
        data = arr[rows]
    except KeyError as exc:
        raise CacheFormatError(f"{path}: array {name} is missing; run `egocache verify {path}`") from exc
    except Exception as exc:  # zarr and its codecs raise many types (RuntimeError, ValueError, ...)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CacheError(f"{path}/{name}: cannot be read ({type(exc).__name__}: {reason}); run "
                         f"`egocache verify {path}`") from exc
    if arr.dtype == str or "str" in str(arr.dtype).lower():
        return np.asarray(np.asarray(data).tolist(), dtype=np.str_)
    return np.asarray(data)
