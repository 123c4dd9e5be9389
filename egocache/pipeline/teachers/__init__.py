"""Teacher registry: `list_teachers`, `teacher_spec`, `create_teacher`, `teacher_stats`.

Registration is one explicit table at the bottom of this module (no import side effects); a
duplicate name raises. `create_teacher(name, checkpoint=..., heads=..., **overrides)` builds a
teacher whose spec (what its weights expect) and architecture come from, in increasing priority:
the registered defaults, the checkpoint, the explicit arguments. From a checkpoint written by
`save_teacher_checkpoint` the saved TeacherSpec gives config, heads (names and class counts) and input
settings; from an official MotionFormer checkpoint its YAML cfg gives crop, frames, stride, ViT
sizes and channel order, and the classifier weights give the class counts (named like the
registered heads when their number matches). The weights then load strictly (every key and shape).
Overrides name architecture fields (e.g. depth, embed_dim, use_original_code) or the input
settings frame_stride, bgr, mean, std; unknown keys and wrong types raise EgocacheError.

A name ending in .json is a teacher spec file instead (external.py: a torch.export or TorchScript
file, or a module:factory entry point, with its clip geometry, normalisation, heads and feature size);
the same functions build, describe and measure it, and only the input settings can be overridden.
torchvision's video models (tvvideo.py) are registered where torchvision imports; elsewhere asking
for one is a one-line error saying so.

Modality teachers (issue 13): flow-tiny (a 3-D CNN over Farneback optical flow that its preprocess
computes from the RGB frames) and objects-tiny (a centre-frame noun classifier with the auxiliary
output object_score), and audio-tiny (a 2-D CNN over the clip's log spectrogram: TeacherSpec.input
"audio", fed the cached float16 spectrogram, its clip span from num_frames x frame_stride; it has no
frame input, img_size 0). A registration may give `aux` (heads -> {aux name: size}: the spec's aux outputs
follow the heads' class counts) and `train_heads` (the dataset heads train-teacher trains; None: all
of them): `trained_heads(name, dataset_heads)` applies it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import typing
from dataclasses import dataclass
from typing import Any, Callable

import torch

from egocache.errors import CheckpointError, EgocacheError
from egocache.pipeline.teachers import audio, convnet, external, flow, mformer, objects, tvvideo
from egocache.pipeline.teachers.base import Teacher, TeacherSpec
from egocache.pipeline.teachers.checkpoint import (checkpoint_sha256, load_state_strict,
                                                   load_teacher_checkpoint, read_teacher_checkpoint,
                                                   save_teacher_checkpoint, state_from_checkpoint)

__all__ = ["Teacher", "TeacherSpec", "checkpoint_sha256", "create_teacher", "is_spec_file", "list_teachers",
           "load_teacher_checkpoint", "read_teacher_checkpoint", "register_teacher",
           "save_teacher_checkpoint", "teacher_reference", "teacher_spec", "teacher_stats", "trained_heads"]

is_spec_file = external.is_spec_file

SPEC_OVERRIDES = ("frame_stride", "bgr", "mean", "std")


@dataclass(frozen=True)
class _Entry:
    """A registered teacher: default spec and config, builder, and checkpoint readers."""

    spec: TeacherSpec
    config: Any                                                  # frozen dataclass with check()
    build: Callable[[TeacherSpec], Teacher]
    read_heads: Callable[[dict[str, torch.Tensor], dict[str, int]], dict[str, int]]
    official_overrides: Callable[[str], dict[str, Any]]          # from an official YAML cfg
    aux: Callable[[dict[str, int]], dict[str, int]] | None = None  # heads -> aux output sizes
    train_heads: tuple[str, ...] | None = None                   # dataset heads it trains (None: all)


_REGISTRY: dict[str, _Entry] = {}


def register_teacher(name: str, *, spec: TeacherSpec, config: Any, build: Callable[[TeacherSpec], Teacher],
                     read_heads: Callable[[dict[str, torch.Tensor], dict[str, int]], dict[str, int]],
                     official_overrides: Callable[[str], dict[str, Any]],
                     aux: Callable[[dict[str, int]], dict[str, int]] | None = None,
                     train_heads: tuple[str, ...] | None = None) -> None:
    """Add a teacher under `name`; a name registered twice raises."""
    if name in _REGISTRY:
        raise EgocacheError(f"teacher {name!r} is already registered")
    if spec.name != name or spec.config != dataclasses.asdict(config):
        raise EgocacheError(f"teacher {name!r}: its spec's name/config disagree with the registration")
    _REGISTRY[name] = _Entry(spec, config, build, read_heads, official_overrides, aux, train_heads)


def trained_heads(name: str, dataset_heads: dict[str, int]) -> dict[str, int]:
    """The heads of `dataset_heads` that train-teacher trains for teacher `name` (its `train_heads`)."""
    keep = _entry(name).train_heads
    if keep is None:
        return dict(dataset_heads)
    out = {h: c for h, c in dataset_heads.items() if h in keep}
    if not out:
        raise EgocacheError(f"teacher {name} trains the head(s) {', '.join(keep)}; the dataset has "
                            f"{', '.join(dataset_heads) or 'none'}")
    return out


def list_teachers() -> list[str]:
    """Registered teacher names, sorted."""
    return sorted(_REGISTRY)


def teacher_reference(name: str) -> str:
    """`name` as every process can resolve it: a spec file's absolute path, a registered name as is."""
    return os.path.abspath(name) if is_spec_file(name) else name


def _entry(name: str) -> _Entry:
    """The registry entry for `name`, or an error listing the known names."""
    if name not in _REGISTRY:
        if name in tvvideo.ARCHS:
            raise EgocacheError(f"teacher {name!r} is one of torchvision's video models, and torchvision is "
                                f"not importable here ({tvvideo.import_problem()})")
        raise EgocacheError(f"unknown teacher {name!r}; known: {', '.join(list_teachers())}, or a teacher "
                            "spec file (SPEC.json)")
    return _REGISTRY[name]


def _coerce(owner: str, key: str, value: Any, hint: Any) -> Any:
    """`value` checked against type `hint` (int, float, bool, tuple of floats), as that type."""
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    ok, out = False, value
    if hint is str:
        ok = isinstance(value, str)
    elif hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok, out = numeric(value), float(value) if numeric(value) else value
    elif typing.get_origin(hint) is tuple:
        size = len(typing.get_args(hint))
        ok = isinstance(value, (tuple, list)) and len(value) == size and all(map(numeric, value))
        out = tuple(float(v) for v in value) if ok else value
    if not ok:
        raise EgocacheError(f"teacher {owner}: override {key}={value!r} should be {hint}")
    return out


def _check_heads(name: str, heads: dict[str, int]) -> dict[str, int]:
    """`heads` as a plain dict if it maps names to positive class counts."""
    if not isinstance(heads, dict) or not heads or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
            for k, v in heads.items()):
        raise EgocacheError(f"teacher {name}: heads must map head names to positive class counts, "
                            f"got {heads!r}")
    return dict(heads)


def _resolve(name: str, heads: dict[str, int] | None, overrides: dict[str, Any]) -> TeacherSpec:
    """The spec of teacher `name` with `heads` and type-checked `overrides` applied."""
    entry = _entry(name)
    cfg_hints = typing.get_type_hints(type(entry.config))
    spec_hints = typing.get_type_hints(TeacherSpec)
    unknown = sorted(set(overrides) - set(cfg_hints) - set(SPEC_OVERRIDES))
    if unknown:
        raise EgocacheError(f"teacher {name}: unknown override(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(sorted(cfg_hints) + list(SPEC_OVERRIDES))}")
    cfg_over = {k: _coerce(name, k, v, cfg_hints[k]) for k, v in overrides.items() if k in cfg_hints}
    fixed = sorted(k for k, v in cfg_over.items() if cfg_hints[k] is str and v != getattr(entry.config, k))
    if fixed:
        raise EgocacheError(f"teacher {name}: {', '.join(fixed)} is fixed by the registered teacher")
    spec_over = {k: _coerce(name, k, v, spec_hints[k]) for k, v in overrides.items()
                 if k in SPEC_OVERRIDES}
    cfg = dataclasses.replace(entry.config, **cfg_over)
    cfg.check()
    heads = _check_heads(name, heads) if heads is not None else entry.spec.heads
    return dataclasses.replace(
        entry.spec, **spec_over, heads=heads, num_frames=getattr(cfg, "num_frames", entry.spec.num_frames),
        img_size=getattr(cfg, "img_size", entry.spec.img_size), feature_dim=cfg.feature_dim, config=dataclasses.asdict(cfg),
        aux=entry.aux(heads) if entry.aux is not None else entry.spec.aux)


def _external_spec(path: str, heads: dict[str, int] | None, overrides: dict[str, Any]) -> TeacherSpec:
    """The spec of the spec file `path` with the input-setting `overrides`; `heads`, if given, must be its own."""
    spec = external.read_spec_file(path)
    unknown = sorted(set(overrides) - set(SPEC_OVERRIDES))
    if unknown:
        raise EgocacheError(f"{path}: unknown override(s) {', '.join(unknown)}; an external teacher allows "
                            f"{', '.join(SPEC_OVERRIDES)}")
    hints = typing.get_type_hints(TeacherSpec)
    spec = dataclasses.replace(spec, **{k: _coerce(path, k, v, hints[k]) for k, v in overrides.items()})
    if heads is not None and _check_heads(path, heads) != spec.heads:
        raise EgocacheError(f"{path}: the model's heads {spec.heads} are fixed; {heads} were asked for")
    return spec


def teacher_spec(name: str, *, heads: dict[str, int] | None = None, **overrides: Any) -> TeacherSpec:
    """The TeacherSpec `create_teacher` would give, without building the model."""
    if is_spec_file(name):
        return _external_spec(name, heads, overrides)
    return _resolve(name, heads, overrides)


def _checkpoint_settings(name: str, ckpt: dict[str, Any], state: dict[str, torch.Tensor], source: str
                         ) -> tuple[dict[str, int], dict[str, Any]]:
    """(heads, overrides) that a checkpoint implies for teacher `name` (see the module docstring)."""
    entry = _entry(name)
    saved = ckpt.get("teacher")
    if isinstance(saved, dict):
        if saved.get("name") != name:
            raise CheckpointError(f"{source}: saved from teacher {saved.get('name')!r}, not {name!r}")
        overrides = {**saved.get("config", {}), **{k: saved[k] for k in SPEC_OVERRIDES if k in saved}}
        return saved.get("heads") or entry.read_heads(state, entry.spec.heads), overrides
    cfg_yaml = ckpt.get("cfg")
    overrides = entry.official_overrides(cfg_yaml) if isinstance(cfg_yaml, str) else {}
    return entry.read_heads(state, entry.spec.heads), overrides


def create_teacher(name: str, *, checkpoint: str | os.PathLike[str] | None = None,
                   heads: dict[str, int] | None = None, **overrides: Any) -> Teacher:
    """Build teacher `name` in eval mode, loading `checkpoint` strictly if given.

    Settings come from the registered defaults, then the checkpoint, then `heads`/`overrides`.
    Build under `with torch.device("meta"):` to inspect shapes without allocating memory.
    """
    if is_spec_file(name):
        if checkpoint is not None:
            raise EgocacheError(f"{name}: an external teacher carries its own weights; the checkpoint "
                                f"{checkpoint} cannot be loaded into it")
        return external.create_external(_external_spec(name, heads, overrides), name)
    state = None
    if checkpoint is not None:
        source = str(checkpoint)
        ckpt = read_teacher_checkpoint(checkpoint)
        state = state_from_checkpoint(ckpt, source)
        found_heads, found = _checkpoint_settings(name, ckpt, state, source)
        overrides = {**found, **overrides}
        heads = heads if heads is not None else found_heads
    spec = _resolve(name, heads, overrides)
    model = _entry(name).build(spec)
    if state is not None:
        load_state_strict(model, state, str(checkpoint))
    return model.eval()


def teacher_stats(name: str, **overrides: Any) -> dict[str, Any]:
    """{name, params, params_m, macs, gflops} for one clip (one view), 1 multiply-add = 1 FLOP.

    Built and run on the meta device: no memory is allocated and nothing is computed, so the full
    model is measured in about a second on CPU. An external teacher is loaded and run on one zero clip
    on the CPU instead (a file's weights cannot be loaded onto the meta device).
    """
    from egocache.core.flops import count_flops, count_params

    where = contextlib.nullcontext() if is_spec_file(name) else torch.device("meta")
    with where:
        model = create_teacher(name, **overrides)
        clip = torch.zeros(1, *model.input_shape())
    params = count_params(model)
    macs = count_flops(model, clip)
    return {"name": name, "params": params, "params_m": params / 1e6, "macs": macs, "gflops": macs / 1e9}


register_teacher("mformer", spec=mformer.BASE_SPEC, config=mformer.BASE_CONFIG, build=mformer.MotionFormer,
                 read_heads=mformer.heads_from_state, official_overrides=mformer.official_overrides)
register_teacher("mformer-tiny", spec=mformer.TINY_SPEC, config=mformer.TINY_CONFIG,
                 build=mformer.MotionFormer, read_heads=mformer.heads_from_state,
                 official_overrides=mformer.official_overrides)
register_teacher("flow-tiny", spec=flow.TINY_SPEC, config=flow.TINY_CONFIG, build=flow.FlowTeacher,
                 read_heads=convnet.heads_from_state, official_overrides=convnet.no_official_overrides)
register_teacher("audio-tiny", spec=audio.TINY_SPEC, config=audio.TINY_CONFIG, build=audio.AudioTeacher,
                 read_heads=convnet.heads_from_state, official_overrides=convnet.no_official_overrides)
register_teacher("objects-tiny", spec=objects.TINY_SPEC, config=objects.TINY_CONFIG, build=objects.ObjectsTeacher,
                 read_heads=convnet.heads_from_state, official_overrides=convnet.no_official_overrides,
                 aux=objects.aux_sizes, train_heads=objects.TRAIN_HEADS)
if tvvideo.available():   # guarded: without torchvision these names are absent, not broken
    for _name in tvvideo.ARCHS:
        _spec, _config = tvvideo.default_spec(_name)
        register_teacher(_name, spec=_spec, config=_config, build=tvvideo.TorchvisionVideo,
                         read_heads=tvvideo.heads_from_state, official_overrides=tvvideo.no_official_overrides)
