"""cache/lease.py: one extraction per cache on a local folder and on S3 (moto's server on 127.0.0.1):
refused while held, free once released, taken over when expired or when its holder is gone, and a
holder that was taken over can no longer write or commit a shard."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from cache_factory import create, shard_data
from egocache.cache import extraction_lock, open_store
from egocache.cache.lease import (
    LEASE_GROUP, LeaseToken, acquire_lease, check_lease, generations, read_generation,
)
from egocache.cache.schema import marker_key
from egocache.errors import CacheLockedError


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "c.zarr")
    return f"s3://{request.getfixturevalue('s3_bucket')}/c.zarr"


def _plant(location: str, generation: int, **doc) -> None:
    """A lease written by another machine (so it is judged by its expiry alone)."""
    now = time.time()
    body = {"host": "elsewhere", "boot_id": "other-boot", "pid": 1, "pid_start": 1, "holder": "theirs",
            "acquired_unix": now - 100, "renewed_unix": now - 1, "expires_unix": now + 60, "ttl_s": 60, **doc}
    open_store(location).write(f"{LEASE_GROUP}/{generation}/zarr.json", json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"lease": body}}).encode())


def test_a_held_lease_refuses_a_second_extraction_and_is_free_after_release(location):
    with extraction_lock(location) as lease:
        assert generations(open_store(location)) == [lease.token.generation]
        with pytest.raises(CacheLockedError, match="another extraction is writing this cache"):
            with extraction_lock(location):
                pass
        lease.check()
    assert generations(open_store(location)) == []           # released: nothing left behind
    with extraction_lock(location):
        pass


def test_a_live_lease_of_another_machine_is_refused_naming_it(location):
    _plant(location, 3)
    with pytest.raises(CacheLockedError, match=r"pid 1 on elsewhere.*expires.*in \d+ s"):
        acquire_lease(location)


def test_an_expired_lease_is_taken_over_and_its_holder_can_no_longer_commit(location):
    writer = create(location)
    _plant(location, 4, expires_unix=time.time() - 5)
    stale = read_generation(open_store(location), 4)
    assert stale is not None and stale["holder"] == "theirs"
    with extraction_lock(location) as lease:
        assert lease.token.generation == 5 and generations(open_store(location)) == [5]
        old = LeaseToken(4, "theirs")
        with pytest.raises(CacheLockedError, match="no longer holds"):
            check_lease(location, old)
        d = shard_data(writer, 0)
        with pytest.raises(CacheLockedError):
            writer.write_shard(0, d["features"], d["logits"], d["imu"], d["frames"], d["status"], d["errors"],
                               lease=old)
        assert not open_store(location).exists(marker_key(0))
        writer.write_shard(0, d["features"], d["logits"], d["imu"], d["frames"], d["status"], d["errors"],
                           lease=lease.token)
        assert open_store(location).exists(marker_key(0))


def test_a_holder_taken_over_learns_it_at_its_next_check(location):
    lease = acquire_lease(location, ttl=30)
    try:
        _plant(location, lease.token.generation + 1)     # what a taker does once this lease looks expired
        with pytest.raises(CacheLockedError, match="took over"):
            lease.check()
    finally:
        lease.release()
    assert generations(open_store(location)) == [lease.token.generation + 1]   # the taker's lease stays


def test_the_heartbeat_keeps_a_short_lease_alive(location):
    with extraction_lock(location, ttl=1.0) as lease:
        time.sleep(2.5)
        doc = read_generation(open_store(location), lease.token.generation)
        assert doc["expires_unix"] > time.time() and doc["renewed_unix"] > doc["acquired_unix"]
        with pytest.raises(CacheLockedError):
            acquire_lease(location)                    # still held after more than two ttl
        lease.check()


def test_contenders_at_the_same_moment_get_one_lease(location):
    winners, refused = [], []
    start = threading.Barrier(6)

    def contend() -> None:
        start.wait()
        try:
            winners.append(acquire_lease(location))
        except CacheLockedError:
            refused.append(1)

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(winners) == 1 and len(refused) == 5
        assert np.array_equal(generations(open_store(location)), [winners[0].token.generation])
    finally:
        for lease in winners:
            lease.release()
