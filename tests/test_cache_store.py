"""cache/store.py: the same operations on a local folder and on S3 (moto's server on 127.0.0.1), and the
one-line errors for a missing extra, a missing bucket and missing credentials."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from cache_factory import make_cache
from egocache.cache import CacheDataset, CacheWriter, open_cache, open_store, verify_cache
from egocache.cache.store import LocalStore, RemoteStore
from egocache.errors import StorageError


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store(str(tmp_path / "c.zarr"))
    bucket = request.getfixturevalue("s3_bucket")
    return open_store(f"s3://{bucket}/caches/c.zarr")


def test_open_store_tells_paths_from_urls(tmp_path):
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    assert open_store(f"file://{tmp_path}").url == str(tmp_path)
    assert isinstance(open_store("s3://bucket/c.zarr/"), RemoteStore)
    assert open_store("s3://bucket/c.zarr/").url == "s3://bucket/c.zarr"


def test_read_write_list_and_hash_alike_on_both_stores(store):
    assert store.is_empty() and store.list() == []
    store.write("a/b/zarr.json", b'{"x": 1}')
    store.write("a/b/zarr.json", b'{"x": 2}')
    store.write("a/c", b"0123456789")
    assert store.read("a/b/zarr.json") == b'{"x": 2}' and store.exists("a/c") and not store.exists("a/d")
    assert sorted(store.list("a")) == ["b", "c"] and store.list("nothing") == []
    assert store.size("a/c") == 10 and store.read_ranges([("a/c", 2, 5), ("a/c", 8, 10)]) == [b"234", b"89"]
    assert store.sha256("a/c") == hashlib.sha256(b"0123456789").hexdigest()
    assert sorted(store.walk()) == [("a/b/zarr.json", 8), ("a/c", 10)]
    with pytest.raises(FileNotFoundError):
        store.read("a/d")
    store.delete("a/c")
    store.delete("a/c")                                  # deleting what is gone is not an error
    assert not store.exists("a/c") and not store.is_empty()


def test_exclusive_create_has_exactly_one_winner(store):
    wins = []

    def contend(i: int) -> None:
        if store.create_exclusive("lease/1/zarr.json", f"holder {i}".encode()):
            wins.append(i)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and store.read("lease/1/zarr.json") == f"holder {wins[0]}".encode()
    assert not store.create_exclusive("lease/1/zarr.json", b"again")


def test_a_cache_on_s3_is_written_read_and_verified_like_a_local_one(tmp_path, s3_bucket):
    local = make_cache(tmp_path / "c.zarr")
    url = f"s3://{s3_bucket}/c.zarr"
    writer = CacheWriter.open(make_cache(url))
    assert writer.done_shards() == {0, 1, 2}
    assert verify_cache(url).ok, verify_cache(url).problems
    info, want = open_cache(url), open_cache(local)
    assert info.status == want.status and info.done_shards == 3 and info.size_bytes > 0
    a = CacheDataset(url, split="validation", frames=4, first_last=True)[[0, 1, 2, 3]]
    b = CacheDataset(local, split="validation", frames=4, first_last=True)[[0, 1, 2, 3]]
    for key in ("frames", "first_last", "imu", "feature", "row", "segment"):
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    assert a["logits"]["verb"][:, 0].tolist() == [r * 0.5 for r in range(6, 10)]     # rows 6-9: row * 0.5


def test_damage_on_s3_is_named_by_verify(s3_bucket):
    url = f"s3://{s3_bucket}/c.zarr"
    make_cache(url)
    store = open_store(url)
    store.write("features/c/1/0", store.read("features/c/1/0")[:-4])
    report = verify_cache(url)
    assert not report.ok and any("shard 1" in p and "features" in p for p in report.problems), report.problems


def test_a_missing_bucket_is_one_line_naming_it(s3_server):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/c.zarr").read("zarr.json")


CLI = "import sys; from egocache.cli import main; main(sys.argv[1:])"


def _cli(args: list[str], env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", prelude + CLI, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_missing_s3_extra_is_one_line_saying_what_to_install(s3_bucket):
    # s3fs made unimportable in the child: what a user without the s3 extra sees
    result = _cli(["info", f"s3://{s3_bucket}/c.zarr"], dict(os.environ), "sys_modules = __import__('sys').modules; "
                  "sys_modules['s3fs'] = None; ")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert 'pip install "egocache[s3]"' in lines[0] and f"s3://{s3_bucket}/c.zarr" in lines[0]


def test_missing_credentials_are_one_line_saying_what_to_set(s3_bucket, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL=os.environ["AWS_ENDPOINT_URL"], AWS_EC2_METADATA_DISABLED="true",
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_DEFAULT_REGION="us-east-1")
    result = _cli(["verify", f"s3://{s3_bucket}/c.zarr"], env)
    lines = result.stderr.strip().splitlines() + result.stdout.strip().splitlines()
    assert result.returncode == 1 and "no credentials" in result.stderr + result.stdout, (result.stdout, result.stderr)
    assert "AWS_ACCESS_KEY_ID" in (result.stderr + result.stdout) and "Traceback" not in result.stderr
    assert len(lines) <= 2
