"""Train several student runs, `workers` at a time, each in its own process: the demo's students and the
ablations' dozens of runs.

A run may name another that must finish first (`after`: visimu's distill stage starts from
egodistill's pretrain checkpoint). With one worker the runs train in this process, in order; with
more, each trains in a spawned process. Every run trains with `threads` torch threads and logs to
LOGS/NAME.log, or (in this process, when no LOGS folder is given) through the caller's `log`. A
run's result does not depend on where it trained (each is seeded from its config). The first failure
stops the pool (runs already started finish) and is raised as one line naming the run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from egocache.errors import EgocacheError


@dataclass(frozen=True)
class RunJob:
    """One student run: its name (log file, messages), TrainConfig values, and the run it waits for."""

    name: str
    config: dict[str, Any]
    after: str | None = None


def train_one(values: dict[str, Any], log_path: str | None, threads: int, progress: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train one run from its TrainConfig values (resuming it if interrupted); return its headline.

    Logs to `log_path` (a worker process) or through `log`.
    """
    from egocache.core.device import torch_threads
    from egocache.student.config import TrainConfig
    from egocache.student.train import train_student

    with torch_threads(threads), contextlib.ExitStack() as stack:
        if log_path is not None:
            f = stack.enter_context(open(log_path, "a", encoding="utf-8"))

            def to_file(msg: str) -> None:
                f.write(msg + "\n")
                f.flush()
            log, progress = to_file, False
        result = train_student(TrainConfig.from_dict(values), resume=True, progress=progress, log=log or print)
    final = result.get("distill") or result.get("pretrain") or {}
    return {k: final.get(k) for k in ("epoch", "top1_acc", "motion_pairs_top1_acc", "losses")}


def train_pool(jobs: list[RunJob], *, workers: int, threads: int,
               done: Callable[[RunJob, dict[str, Any], float], None], logs: Path | None = None,
               log: Callable[[str], None] = print, progress: bool = False, what: str = "run") -> None:
    """Train every job, `workers` at a time, each after the job it names; call done(job, headline, seconds)
    as each finishes. `what` names the runs in errors ("ablation run", "demo student")."""
    names = {j.name for j in jobs}
    unknown = [f"{j.name} after {j.after}" for j in jobs if j.after is not None and j.after not in names]
    if unknown:
        raise EgocacheError(f"{what}s: {', '.join(unknown)}: no such run in this pool")
    ordered = _in_order(jobs)            # refuses runs that wait for each other
    if logs is None and workers > 1:
        raise ValueError("train_pool: runs in worker processes log to files; give `logs`")
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)

    def log_path(job: RunJob) -> str | None:
        return None if logs is None else str(logs / f"{job.name.replace('/', '-')}.log")

    if workers <= 1:
        for job in ordered:
            began = time.perf_counter()
            done(job, _guard(f"{what} {job.name}", lambda: train_one(job.config, log_path(job), threads,
                                                                     progress, log)),
                 time.perf_counter() - began)
        return
    pending, finished = list(jobs), set()
    running: dict[Future, tuple[RunJob, float]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        while pending or running:
            for job in [j for j in pending if j.after is None or j.after in finished][:workers - len(running)]:
                pending.remove(job)
                fut = pool.submit(train_one, job.config, log_path(job), threads)
                running[fut] = (job, time.perf_counter())
            finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                job, began = running.pop(fut)
                result = _guard(f"{what} {job.name}", fut.result)
                finished.add(job.name)
                done(job, result, time.perf_counter() - began)


def _in_order(jobs: list[RunJob]) -> list[RunJob]:
    """The jobs with each after the one it waits for (otherwise in the given order)."""
    ordered: list[RunJob] = []
    left = list(jobs)
    while left:
        ready = [j for j in left if j.after is None or j.after in {o.name for o in ordered}]
        if not ready:
            raise EgocacheError(f"runs {', '.join(j.name for j in left)} wait for each other")
        ordered.append(ready[0])
        left.remove(ready[0])
    return ordered


def _guard(what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """fn(), with any failure re-raised as one line naming the run."""
    try:
        return fn()
    except EgocacheError as exc:
        raise EgocacheError(f"{what}: {exc}") from exc
    except Exception as exc:
        raise EgocacheError(f"{what}: {type(exc).__name__}: {exc}") from exc
