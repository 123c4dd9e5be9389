"""torch checkpoint files: saved atomically, loaded with weights_only=True (never running code).

Both checkpoint kinds (teacher: pipeline/teachers/checkpoint.py, student: student/checkpoint.py) go
through these two functions, so every file egocache reads is unpickled the safe way and a refused or
unreadable file is one CheckpointError line naming it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from egocache.core.files import write_atomic
from egocache.errors import CheckpointError

_TORCH_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue",
                      "In PyTorch 2.6", "(1) In PyTorch", "(2) Alternatively", "WeightsUnpickler error:")


def _refusal(exc: Exception) -> str:
    """The specific line of torch's weights-only refusal, without its advice to load unsafely."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    specific = [ln for ln in lines if not ln.startswith(_TORCH_BOILERPLATE) and "weights_only" not in ln]
    text = "; ".join(specific) or type(exc).__name__
    return text.removeprefix("Unsupported global: ")


def safe_load(path: str | os.PathLike[str], what: str) -> Any:
    """The object saved at `path` (a `what` checkpoint), unpickled with weights_only=True on the CPU.

    A pickle that would run code is refused, never executed: CheckpointError says so in one line.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such {what} checkpoint file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{p}: refused: the {what} checkpoint holds more than tensors and plain data "
                              f"(code or a custom class: {_refusal(exc)}); egocache never runs code from "
                              "a checkpoint") from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError, TypeError) as exc:
        raise CheckpointError(f"{p}: unreadable {what} checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from exc


def save_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """torch.save `obj` to `path` through a temporary file and a rename (never half-written)."""
    return write_atomic(path, lambda tmp: torch.save(obj, tmp))
