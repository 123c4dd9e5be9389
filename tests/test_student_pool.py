"""student/pool.py: runs trained N at a time, in order of their dependencies, failures named; torch_threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from egocache.core.device import torch_threads
from egocache.errors import EgocacheError
from egocache.student.pool import RunJob, train_pool


def _job(tmp_path: Path, name: str, after: str | None = None) -> RunJob:
    """A run whose cache does not exist: it fails as soon as it starts."""
    return RunJob(name, {"cache": str(tmp_path / "missing.zarr"), "out": str(tmp_path / name), "variant": "visonly",
                         "device": "cpu"}, after=after)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_run_is_named_in_one_line(tmp_path: Path, workers: int) -> None:
    done: list[str] = []
    with pytest.raises(EgocacheError, match=r"^demo student bad: .*missing\.zarr") as err:
        train_pool([_job(tmp_path, "bad")], workers=workers, threads=1, logs=tmp_path / "logs",
                   done=lambda job, *_: done.append(job.name), what="demo student")
    assert "\n" not in str(err.value) and not done
    assert (tmp_path / "logs" / "bad.log").exists()


def test_a_run_waiting_for_an_unknown_or_circular_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EgocacheError, match="b after nowhere: no such run"):
        train_pool([_job(tmp_path, "a"), _job(tmp_path, "b", after="nowhere")], workers=2, threads=1,
                   logs=tmp_path, done=lambda *_: None)
    with pytest.raises(EgocacheError, match="wait for each other"):
        train_pool([_job(tmp_path, "a", after="b"), _job(tmp_path, "b", after="a")], workers=2, threads=1, logs=tmp_path,
                   done=lambda *_: None)


def test_torch_threads_sets_and_restores_the_count() -> None:
    import os

    import torch

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    with torch_threads(0):
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == before
