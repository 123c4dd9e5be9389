"""Teacher checkpoints in the official MotionFormer (slowfast) layout, loaded without running code.

Layout (slowfast/utils/checkpoint.py save_checkpoint): a dict with "model_state" (state dict),
"cfg" (YAML string), "epoch", and optionally "optimizer_state", "scaler". Ours adds "teacher", the
TeacherSpec as a plain dict, so a checkpoint says which teacher, heads and config it holds.
Files are read with torch.load(weights_only=True): a pickle that needs arbitrary code (os.system in a
__reduce__, a custom class) is refused with a CheckpointError instead of being executed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from egocache.core.torchio import safe_load, save_atomic
from egocache.errors import CheckpointError

RESERVED_KEYS = ("model_state", "cfg", "epoch", "teacher")
MAX_LISTED = 20


def read_teacher_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The teacher checkpoint dict at `path`, unpickled with weights_only=True (tensors and plain data)."""
    ckpt = safe_load(path, "teacher")
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    return ckpt


def state_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state of `ckpt` ("model_state", or the dict itself if it is a bare state dict),
    with a DataParallel/DDP "module." prefix stripped from every key that has one."""
    if "model_state" in ckpt:
        state = ckpt["model_state"]
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        state = ckpt
    else:
        raise CheckpointError(f"{source}: no 'model_state' in the checkpoint "
                              f"(keys: {_listing(sorted(map(str, ckpt)))})")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{source}: 'model_state' is not a non-empty state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: 'model_state' has non-tensor entries: {_listing(bad)}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _listing(keys: list[str]) -> str:
    """Comma-separated keys, at most MAX_LISTED of them."""
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
                      ) -> None:
    """Copy `state` into `model` only if keys and shapes match exactly; else list every mismatch."""
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    misshaped = [f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
                 for k in sorted(own.keys() & state.keys()) if state[k].shape != own[k].shape]
    problems = [f"{label} ({len(keys)}): {_listing(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", misshaped)) if keys]
    if problems:
        raise CheckpointError(f"{source}: state dict does not match {type(model).__name__}: "
                              + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_teacher_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load `path` strictly into `model`; return the whole checkpoint (cfg, epoch, optimizer, ...)."""
    ckpt = read_teacher_checkpoint(path)
    load_state_strict(model, state_from_checkpoint(ckpt, str(path)), str(path))
    return ckpt


def save_teacher_checkpoint(model: nn.Module, path: str | os.PathLike[str], *, cfg: dict[str, Any],
                            epoch: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` in the official layout, atomically (temporary file, then rename).

    `cfg` is stored as a YAML string; a model with a `spec` (a Teacher) also stores it under
    "teacher"; `extra` adds keys such as "optimizer_state" (tensors and plain data only, so the file
    stays loadable with weights_only=True). A DataParallel/DDP wrapper is unwrapped first.
    """
    p = Path(path)
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED_KEYS))
    if clash:
        raise CheckpointError(f"{p}: extra may not set reserved keys {clash}")
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    try:
        cfg_yaml = yaml.safe_dump(cfg, sort_keys=False)
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{p}: cfg cannot be written as YAML: {exc}") from exc
    ckpt: dict[str, Any] = {"epoch": int(epoch),
                            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "cfg": cfg_yaml}
    spec = getattr(model, "spec", None)
    if spec is not None:
        ckpt["teacher"] = spec.to_dict()
    ckpt.update(extra)
    return save_atomic(p, ckpt)


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the checkpoint file's bytes (recorded in the cache's attributes)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    digest = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
