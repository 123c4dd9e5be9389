"""Training-step time of the demo's big models on 1 torch thread and on one per CPU, side by side.

    python benchmarks/threads.py [--steps 8] [--rounds 3]

The demo trains its teacher (mformer-tiny with 8-px patches, 8 frames at 64 px, batch 16) and pretrains
the students' ResNet-18 (64 px, batch 32) on one thread per CPU and the students on one
(egocache/demo.py). This prints each model's milliseconds per step (fwd + bwd + AdamW) at both thread
counts, rounds interleaved, median over the rounds, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch

from egocache.core.device import torch_threads
from egocache.pipeline.teachers import create_teacher
from egocache.student.resnet import ResNet18


def teacher_step() -> Callable[[], None]:
    """One training step of the demo's teacher on a random batch."""
    torch.manual_seed(0)
    model = create_teacher("mformer-tiny", heads={"verb": 9, "noun": 12}, patch_size=8).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(16, 3, 8, 64, 64)

    def step() -> None:
        loss = sum(v.logsumexp(1).mean() for v in model.forward_head(model.forward_features(x)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def encoder_step() -> Callable[[], None]:
    """One training step of the students' ResNet-18 on a random batch of 64-px images."""
    torch.manual_seed(0)
    model = ResNet18().train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    x = torch.randn(32, 3, 64, 64)

    def step() -> None:
        loss = model(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def ms_per_step(step: Callable[[], None], threads: int, steps: int) -> float:
    """`steps` steps after one warm-up step, on `threads` torch threads (0: one per CPU), in ms per step."""
    with torch_threads(threads):
        step()
        began = time.perf_counter()
        for _ in range(steps):
            step()
        return 1000 * (time.perf_counter() - began) / steps


def main() -> None:
    """Print one line per model."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    print(f"{cpus} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    for name, make in (("teacher mformer-tiny p8, batch 16", teacher_step), ("resnet18 64 px, batch 32", encoder_step)):
        step = make()
        times: dict[int, list[float]] = {1: [], 0: []}
        for _ in range(args.rounds):
            for threads in times:
                times[threads].append(ms_per_step(step, threads, args.steps))
        one, every = statistics.median(times[1]), statistics.median(times[0])
        print(f"{name}: 1 thread {one:.0f} ms/step, {cpus} threads {every:.0f} ms/step, "
              f"speed-up {one / every:.2f} (rounds: {[round(t) for t in times[1]]} / {[round(t) for t in times[0]]})",
              flush=True)


if __name__ == "__main__":
    main()
