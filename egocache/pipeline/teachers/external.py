"""Bring your own teacher: a torch.export (.pt2) or TorchScript file, or a `module:factory` entry point,
described by a small JSON spec file that `--teacher SPEC.json` names wherever a registered name is accepted.

The spec file (every field checked; a problem is one ConfigError naming the file and the field):

    {"model": "model.pt2",              a torch.export.save archive (.pt2) or a torch.jit.save file (any
                                        other suffix), relative to the spec file; or instead
     "entry": "pkg.module:factory",     a callable returning an nn.Module (its module importable where the
     "kwargs": {"classes": 9},          teacher runs), called with these keyword arguments
     "num_frames": 8, "frame_stride": 8, "img_size": 32,
     "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225],   per channel, model order, on [0, 1]
     "channels": "rgb",                 or "bgr": the order the model expects
     "heads": {"verb": 9, "noun": 12},  head name -> classes, in output order
     "feature_dim": 16,
     "name": "my-teacher", "tag": "", "source_url": "", "licence": ""}     optional

Output contract: the model is called on what `Teacher.preprocess` makes of the clip (float32
(B, 3, T, S, S), normalised, in the spec's channel order) and returns either a dict
{"features": (B, D), "logits_<head>": (B, C) for every head} or a tuple/list (features, logits of
each head in the spec's order). Logits, never probabilities. Every call is checked against the spec
(types and shapes, a one-line EgocacheError naming the spec file), so a wrong model fails on its
first batch. A torch.export archive must be exported with a dynamic batch dimension
(`dynamic_shapes={"x": {0: torch.export.Dim("batch")}}`) unless every batch has the exported size.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from egocache.errors import CheckpointError, ConfigError, EgocacheError
from egocache.pipeline.teachers.base import Teacher, TeacherSpec

SPEC_SUFFIX = ".json"
EXPORT_SUFFIX = ".pt2"
REQUIRED = ("num_frames", "frame_stride", "img_size", "mean", "std", "channels", "heads", "feature_dim")
OPTIONAL = ("model", "entry", "kwargs", "name", "tag", "source_url", "licence")


def is_spec_file(name: str) -> bool:
    """Whether a `--teacher` value names a spec file (SPEC.json) rather than a registered teacher."""
    return str(name).lower().endswith(SPEC_SUFFIX)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _positive_int(src: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{src}: {key} must be a positive integer, got {value!r}")
    return value


def _triple(src: str, key: str, value: Any, *, positive: bool) -> tuple[float, float, float]:
    ok = (isinstance(value, list) and len(value) == 3
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
    if not ok or (positive and min(value) <= 0):
        raise ConfigError(f"{src}: {key} must be a list of 3 {'positive ' if positive else ''}numbers "
                          f"(per channel, on [0, 1]), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def read_spec_file(path: str | os.PathLike[str]) -> TeacherSpec:
    """The TeacherSpec of the spec file at `path`; its `config` says where the model comes from.

    config: {"kind": "export" | "torchscript" | "entry", "model": absolute path, "model_sha256",
    "entry", "kwargs"}: what the cache records, so a changed model file changes the cache's attributes.
    """
    p = Path(path)
    src = str(path)
    if not p.is_file():
        raise ConfigError(f"{src}: no such teacher spec file")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{src}: not a readable JSON teacher spec ({_first_line(exc)})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: a teacher spec is a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ConfigError(f"{src}: unknown field(s) {', '.join(unknown)}; allowed: "
                          f"{', '.join(REQUIRED + OPTIONAL)}")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ConfigError(f"{src}: missing field(s) {', '.join(missing)}")
    if ("model" in raw) == ("entry" in raw):
        raise ConfigError(f"{src}: give exactly one of model (a .pt2 or TorchScript file) and entry "
                          "(module:factory)")
    for key in ("name", "tag", "source_url", "licence"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{src}: {key} must be a string, got {raw[key]!r}")
    heads = raw["heads"]
    if not isinstance(heads, dict) or not heads or not all(
            isinstance(k, str) and k and isinstance(v, int) and not isinstance(v, bool) and v > 0
            for k, v in heads.items()):
        raise ConfigError(f"{src}: heads must map head names to positive class counts, got {heads!r}")
    if raw["channels"] not in ("rgb", "bgr"):
        raise ConfigError(f"{src}: channels must be \"rgb\" or \"bgr\", got {raw['channels']!r}")
    config: dict[str, Any] = {"kind": "entry", "model": None, "model_sha256": None, "entry": None, "kwargs": {}}
    if "model" in raw:
        if not isinstance(raw["model"], str) or not raw["model"]:
            raise ConfigError(f"{src}: model must be a file path, got {raw['model']!r}")
        model = (p.parent / raw["model"]).resolve()
        if not model.is_file():
            raise ConfigError(f"{src}: model: no such file {model}")
        if "kwargs" in raw:
            raise ConfigError(f"{src}: kwargs are the arguments of an entry factory; a model file takes none")
        config.update(kind="export" if model.suffix.lower() == EXPORT_SUFFIX else "torchscript",
                      model=str(model), model_sha256=_sha256(model))
    else:
        entry = raw["entry"]
        module, sep, attr = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if not (sep and module and attr):
            raise ConfigError(f"{src}: entry must be \"package.module:factory\", got {entry!r}")
        kwargs = raw.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{src}: kwargs must be a JSON object of the factory's keyword arguments")
        config.update(entry=entry, kwargs=kwargs)
    return TeacherSpec(
        name=raw.get("name") or p.stem, tag=raw.get("tag", ""),
        num_frames=_positive_int(src, "num_frames", raw["num_frames"]),
        frame_stride=_positive_int(src, "frame_stride", raw["frame_stride"]),
        img_size=_positive_int(src, "img_size", raw["img_size"]),
        mean=_triple(src, "mean", raw["mean"], positive=False), std=_triple(src, "std", raw["std"], positive=True),
        bgr=raw["channels"] == "bgr", feature_dim=_positive_int(src, "feature_dim", raw["feature_dim"]),
        heads=dict(heads), config=config, source_url=raw.get("source_url", ""), licence=raw.get("licence", ""))


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[None]:
    """torch.export.load logs a whole traceback before raising; the error we raise says it in one line."""
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_model(spec: TeacherSpec, source: str) -> nn.Module:
    """The nn.Module the spec's config names: torch.export.load(...).module(), torch.jit.load, or the factory."""
    cfg = spec.config
    if cfg["kind"] == "entry":
        module_name, _, attr = cfg["entry"].partition(":")
        try:
            factory: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"{source}: entry {cfg['entry']!r}: cannot import {module_name} "
                              f"({_first_line(exc)})") from exc
        for part in attr.split("."):
            if not hasattr(factory, part):
                raise ConfigError(f"{source}: entry {cfg['entry']!r}: {module_name} has no {attr}")
            factory = getattr(factory, part)
        if not callable(factory):
            raise ConfigError(f"{source}: entry {cfg['entry']!r} is not callable")
        try:
            model = factory(**cfg["kwargs"])
        except Exception as exc:  # the factory is the user's code: say which one failed, in one line
            raise EgocacheError(f"{source}: entry {cfg['entry']!r} raised {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{source}: entry {cfg['entry']!r} returned {type(model).__name__}, "
                              "not a torch.nn.Module")
        return model
    path = cfg["model"]
    if not os.path.isfile(path):
        raise CheckpointError(f"{source}: model file {path} is gone")
    if _sha256(Path(path)) != cfg["model_sha256"]:
        raise CheckpointError(f"{source}: model file {path} changed since its spec was read")
    try:
        if cfg["kind"] == "export":
            with _quiet_torch_export():
                return torch.export.load(path).module()
        with warnings.catch_warnings():     # TorchScript is deprecated in torch; reading it is still supported
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # zip, pickle and deserialisation errors all mean "not such a file"
        what = "torch.export .pt2 archive" if cfg["kind"] == "export" else "TorchScript file"
        raise CheckpointError(f"{source}: {path} is not a loadable {what} ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from exc


class ExternalTeacher(Teacher):
    """A model from a spec file behind the Teacher interface; its outputs are checked against the spec."""

    def __init__(self, spec: TeacherSpec, model: nn.Module, source: str) -> None:
        super().__init__()
        self.spec, self.source = spec, source
        self.model = model

    def train(self, mode: bool = True) -> ExternalTeacher:
        """Set the model's mode; a torch.export module keeps the mode it was exported in (torch refuses
        train() and eval() on it), so it is left alone."""
        self.training = mode
        if self.spec.config["kind"] != "export":
            self.model.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Preprocessed clips (B,3,T,S,S) -> (features (B, D), {head: logits (B, C)}), as the spec says."""
        spec = self.spec
        expected = (3, spec.num_frames, spec.img_size, spec.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{spec.name}: expected input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        try:
            out = self.model(x)
        except Exception as exc:  # a foreign model's failure, in one line naming its spec
            raise EgocacheError(f"{self.source}: the model failed on input {tuple(x.shape)} "
                                f"({type(exc).__name__}: {_first_line(exc)})") from exc
        return self._split(out, x.shape[0])

    def _split(self, out: Any, batch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(features, {head: logits}) from the model's dict or tuple output, every shape checked."""
        heads = self.spec.heads
        if isinstance(out, dict):
            want = ["features", *(f"logits_{h}" for h in heads)]
            missing = [k for k in want if k not in out]
            if missing:
                raise EgocacheError(f"{self.source}: the model's output dict lacks {', '.join(missing)} "
                                    f"(has {', '.join(map(str, out)) or 'nothing'})")
            feats, logits = out["features"], {h: out[f"logits_{h}"] for h in heads}
        elif isinstance(out, (tuple, list)):
            if len(out) != 1 + len(heads):
                raise EgocacheError(f"{self.source}: the model returned {len(out)} outputs, expected "
                                    f"{1 + len(heads)} (features, then logits of {', '.join(heads)})")
            feats, logits = out[0], dict(zip(heads, out[1:]))
        else:
            raise EgocacheError(f"{self.source}: the model returned {type(out).__name__}; expected a dict "
                                "{features, logits_<head>} or a tuple (features, logits per head)")
        for what, value, shape in (("features", feats, (batch, self.spec.feature_dim)),
                                   *((f"logits_{h}", logits[h], (batch, c)) for h, c in heads.items())):
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise EgocacheError(f"{self.source}: output {what} is {type(value).__name__}"
                                    f"{'' if not isinstance(value, torch.Tensor) else ' ' + str(value.dtype)}, "
                                    "expected a floating-point tensor")
            if tuple(value.shape) != shape:
                raise EgocacheError(f"{self.source}: output {what} has shape {tuple(value.shape)}, the spec "
                                    f"says {shape}")
        return feats, logits

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip features (B, D); the model runs whole."""
        return self(x)[0]

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Not available: an external model is one function of the clip, not features then heads."""
        raise EgocacheError(f"{self.source}: an external teacher runs whole; call it on clips for features "
                            "and logits together")


def create_external(spec: TeacherSpec, source: str) -> ExternalTeacher:
    """The external teacher `spec` describes, in eval mode."""
    return ExternalTeacher(spec, load_model(spec, source), source).eval()
