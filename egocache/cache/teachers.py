"""Teachers added to a cache: one zarr group per teacher, `teachers/<name>`, sharing the cache's clips.

The cache's root holds the clip table, frames, IMU and the outputs of the teacher it was extracted
with (as in formats 1 and 2). `egocache extract --teacher B --cache C` adds teacher B as the group
`teachers/B`: its features, logits per head (the cache heads it has) and any auxiliary outputs it
declares, with its own per-clip status and error, over the same rows and shard boundaries. A group
is laid out like a cache root (arrays, `_egocache/zarr.json` control record, `_egocache/shards/<i>`
done markers), so the writer's commit, verify's checks and the direct row reads serve it unchanged
through a store rooted at the group. Frames and IMU are never rewritten; the root's lease guards
the group's shards too.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from egocache import __version__
from egocache.cache.lease import LeaseToken
from egocache.cache.schema import (
    CONTROL_GROUP, FORMAT_VERSION, STATUS_FAILED, STATUS_OK, TEACHER_FORMAT, TEACHERS_GROUP, load_json_object,
    read_attrs,
)
from egocache.cache.store import CacheStore, open_store
from egocache.cache.writer import (ShardedWriter, check_teacher_outputs, commit_shard, create_arrays, finish_attrs,
                                   group_meta, write_meta)
from egocache.errors import CacheError, CacheFormatError

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


def group_key(name: str) -> str:
    """Key prefix of teacher `name`'s group in the cache."""
    return f"{TEACHERS_GROUP}/{name}"


def check_group_name(name: str, root_teacher: str) -> None:
    """CacheError unless `name` is a usable group name different from the cache's own teacher."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise CacheError(f"--teacher-name {name!r}: a teacher group name is letters, digits, '_', '.', '-'")
    if name == root_teacher:
        raise CacheError(f"--teacher-name {name!r}: the cache's own teacher has this name; name the added "
                         "teacher differently (--teacher-name)")


def list_groups(location: str | CacheStore) -> list[str]:
    """Names of the teachers added to the cache (groups whose metadata exists), sorted."""
    store = open_store(location)
    return sorted(n for n in store.list(TEACHERS_GROUP) if store.exists(f"{group_key(n)}/zarr.json"))


def read_group_attrs(location: str | CacheStore, name: str) -> dict[str, Any]:
    """The attributes of teacher group `name`; CacheError naming the group if it is absent or not one."""
    store = open_store(location)
    key = f"{group_key(name)}/zarr.json"
    if not store.exists(key):
        have = list_groups(store)
        raise CacheError(f"{store.url}: no teacher {name!r} in this cache; its teachers: "
                         f"{', '.join([read_attrs(store)['teacher']['name'], *have])}")
    attrs = load_json_object(store, key).get("attributes")
    if not isinstance(attrs, dict) or attrs.get("format") != TEACHER_FORMAT:
        raise CacheFormatError(f"{store.where(key)}: not an egocache teacher group (format != {TEACHER_FORMAT!r})")
    missing = [k for k in ("layout", "teacher", "sampling") if k not in attrs]
    if missing:
        raise CacheFormatError(f"{store.where(key)}: teacher group attributes lack sections {missing}")
    return attrs


def teacher_store(location: str | CacheStore, name: str = "") -> tuple[CacheStore, dict[str, Any]]:
    """(store, attributes) of the cache's own teacher (the root; `name` empty) or of added teacher `name`."""
    root = open_store(location)
    return (root.child(group_key(name)), read_group_attrs(root, name)) if name else (root, read_attrs(root))


def group_attrs(root: dict[str, Any], teacher: dict[str, Any], sampling: dict[str, Any]) -> dict[str, Any]:
    """Attributes of a new teacher group over the cache with root attributes `root` (JSON-normalised)."""
    lay = root["layout"]
    out = {"format": TEACHER_FORMAT, "format_version": FORMAT_VERSION, "created_by": f"egocache {__version__}",
           "layout": {k: lay[k] for k in ("num_clips", "shard_size", "num_shards", "clip_table_sha256")},
           "teacher": teacher, "sampling": sampling}
    return finish_attrs(out, "teacher group attrs")


class TeacherGroupWriter(ShardedWriter):
    """Writes shards of one teacher group; like CacheWriter, safe from many processes on disjoint shards."""

    def __init__(self, root: CacheStore, name: str, attrs: dict[str, Any]) -> None:
        """Bind to a created group (use create() or open())."""
        super().__init__(root.child(group_key(name)), attrs)
        self.root, self.name = root, name

    @classmethod
    def create(cls, cache: str | CacheStore, name: str, *, teacher: dict[str, Any], sampling: dict[str, Any]
               ) -> TeacherGroupWriter:
        """Create group `name` with every array at its final length, or reopen the same group to resume.

        `teacher` is the group's teacher section (name, config, checkpoint, heads {head: [class names]},
        feature_dim, aux {name: size}); its heads must be heads of the cache with the same classes.
        """
        root = open_store(cache)
        rattrs = read_attrs(root)
        check_group_name(name, rattrs["teacher"]["name"])
        cache_heads = rattrs["teacher"]["heads"]
        wrong = [h for h, names in teacher["heads"].items() if cache_heads.get(h) != names]
        if wrong or not teacher["heads"]:
            raise CacheError(f"{root.url}: teacher {name!r} has heads {sorted(teacher['heads'])}, which must be "
                             f"a non-empty subset of the cache's heads {sorted(cache_heads)} with the same classes "
                             f"(differs in {wrong})")
        final = group_attrs(rattrs, teacher, sampling)
        writer = cls(root, name, final)
        store = writer.store
        if store.exists("zarr.json"):
            existing = read_group_attrs(root, name)
            if store.exists(f"{CONTROL_GROUP}/zarr.json"):
                differs = sorted(k for k in set(existing) | set(final)
                                 if k != "created_by" and existing.get(k) != final.get(k))
                if differs:
                    raise CacheError(f"{root.url}: teacher group {name!r} exists with different attributes "
                                     f"(differs in {differs}); choose another --teacher-name or delete "
                                     f"{root.where(group_key(name))}")
                return cls(root, name, existing)
        if not root.exists(f"{TEACHERS_GROUP}/zarr.json"):
            write_meta(root, f"{TEACHERS_GROUP}/zarr.json", group_meta({}))
        create_arrays(store, final, {})
        return writer

    @classmethod
    def open(cls, cache: str | CacheStore, name: str) -> TeacherGroupWriter:
        """Open a created group for writing shards (in a worker process)."""
        root = open_store(cache)
        attrs = read_group_attrs(root, name)
        writer = cls(root, name, attrs)
        if not writer.store.exists(f"{CONTROL_GROUP}/zarr.json"):
            raise CacheError(f"{writer.store.url}: teacher group creation did not finish; run the extraction again")
        return writer

    def write_shard(self, i: int, features: np.ndarray, logits: dict[str, np.ndarray],
                    aux: dict[str, np.ndarray], status: np.ndarray, errors: list[str],
                    lease: LeaseToken | None = None) -> None:
        """Write shard `i` of the group's outputs and status, then commit it (under the root's `lease`)."""
        rows = self.shard_slice(i)
        m, where = rows.stop - rows.start, f"{self.store.url} shard {i}"
        st = np.asarray(status, dtype=np.int8)
        errs = np.asarray([str(e) for e in errors], dtype=np.str_)
        if st.shape != (m,) or len(errs) != m or not np.isin(st, (STATUS_OK, STATUS_FAILED)).all():
            raise CacheError(f"{where}: need {m} statuses of 1 (ok) or 2 (failed) and {m} error strings")
        if ((st == STATUS_FAILED) & (errs == "")).any() or ((st == STATUS_OK) & (errs != "")).any():
            raise CacheError(f"{where}: failed clips need a reason and ok clips an empty error string")
        data: dict[str, Any] = {"status": st, "error": errs,
                                **check_teacher_outputs(where, self.attrs["teacher"], m, features, logits, aux, st)}
        commit_shard(self.store, self.specs, i, rows, data, lease, lease_store=self.root)
