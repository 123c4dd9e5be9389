"""open_cache and `egocache info`: clips per split, status counts, teacher, sampling, size."""

from __future__ import annotations

import json

from click.testing import CliRunner
from cache_factory import create, write

from egocache.cache import open_cache
from egocache.cli import main


def test_info_counts_ok_failed_pending_per_split(tmp_path):
    w = create(tmp_path / "c.zarr")
    write(w, 1, fail_first=True)
    info = open_cache(str(tmp_path / "c.zarr"))
    assert info.splits == {"train": 6, "validation": 4}
    assert info.status == {"train": {"ok": 1, "failed": 1, "pending": 4},
                           "validation": {"ok": 2, "failed": 0, "pending": 2}}
    assert (info.done_shards, info.num_shards, info.shard_size) == (1, 3, 4)
    assert info.teacher["name"] == "tiny" and info.feature_dim == 8 and info.size_bytes > 0
    assert info.frames["codec"] == "raw" and info.sampling["frames_for_n"]["1"] == [4]
    text = info.summary()
    assert "1/3 shards committed" in text and "1 ok, 1 failed, 4 pending" in text


def test_info_cli_human_and_json(tmp_path):
    w = create(tmp_path / "c.zarr")
    for i in range(w.num_shards):
        write(w, i)
    runner = CliRunner()
    human = runner.invoke(main, ["info", str(tmp_path / "c.zarr")])
    assert human.exit_code == 0 and "teacher    tiny" in human.output and "KB/clip" in human.output
    js = runner.invoke(main, ["info", str(tmp_path / "c.zarr"), "--json"])
    got = json.loads(js.output)
    assert got["status"]["train"]["ok"] == 6 and got["heads"]["noun"][0] == "cup"
    assert got["attrs"]["imu"]["channels"][0] == "accl_x"
    missing = runner.invoke(main, ["info", str(tmp_path)])
    assert missing.exit_code == 1 and "not a zarr v3 store" in missing.output
