"""Check a cache end to end: attributes, array schema, completeness, per-shard checksums, statuses.

Every problem is reported with the array, file or shard it concerns, so a user knows what to
re-extract (a corrupt or missing shard file, a shard without its done marker) or restore.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from egocache.cache.schema import (
    CONTROL_GROUP, STATUS_FAILED, STATUS_OK, ArraySpec, array_specs, chunk_file, file_sha256,
    load_json_object, read_attrs, read_marker, read_strings, table_sha256,
)
from egocache.errors import CacheFormatError, EgocacheError

_CHECK_ERRORS = (EgocacheError, OSError, ValueError, KeyError, TypeError)


@dataclass
class VerifyReport:
    """Outcome of verify_cache: ok, the problems found (one line each) and what was checked."""

    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for `egocache verify --json`)."""
        return asdict(self)

    def summary(self) -> str:
        """One line per problem, or one line saying what passed."""
        if self.ok:
            c = self.checked
            return (f"OK {self.path}: {c.get('arrays', 0)} arrays, {c.get('shards_committed', 0)} shards, "
                    f"{c.get('files_hashed', 0)} files checksummed ({c.get('bytes_hashed', 0) / 1e6:.1f} MB)")
        return "\n".join([f"FAILED {self.path}: {len(self.problems)} problem(s)"] +
                         [f"  - {p}" for p in self.problems])


def _check_array_meta(path: str, spec: ArraySpec) -> list[str]:
    """Problems with one array's zarr.json against the schema (shape, dtype, chunking)."""
    meta_path = os.path.join(path, spec.name, "zarr.json")
    try:
        meta = load_json_object(meta_path)
    except CacheFormatError as exc:
        return [f"array {spec.name}: {exc}"]
    out = []
    if meta.get("node_type") != "array" or meta.get("zarr_format") != 3:
        out.append(f"array {spec.name}: {meta_path} is not zarr v3 array metadata")
    if tuple(meta.get("shape", ())) != spec.shape:
        out.append(f"array {spec.name}: shape {meta.get('shape')} != expected {list(spec.shape)}")
    if meta.get("data_type") != spec.dtype:
        out.append(f"array {spec.name}: dtype {meta.get('data_type')!r} != expected {spec.dtype!r}")
    chunks = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape")
    if chunks != [spec.chunk_rows, *spec.shape[1:]]:
        out.append(f"array {spec.name}: chunk/shard shape {chunks} != expected "
                   f"{[spec.chunk_rows, *spec.shape[1:]]} (shards must share boundaries)")
    return out


def _check_hash(file: str, want: str, what: str, checked: dict[str, int]) -> list[str]:
    """Problem if `file` is missing or its sha256 differs from the recorded one."""
    if not os.path.isfile(file):
        return [f"{what}: missing file {file}"]
    checked["files_hashed"] += 1
    checked["bytes_hashed"] += os.path.getsize(file)
    if file_sha256(file) != want:
        return [f"{what}: checksum mismatch in {file} (file corrupted or changed after commit)"]
    return []


def _check_table(path: str, attrs: dict[str, Any], specs: list[ArraySpec], checked: dict[str, int]) -> list[str]:
    """Checksums of the create-time clip table arrays and their recorded content hash."""
    import zarr

    control = os.path.join(path, CONTROL_GROUP, "zarr.json")
    try:
        sums = load_json_object(control).get("attributes", {})["table_checksums"]
    except (CacheFormatError, KeyError) as exc:
        return [f"cache creation incomplete or control metadata corrupt: {exc}"]
    out = []
    table_specs = [s for s in specs if not s.per_shard]
    for s in table_specs:
        out += _check_hash(chunk_file(path, s, 0), sums.get(s.name, ""), f"array {s.name}", checked)
    if out:
        return out
    group = zarr.open_group(path, mode="r")
    table = {s.name: read_strings(group[s.name]) if s.dtype == "string" else np.asarray(group[s.name][:])
             for s in table_specs}
    if table_sha256(table) != attrs["layout"]["clip_table_sha256"]:
        out.append("clip table content does not match layout.clip_table_sha256 in the root attributes")
    if len(set(table["clip_id"].tolist())) != len(table["clip_id"]):
        out.append("clip_id values are not unique")
    return out


def _check_shards(path: str, attrs: dict[str, Any], specs: list[ArraySpec],
                  checked: dict[str, int]) -> tuple[list[str], list[int]]:
    """Markers, file checksums of each committed shard; returns problems and the intact shards."""
    lay = attrs["layout"]
    out, intact = [], []
    for i in range(lay["num_shards"]):
        rows = [i * lay["shard_size"], min((i + 1) * lay["shard_size"], lay["num_clips"])]
        where = f"shard {i} (rows {rows[0]}-{rows[1] - 1})"
        try:
            marker = read_marker(path, i)
        except EgocacheError as exc:
            out.append(f"{where}: {exc}")
            continue
        if marker is None:
            out.append(f"{where}: incomplete, no done marker (extraction did not finish; rerun it to resume)")
            continue
        checked["shards_committed"] += 1
        bad = [] if marker.get("rows") == rows else [f"{where}: done marker covers rows {marker.get('rows')}"]
        for s in specs:
            bad += _check_hash(chunk_file(path, s, i), marker["checksums"].get(s.name, ""),
                               f"{where} array {s.name}", checked)
        out += bad
        if not bad:
            intact.append(i)
    return out, intact


def _check_status(path: str, attrs: dict[str, Any], intact: list[int]) -> list[str]:
    """Committed rows are ok (1) or failed (2), failed rows have a reason, counts match the markers."""
    import zarr

    group = zarr.open_group(path, mode="r")
    size = attrs["layout"]["shard_size"]
    status, error = np.asarray(group["status"][:]), read_strings(group["error"])
    out = []
    for i in intact:
        sl = slice(i * size, min((i + 1) * size, attrs["layout"]["num_clips"]))
        st, err = status[sl], error[sl]
        marker = read_marker(path, i) or {}
        if not np.isin(st, (STATUS_OK, STATUS_FAILED)).all():
            out.append(f"shard {i}: status values {sorted(set(st.tolist()))} in a committed shard")
        if ((st == STATUS_FAILED) & (err == "")).any():
            out.append(f"shard {i}: failed clips without a reason in array error")
        if (int((st == STATUS_OK).sum()), int((st == STATUS_FAILED).sum())) != (marker.get("ok"), marker.get("failed")):
            out.append(f"shard {i}: status counts differ from its done marker")
    return out


def verify_cache(path: str) -> VerifyReport:
    """Check schema, shapes, dtypes, completeness and per-shard checksums of the cache at `path`."""
    path = os.fspath(path)
    report = VerifyReport(path=path, ok=False)
    checked = report.checked
    checked.update(arrays=0, shards=0, shards_committed=0, files_hashed=0, bytes_hashed=0)
    try:
        attrs = read_attrs(path)
        specs = array_specs(attrs)
    except _CHECK_ERRORS as exc:
        report.problems.append(f"root attributes: {exc}")
        return report
    checked["arrays"], checked["shards"] = len(specs), attrs["layout"]["num_shards"]
    problems = report.problems
    for s in specs:
        problems += _check_array_meta(path, s)
    if problems:
        return report
    try:
        problems += _check_table(path, attrs, specs, checked)
    except _CHECK_ERRORS as exc:
        problems.append(f"clip table unreadable: {exc}")
    shard_problems, intact = _check_shards(path, attrs, [s for s in specs if s.per_shard], checked)
    problems += shard_problems
    if intact:
        try:
            problems += _check_status(path, attrs, intact)
        except _CHECK_ERRORS as exc:
            problems.append(f"status/error arrays unreadable: {exc}")
    report.ok = not problems
    return report
