"""Device choice, written once for every command: "auto", "cpu", "cuda" or "cuda:K" -> torch.device."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from typing import Iterator

from egocache.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:K"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: str) -> str:
    """`name` if it is a device egocache accepts, else ConfigError naming the choices."""
    if not isinstance(name, str) or not _PATTERN.fullmatch(name):
        raise ConfigError(f"--device: expected {DEVICE_CHOICES}, got {name!r}")
    return name


def resolve_device(name: str = "auto", *, local_rank: int | None = None) -> "torch.device":  # noqa: F821
    """The torch.device for `name`: "auto" is cuda when torch sees a GPU, else cpu.

    Under torchrun (`local_rank` given) "auto" and "cuda" take cuda:LOCAL_RANK. Asking for CUDA on a
    machine without it is a ConfigError, never a silent fall-back to the CPU.
    """
    import torch

    check_device_name(name)
    cuda_ok = torch.cuda.is_available()
    if name == "auto":
        name = "cuda" if cuda_ok else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not cuda_ok:
        raise ConfigError(f"--device {name}: torch sees no CUDA device on this machine")
    if name == "cuda":
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    dev = torch.device(name)
    if dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with `n` torch CPU threads (0: one per CPU this process may use), then restore the
    previous count. Big matrix products (a teacher, the ResNet-18) gain from every core; the students' small
    IMU-encoder steps were measured fastest on 1 (docs/benchmarks.md)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
