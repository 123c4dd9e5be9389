"""One extraction per cache, on local disks, NFS and object storage alike: a lease with expiry and heartbeat.

`flock` is not reliable on NFS and does not exist on object storage, so the single-writer guarantee
rests on one primitive every store has: creating a file only if it does not exist (`link` locally and
on NFS, a conditional PUT with `If-None-Match: *` on S3). The lease is a sequence of generations, each
a zarr group `_egocache/lease/<g>/zarr.json` whose attributes name the holder and when the lease
expires. The current lease is the highest generation. To acquire, a process creates generation g+1
exclusively, which it may only try when generation g is absent, released, expired, or held by a
process of this machine that no longer runs (so a rerun after kill -9 does not wait); of two
contenders exactly one creates it. The holder renews its own generation every `ttl / 4` seconds from
a background thread; shard tasks check before they write and before they commit that their
generation is still the current one, so a holder that stalled past its expiry and was taken over
stops instead of writing beside the new holder. Expiry compares wall clocks: machines sharing a cache
must keep them within a few seconds of each other (NTP), far below the default 60 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

from egocache.cache.schema import CONTROL_GROUP
from egocache.cache.store import CacheStore, open_store
from egocache.errors import CacheLockedError, EgocacheError, StorageError

LEASE_GROUP = f"{CONTROL_GROUP}/lease"
LEASE_TTL_S = 60.0


@dataclass(frozen=True)
class LeaseToken:
    """Which lease a writer works under: its generation and the holder's id (passed to shard tasks)."""

    generation: int
    holder: str


def _group(attributes: dict[str, Any]) -> bytes:
    """A zarr v3 group document holding `attributes`, as bytes."""
    return (json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}, indent=2) + "\n").encode()


def _key(generation: int) -> str:
    return f"{LEASE_GROUP}/{generation}/zarr.json"


def _boot_id() -> str:
    """This machine's boot id (Linux), so a pid is compared only with pids of the same boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, Linux), to tell a reused pid; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot_id": _boot_id(), "pid": pid, "pid_start": _start_ticks(pid)}


def _holder_gone(doc: dict[str, Any]) -> bool:
    """Whether the lease's holder ran on this machine (same host and boot) and no longer runs."""
    me = _this_process()
    if doc.get("host") != me["host"] or not me["boot_id"] or doc.get("boot_id") != me["boot_id"]:
        return False
    pid = doc.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False      # a live process of another user
    started = _start_ticks(pid)
    return started is not None and doc.get("pid_start") is not None and started != doc["pid_start"]


def generations(store: CacheStore) -> list[int]:
    """Lease generations present in the store, ascending."""
    names = [int(n) for n in store.list(LEASE_GROUP) if n.isdigit()]
    # a local folder can outlive its file (a holder killed while releasing); object prefixes cannot
    return sorted(g for g in names if not store.local or store.exists(_key(g)))


def read_generation(store: CacheStore, generation: int) -> dict[str, Any] | None:
    """The lease document of `generation`, None if it is gone; {} if it is unreadable (a damaged lease)."""
    try:
        meta = json.loads(store.read(_key(generation)))
        return dict(meta["attributes"]["lease"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return {}


def _refusal(store: CacheStore, doc: dict[str, Any], now: float) -> str:
    """The one-line refusal naming who holds the lease and until when."""
    left = float(doc.get("expires_unix", now)) - now
    return (f"{store.url}: another extraction is writing this cache (lease held by pid {doc.get('pid')} on "
            f"{doc.get('host')}, renewed {now - float(doc.get('renewed_unix', now)):.0f} s ago); wait for "
            f"it to finish or stop it; the lease is free as soon as it ends, and a killed holder's lease "
            f"is taken over once it expires (in {max(left, 0):.0f} s, or at once on the same machine)")


class Lease:
    """A held lease: renews itself in a background thread until released; `check` raises once lost."""

    def __init__(self, store: CacheStore, token: LeaseToken, doc: dict[str, Any], ttl: float) -> None:
        self.store, self.token, self.doc, self.ttl = store, token, doc, ttl
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="egocache-lease", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        """Renew every ttl/4 s; a renewal that keeps failing until expiry loses the lease."""
        while not self._stop.wait(self.ttl / 4):
            try:
                if self._superseded():
                    return
                now = time.time()
                doc = {**self.doc, "renewed_unix": now, "expires_unix": now + self.ttl}
                self.store.write(_key(self.token.generation), _group({"lease": doc}))
                self.doc = doc
                self._superseded()
            except EgocacheError as exc:
                if time.time() > float(self.doc["expires_unix"]):
                    self.lost = f"{self.store.url}: the extraction lease could not be renewed before it expired ({exc})"
                    return

    def _superseded(self) -> bool:
        """Whether another process took the lease over (a newer generation, or ours rewritten)."""
        gens = generations(self.store)
        mine = read_generation(self.store, self.token.generation)
        if (gens and gens[-1] > self.token.generation) or not mine or mine.get("holder") != self.token.holder:
            self.lost = (f"{self.store.url}: another extraction took over this cache's lease (this one "
                         "stalled past its expiry); stop this run, the other one continues")
            return True
        return False

    def check(self) -> None:
        """Raise CacheLockedError if the lease was lost (taken over, or not renewed in time)."""
        if self.lost is None:
            self._superseded()
        if self.lost is not None:
            raise CacheLockedError(self.lost)

    def release(self) -> None:
        """Stop renewing and remove the lease if it is still ours (then the next extraction may start)."""
        self._stop.set()
        self._thread.join()
        doc = read_generation(self.store, self.token.generation)
        if doc and doc.get("holder") == self.token.holder:
            self.store.delete(_key(self.token.generation))
            if not generations(self.store):
                self.store.delete(f"{LEASE_GROUP}/zarr.json")
                if self.store.local:
                    for folder in (f"{LEASE_GROUP}/{self.token.generation}", LEASE_GROUP):
                        with contextlib.suppress(OSError):
                            os.rmdir(self.store.where(folder))


def acquire_lease(location: str | CacheStore, *, ttl: float = LEASE_TTL_S, tries: int = 5) -> Lease:
    """Take the cache's extraction lease, or raise CacheLockedError naming the live holder."""
    store = open_store(location)
    for _ in range(tries):
        gens = generations(store)
        now = time.time()
        if gens:
            doc = read_generation(store, gens[-1])
            if doc is None:
                continue                      # released (or taken over) between listing and reading
            live = bool(doc) and float(doc.get("expires_unix", 0)) > now
            if live and not _holder_gone(doc):
                raise CacheLockedError(_refusal(store, doc, now))
        generation = gens[-1] + 1 if gens else 1
        doc = {**_this_process(), "holder": uuid.uuid4().hex, "acquired_unix": now, "renewed_unix": now,
               "expires_unix": now + ttl, "ttl_s": ttl}
        store.write(f"{LEASE_GROUP}/zarr.json", _group({}))
        if store.create_exclusive(_key(generation), _group({"lease": doc})):
            if store.create_exclusive(_key(generation), _group({"lease": doc})):
                # the store overwrote an existing object: it ignores If-None-Match, so no lease holds
                store.delete(_key(generation))
                raise StorageError(f"{store.url}: the storage ignores conditional writes (If-None-Match), "
                                   "so one extraction at a time cannot be guaranteed; use a store that "
                                   "supports them (AWS S3, MinIO, moto) or a local/NFS folder")
            for old in gens:                  # dead generations: their holders are gone or expired
                store.delete(_key(old))
            return Lease(store, LeaseToken(generation, doc["holder"]), doc, ttl)
    raise CacheLockedError(f"{store.url}: another extraction is taking this cache's lease at the same "
                           "time; try again")


def check_lease(location: str | CacheStore, token: LeaseToken) -> None:
    """Raise CacheLockedError unless `token` is still the cache's current lease (shard tasks call it)."""
    store = open_store(location)
    gens = generations(store)
    doc = read_generation(store, token.generation)
    if not doc or doc.get("holder") != token.holder or not gens or gens[-1] != token.generation:
        raise CacheLockedError(f"{store.url}: this extraction no longer holds the cache's lease (another "
                               "extraction took it over); the shard is not written")


@contextlib.contextmanager
def extraction_lock(location: str | CacheStore, *, ttl: float = LEASE_TTL_S) -> Iterator[Lease]:
    """Hold the cache's extraction lease for the block (a second extraction gets CacheLockedError)."""
    lease = acquire_lease(location, ttl=ttl)
    try:
        yield lease
    finally:
        lease.release()
