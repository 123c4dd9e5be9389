"""The CLI on a cache in object storage (moto's S3 server on 127.0.0.1): info, verify and train-student
read s3:// URLs as they read folders, and a student trained from S3 equals one trained from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cache_factory import make_test_cache
from egocache.cache import open_store
from egocache.cli import main


def upload(local: str, url: str) -> str:
    """Copy a cache folder to `url`, file by file."""
    src, dst = open_store(local), open_store(url)
    for key, _ in src.walk():
        dst.write(key, src.read(key))
    return url


@pytest.fixture(scope="module")
def caches(tmp_path_factory, s3_server):
    local = make_test_cache(tmp_path_factory.mktemp("s3cli"), n_train=32, n_val_segments=4)
    return local, upload(local, f"s3://{s3_server.bucket()}/students/cache.zarr")


def test_info_and_verify_read_a_cache_on_s3(caches):
    local, url = caches
    runner = CliRunner()
    a, b = (json.loads(runner.invoke(main, ["info", p, "--json"]).output) for p in (url, local))
    assert a["path"] == url and a["status"] == b["status"] and a["size_bytes"] == b["size_bytes"]
    result = runner.invoke(main, ["verify", url])
    assert result.exit_code == 0 and result.output.startswith(f"OK {url}"), result.output


def test_train_student_from_s3_equals_training_from_disk(caches, tmp_path):
    local, url = caches
    metrics = []
    for name, cache in (("s3", url), ("disk", local)):
        out = tmp_path / name
        result = CliRunner().invoke(main, [
            "train-student", "--cache", cache, "--out", str(out), "--variant", "egodistill", "--frames", "1",
            "--stage", "distill", "--epochs", "1", "--batch-size", "8", "--num-workers", "2", "--no-progress"])
        assert result.exit_code == 0, result.output
        metrics.append(json.loads(Path(out, "metrics.json").read_text()))
    s3, disk = metrics
    assert s3["losses"] == disk["losses"] and s3["heads"] == disk["heads"]
