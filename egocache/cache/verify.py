"""Check a cache end to end: attributes, array metadata, completeness, per-shard checksums, statuses.

Every problem is reported with the array, file, shard or attribute it concerns, so a user knows what
to re-extract (a corrupt or missing shard file, a shard without its done marker) or restore. What is
checked:
- root attributes: the sections the format needs, their consistency with each other (frame positions
  and the indices each N uses, first/last, IMU channels), and their hash recorded at creation;
- every array's complete zarr metadata (shape, dtype, byte order, codecs and their settings, chunk
  and shard shapes, shard index location) against the one definition in schema.create_array, and its
  hash recorded at creation;
- the clip table's checksums and content hash; each committed shard's done marker (its own hash, its
  rows) and the checksum of every file it covers; statuses and failure reasons of intact shards;
- every added teacher group (teachers/<name>): its layout and heads against the cache's, then the same
  metadata, control, shard and status checks within the group.
Caches written before a check existed lack its record; that check is then skipped and said so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from egocache.cache.info import zarr_group
from egocache.cache.rows import RowReader, ShardFiles
from egocache.cache.schema import (
    CONTROL_GROUP, IMU_CHANNELS, STATUS_FAILED, STATUS_OK, ArraySpec, array_specs, attrs_sha256, chunk_key,
    direct_rows, expected_array_metadata, load_json_object, marker_digest, read_array, read_attrs, read_marker,
    table_sha256,
)
from egocache.cache.selections import selection_positions
from egocache.cache.store import CacheStore, open_store
from egocache.cache.teachers import group_key, list_groups, read_group_attrs
from egocache.errors import CacheFormatError, EgocacheError

@dataclass
class VerifyReport:
    """Outcome of verify_cache: ok, the problems found (one line each) and what was checked."""

    path: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for `egocache verify --json`)."""
        return asdict(self)

    def summary(self) -> str:
        """One line per problem, or one line saying what passed."""
        notes = [f"  note: {n}" for n in self.notes]
        if self.ok:
            c = self.checked
            return "\n".join([f"OK {self.path}: {c.get('arrays', 0)} arrays, {c.get('shards_committed', 0)} shards, "
                              f"{c.get('files_hashed', 0)} files checksummed ({c.get('bytes_hashed', 0) / 1e6:.1f} MB)",
                              *notes])
        return "\n".join([f"FAILED {self.path}: {len(self.problems)} problem(s)"] +
                         [f"  - {p}" for p in self.problems] + notes)


def _diff(have: Any, want: Any, where: str) -> list[str]:
    """The leaves where two JSON documents differ, as 'where: have != want' lines."""
    if isinstance(have, dict) and isinstance(want, dict):
        return [line for k in sorted(set(have) | set(want))
                for line in _diff(have.get(k, "<absent>"), want.get(k, "<absent>"), f"{where}.{k}".lstrip("."))]
    if (isinstance(have, list) and isinstance(want, list) and len(have) == len(want)
            and any(isinstance(x, dict) for x in have + want)):
        return [line for i, (a, b) in enumerate(zip(have, want)) for line in _diff(a, b, f"{where}[{i}]")]
    return [] if have == want else [f"{where} is {have!r}, expected {want!r}"]


def _check_array_meta(store: CacheStore, spec: ArraySpec, version: int) -> list[str]:
    """Problems with one array's zarr.json against format `version`'s definition of that array."""
    meta_path = store.where(f"{spec.name}/zarr.json")
    try:
        meta = load_json_object(store, f"{spec.name}/zarr.json")
    except CacheFormatError as exc:
        return [f"array {spec.name}: {exc}"]
    want = expected_array_metadata(spec, version)
    meta, want = ({k: v for k, v in d.items() if k != "attributes"} for d in (meta, want))
    return [f"array {spec.name}: {line} ({meta_path})" for line in _diff(meta, want, "")]


def check_attr_consistency(attrs: dict[str, Any]) -> list[str]:
    """Problems of root attributes that disagree with each other (each line names the attribute)."""
    out = []
    sam, imu = attrs.get("sampling", {}), attrs.get("imu", {})
    positions = sam.get("positions", [])
    if positions != sorted(set(positions)) or any(not 0.0 <= p <= 1.0 for p in positions):
        out.append(f"sampling.positions {positions} must be distinct fractions in [0, 1], sorted")
    for n, idx in (sam.get("frames_for_n") or {}).items():
        want = [(k + 0.5) / int(n) for k in range(int(n))]
        got = [positions[i] if isinstance(i, int) and 0 <= i < len(positions) else None for i in idx]
        if len(idx) != int(n) or any(g is None or abs(g - w) > 1e-9 for g, w in zip(got, want)):
            out.append(f"sampling.frames_for_n[{n}] = {idx} does not index the positions {want} of {n} frames")
    for sel, by_n in (sam.get("frame_sets") or {}).items():
        for n, idx in by_n.items():
            try:
                want = selection_positions(sel, int(n))
            except ValueError as exc:
                out.append(f"sampling.frame_sets[{sel}][{n}]: {exc}")
                continue
            got = [positions[i] if isinstance(i, int) and 0 <= i < len(positions) else None for i in idx]
            if len(idx) != len(want) or any(g is None or abs(g - w) > 1e-9 for g, w in zip(got, want)):
                out.append(f"sampling.frame_sets[{sel}][{n}] = {idx} does not index the positions {want}")
    fl = sam.get("first_last")
    if fl is not None and ([positions[i] if 0 <= i < len(positions) else None for i in fl] != [0.0, 1.0]):
        out.append(f"sampling.first_last = {fl} does not index positions 0 and 1")
    if imu.get("channels") != list(IMU_CHANNELS):
        out.append(f"imu.channels {imu.get('channels')} is not the stored order {IMU_CHANNELS}")
    au = attrs.get("audio")
    if isinstance(au, dict):     # caches extracted with audio: the spectrogram's shape follows from its STFT
        try:
            bins, frames = int(au["n_fft"]) // 2 + 1, 1 + (int(au["window_samples"]) - int(au["n_fft"])) // int(au["hop"])
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            out.append(f"audio section lacks or garbles the STFT settings ({type(exc).__name__}: {exc})")
        else:
            if (au.get("freq_bins"), au.get("frames")) != (bins, frames):
                out.append(f"audio.freq_bins/frames {au.get('freq_bins')}/{au.get('frames')} do not follow from "
                           f"n_fft {au['n_fft']}, hop {au['hop']} and {au['window_samples']} samples ({bins}/{frames})")
    heads = attrs.get("teacher", {}).get("heads", {})
    if not heads or not all(isinstance(v, list) and v for v in heads.values()):
        out.append("teacher.heads must name the classes of at least one head")
    return out


def _check_hash(store: CacheStore, key: str, want: str, what: str, checked: dict[str, int]) -> list[str]:
    """Problem if file `key` is missing or its sha256 differs from the recorded one."""
    file = store.where(key)
    try:
        size = store.size(key)
        digest = store.sha256(key)
    except FileNotFoundError:
        return [f"{what}: missing file {file}"]
    checked["files_hashed"] += 1
    checked["bytes_hashed"] += size
    if digest != want:
        return [f"{what}: checksum mismatch in {file} (file corrupted or changed after commit)"]
    return []


def _check_control(store: CacheStore, attrs: dict[str, Any], specs: list[ArraySpec], notes: list[str]
                   ) -> tuple[list[str], dict[str, Any] | None]:
    """The control record written at creation: hashes of the attributes and of every array's metadata."""
    control = store.where(f"{CONTROL_GROUP}/zarr.json")
    try:
        record = load_json_object(store, f"{CONTROL_GROUP}/zarr.json").get("attributes", {})
        record["table_checksums"]
    except (CacheFormatError, KeyError, AttributeError) as exc:
        return [f"cache creation incomplete or control metadata corrupt ({control}): {exc}"], None
    out = []
    if "attrs_sha256" in record:
        if record["attrs_sha256"] != attrs_sha256(attrs):
            out.append(f"root attributes ({store.where('zarr.json')}) were changed after the cache was "
                       "created (their hash differs from the one recorded at creation)")
    else:
        notes.append("no attribute or metadata hashes recorded (cache written by an older egocache): "
                     "attributes and metadata checked by structure only")
    for s in specs:
        want = record.get("array_metadata_sha256", {}).get(s.name)
        meta = f"{s.name}/zarr.json"
        if want is not None and store.exists(meta) and store.sha256(meta) != want:
            out.append(f"array {s.name}: metadata {store.where(meta)} was changed after the cache was created")
    return out, record


def _check_table(store: CacheStore, attrs: dict[str, Any], specs: list[ArraySpec], sums: dict[str, str],
                 checked: dict[str, int]) -> list[str]:
    """Checksums of the create-time clip table arrays and their recorded content hash."""
    out = []
    table_specs = [s for s in specs if not s.per_shard]
    for s in table_specs:
        out += _check_hash(store, chunk_key(s, 0), sums.get(s.name, ""), f"array {s.name}", checked)
    if out:
        return out
    group = zarr_group(store)()
    table = {s.name: read_array(group, s.name, store.url) for s in table_specs}
    if table_sha256(table) != attrs["layout"]["clip_table_sha256"]:
        out.append("clip table content does not match layout.clip_table_sha256 in the root attributes")
    if len(set(table["clip_id"].tolist())) != len(table["clip_id"]):
        out.append("clip_id values are not unique")
    return out


def _check_shards(store: CacheStore, attrs: dict[str, Any], specs: list[ArraySpec],
                  checked: dict[str, int]) -> tuple[list[str], dict[int, dict[str, Any]]]:
    """Markers, file checksums of each committed shard; returns problems and the intact shards' markers."""
    lay = attrs["layout"]
    out, intact = [], {}
    for i in range(lay["num_shards"]):
        rows = [i * lay["shard_size"], min((i + 1) * lay["shard_size"], lay["num_clips"])]
        where = f"shard {i} (rows {rows[0]}-{rows[1] - 1})"
        try:
            marker = read_marker(store, i)
        except EgocacheError as exc:
            out.append(f"{where}: {exc}")
            continue
        if marker is None:
            out.append(f"{where}: incomplete, no done marker (extraction did not finish; rerun it to resume)")
            continue
        checked["shards_committed"] += 1
        done = {k: marker.get(k) for k in ("shard", "rows", "checksums", "ok", "failed")}
        if "marker_sha256" in marker and marker["marker_sha256"] != marker_digest(done):
            out.append(f"{where}: its done marker is corrupt (its content does not match its own hash); "
                       "re-extract the shard (delete the marker and rerun extract)")
            continue
        bad = [] if marker.get("rows") == rows else [f"{where}: done marker covers rows {marker.get('rows')}"]
        for s in specs:
            bad += _check_hash(store, chunk_key(s, i), marker["checksums"].get(s.name, ""),
                               f"{where} array {s.name}", checked)
        out += bad
        if not bad:
            intact[i] = marker
    return out, intact


def _shard_status(store: CacheStore, attrs: dict[str, Any], shards: list[int]) -> dict[int, np.ndarray]:
    """The status rows of each of `shards` (format 2: one direct read of each shard file)."""
    spec = next(s for s in array_specs(attrs) if s.name == "status")
    size, n = attrs["layout"]["shard_size"], attrs["layout"]["num_clips"]
    if not direct_rows(spec, int(attrs["format_version"])):
        group = zarr_group(store)()
        return {i: read_array(group, "status", store.url, slice(i * size, min((i + 1) * size, n))) for i in shards}
    files = ShardFiles(store)
    try:
        reader = RowReader(files, attrs, ["status"])
        out = {i: np.empty(size, np.int8) for i in shards}
        files.read_into([(chunk_key(spec, i), 0, out[i], size * reader.row_bytes["status"]) for i in shards])
    finally:
        files.close()
    return {i: v[:min((i + 1) * size, n) - i * size] for i, v in out.items()}


def _check_status(store: CacheStore, attrs: dict[str, Any], intact: dict[int, dict[str, Any]]) -> list[str]:
    """Committed rows are ok (1) or failed (2), failed rows have a reason, counts match the markers."""
    size, n = attrs["layout"]["shard_size"], attrs["layout"]["num_clips"]
    statuses = _shard_status(store, attrs, sorted(intact))
    group = zarr_group(store)
    out = []
    for i, marker in intact.items():
        st = statuses[i]
        if not np.isin(st, (STATUS_OK, STATUS_FAILED)).all():
            out.append(f"shard {i}: status values {sorted(set(st.tolist()))} in a committed shard")
        if (st == STATUS_FAILED).any():     # a reason is needed only where a clip failed
            err = read_array(group(), "error", store.url, slice(i * size, min((i + 1) * size, n)))
            if ((st == STATUS_FAILED) & (err == "")).any():
                out.append(f"shard {i}: failed clips without a reason in array error")
        if (int((st == STATUS_OK).sum()), int((st == STATUS_FAILED).sum())) != (marker.get("ok"), marker.get("failed")):
            out.append(f"shard {i}: status counts differ from its done marker")
    return out


def verify_cache(path: str | os.PathLike[str] | CacheStore) -> VerifyReport:
    """Check attributes, metadata, completeness and per-shard checksums of the cache at `path` (a folder
    or an fsspec URL)."""
    report = VerifyReport(path=str(path) if isinstance(path, CacheStore) else os.fspath(path), ok=False)
    checked = report.checked
    checked.update(arrays=0, shards=0, shards_committed=0, files_hashed=0, bytes_hashed=0)
    try:
        _verify(open_store(path), report)
    except (EgocacheError, OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        report.problems.append(f"cannot be checked further: {type(exc).__name__}: {exc}")
    report.ok = not report.problems
    return report


def _verify(store: CacheStore, report: VerifyReport) -> None:
    """The checks of verify_cache, in order; stops where later checks would read unreliable data."""
    problems, checked = report.problems, report.checked
    try:
        attrs = read_attrs(store)
        specs = array_specs(attrs)
    except (EgocacheError, KeyError, TypeError, ValueError) as exc:
        problems.append(f"root attributes: {exc}")
        return
    checked["arrays"], checked["shards"] = len(specs), attrs["layout"]["num_shards"]
    problems += [f"root attribute {line}" for line in check_attr_consistency(attrs)]
    record = _check_stored(store, attrs, specs, report, checked)
    if problems or record is None:
        return
    problems += _check_table(store, attrs, specs, record["table_checksums"], checked)
    problems += _check_committed(store, attrs, specs, checked)
    problems += _check_videos(store, store, attrs)
    for name in list_groups(store):
        problems += [f"teacher {name}: {line}" for line in _check_group(store, attrs, name, report.notes, checked)]


def _check_stored(store: CacheStore, attrs: dict[str, Any], specs: list[ArraySpec], report: VerifyReport,
                  checked: dict[str, int]) -> dict[str, Any] | None:
    """Array metadata and control record of a cache root or teacher group (problems into the report);
    the control record, or None if it is unreadable."""
    for s in specs:
        report.problems.extend(_check_array_meta(store, s, int(attrs["format_version"])))
    control, record = _check_control(store, attrs, specs, report.notes)
    report.problems.extend(control)
    return record


def _check_committed(store: CacheStore, attrs: dict[str, Any], specs: list[ArraySpec],
                     checked: dict[str, int]) -> list[str]:
    """Done markers and checksums of every shard, then the statuses of the intact ones."""
    problems, intact = _check_shards(store, attrs, [s for s in specs if s.per_shard], checked)
    return problems + (_check_status(store, attrs, intact) if intact else [])


def _check_group(root: CacheStore, attrs: dict[str, Any], name: str, notes: list[str],
                 checked: dict[str, int]) -> list[str]:
    """Problems of teacher group `name`: attributes against the root's, metadata, control, shards."""
    try:
        gattrs = read_group_attrs(root, name)
        specs = array_specs(gattrs)
    except (EgocacheError, KeyError, TypeError, ValueError) as exc:
        return [f"attributes: {exc}"]
    lay = attrs["layout"]
    out = [f"attribute layout.{k} is {gattrs['layout'].get(k)!r}, the cache's is {lay[k]!r}"
           for k in ("num_clips", "shard_size", "num_shards", "clip_table_sha256") if gattrs["layout"].get(k) != lay[k]]
    out += [f"head {h} is not a head of the cache with the same classes" for h, names in gattrs["teacher"]["heads"].items()
            if attrs["teacher"]["heads"].get(h) != names]
    if out:
        return out
    store = root.child(group_key(name))
    sub = VerifyReport(path=store.url, ok=False)
    checked["arrays"] += len(specs)
    record = _check_stored(store, gattrs, specs, sub, checked)
    notes += [f"teacher {name}: {n}" for n in sub.notes]
    if sub.problems or record is None:
        return sub.problems
    return _check_committed(store, gattrs, specs, checked) + _check_videos(root, store, gattrs)


def _check_videos(root: CacheStore, store: CacheStore, attrs: dict[str, Any]) -> list[str]:
    """Problems of the per-video outputs of the group at `store` (none if its teacher declares none)."""
    from egocache.cache import videos

    return videos.check(root, store, attrs)


def ensure_verified(path: str, *, skip: bool = False, warn: Any = print) -> None:
    """Refuse (CacheError) a cache that fails verification; with `skip`, warn instead and go on.

    train-student, benchmark and export call it before reading anything else from a cache.
    """
    from egocache.errors import CacheError

    report = verify_cache(path)
    if report.ok:
        return
    shown = "; ".join(report.problems[:3]) + (f" (+{len(report.problems) - 3} more)" if len(report.problems) > 3 else "")
    if skip:
        warn(f"warning: {path} fails verification ({shown}); going on because verification was skipped")
        return
    raise CacheError(f"{path}: fails verification: {shown}; run `egocache verify {path}` "
                     "(--skip-verify goes on anyway)")
