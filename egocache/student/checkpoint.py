"""Student checkpoints (`OUT/last.pt`, `OUT/best.pt`, `OUT/pretrain/last.pt`): format, save, load, rebuild.

A checkpoint holds the resolved TrainConfig, the model's build arguments (`model_config`) and weights,
and, in last.pt, the training state a resume needs (optimizer, scheduler, epoch, batch, step, RNG
states); best.pt has the weights, epoch and metrics only (it is evaluated, deployed or an `--init`,
never resumed). Files are written atomically and read with weights_only=True (core/torchio.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from egocache.core.torchio import safe_load, save_atomic
from egocache.errors import CheckpointError

STUDENT_CKPT_FORMAT = 1


def save_student_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write a student checkpoint (the dict `StageRun` builds) atomically."""
    return save_atomic(path, {"format": STUDENT_CKPT_FORMAT, **state})


def load_student_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A student checkpoint dict; CheckpointError naming the file if unreadable, unsafe or foreign."""
    state = safe_load(path, "student")
    if not isinstance(state, dict) or state.get("format") != STUDENT_CKPT_FORMAT:
        raise CheckpointError(f"{path}: not an egocache student checkpoint (format {STUDENT_CKPT_FORMAT})")
    for key in ("model_config", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: student checkpoint lacks {key!r}")
    return state


def student_from_checkpoint(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """(the student in eval mode with the checkpoint's weights, the checkpoint dict)."""
    from egocache.student.models import build_student

    state = load_student_checkpoint(path)
    try:
        student = build_student(**state["model_config"])
        student.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the student they describe "
                              f"({str(exc).splitlines()[0]})") from exc
    return student.eval(), state
