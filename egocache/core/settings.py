"""Settings declared once: a config dataclass's fields carry default, help, choices and range.

A field declared with `setting(...)` is the single source of that setting: `check_settings` validates
a config object against the declarations (library callers and the CLI alike, one ConfigError naming
the option), and `click_options` builds a command's options from them, so no help string repeats a
default and no option can drift from its field. Types come from the field annotations:

    bool -> --name/--no-name            int/float -> ranged number      str + choices -> Choice
    tuple[str, ...] -> repeatable       tuple[int, ...] / list[int] -> "1,2,4"
    tuple[tuple[str, Any], ...] -> repeatable KEY=VALUE (VALUE read as YAML)

A default of None means "decided later" (e.g. from the cache); `default_text` then says what it becomes.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Sequence

from egocache.errors import ConfigError

REQUIRED: Any = dataclasses.MISSING
_META = "egocache_setting"


def setting(default: Any = REQUIRED, *, help: str, choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
            min: float | None = None, max: float | None = None, min_open: bool = False,
            default_text: str | None = None, flag: str | None = None, metavar: str | None = None,
            path: str | None = None, cli: bool = True, factory: Callable[[], Any] | None = None,
            check: Callable[[Any], Any] | None = None, argument: bool = False) -> Any:
    """A dataclass field declaring one setting.

    `choices` may be a callable (a registry's list, read when needed); `min`/`max` bound numbers (and
    every element of a list); `path` ("file", "dir", "new-file", "new-dir") makes the CLI check the
    path exists (file/dir) or is not of the wrong kind ("cache", "new-cache": the same as "dir",
    "new-dir" for a local cache, while an fsspec URL such as s3://bucket/c.zarr is taken as given); `flag` renames the CLI option; `cli=False`
    keeps a field out of the CLI; `check(value)` is a further test that raises ConfigError;
    `argument=True` makes it a positional CLI argument (named in upper case in messages).
    """
    meta = {_META: {"help": help, "choices": choices, "min": min, "max": max, "min_open": min_open,
                    "default_text": default_text, "flag": flag, "metavar": metavar, "path": path, "cli": cli,
                    "check": check, "argument": argument}}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_name(field: dataclasses.Field) -> str:
    """The CLI option of a declared field: its `flag`, else --field-name (an argument: FIELD_NAME)."""
    meta = field.metadata[_META]
    if meta["argument"]:
        return field.name.upper()
    return meta["flag"] or "--" + field.name.replace("_", "-")


def declared_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, resolved type) of every field of `cls` declared with `setting`."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if _META in f.metadata]


def _choices(meta: dict[str, Any]) -> list[str] | None:
    """The declared choices, calling a registry function if that is what was declared."""
    c = meta["choices"]
    return list(c() if callable(c) else c) if c is not None else None


def _base(kind: Any) -> tuple[Any, bool]:
    """(type without None, whether None is allowed)."""
    args = typing.get_args(kind)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return kind, False


def _is_int_list(kind: Any) -> bool:
    return typing.get_origin(kind) in (list, tuple) and typing.get_args(kind)[:1] == (int,)


def _is_str_list(kind: Any) -> bool:
    return typing.get_origin(kind) in (list, tuple) and typing.get_args(kind)[:1] == (str,)


def _is_pairs(kind: Any) -> bool:
    args = typing.get_args(kind)
    return typing.get_origin(kind) is tuple and bool(args) and typing.get_origin(args[0]) is tuple


def _check_value(name: str, value: Any, kind: Any, meta: dict[str, Any]) -> Any:
    """`value` converted to `kind` and checked against the declaration; ConfigError naming `name`."""
    base, optional = _base(kind)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name}: a value is required")
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if base in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if base is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            raise ConfigError(f"{name}: expected {'an integer' if base is int else 'a number'}, got {value!r}")
        value = base(value)
        _check_range(name, value, meta)
        return value
    if _is_int_list(base):
        if isinstance(value, str):
            value = parse_int_list(name, value)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
            raise ConfigError(f"{name}: expected comma-separated integers, got {value!r}")
        for v in value:
            _check_range(name, v, meta)
        return typing.get_origin(base)(sorted(value))
    if _is_pairs(base):
        if isinstance(value, dict):
            value = tuple(sorted(value.items()))
        if not all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) for p in value):
            raise ConfigError(f"{name}: expected KEY=VALUE pairs, got {value!r}")
        return tuple(sorted((str(k), v) for k, v in value))
    if _is_str_list(base):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of names, got {value!r}")
        choices = _choices(meta)
        bad = [v for v in value if choices is not None and v not in choices]
        if bad:
            raise ConfigError(f"{name}: {', '.join(map(repr, bad))} not among {', '.join(choices or [])}")
        return typing.get_origin(base)(value)
    if base is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected text, got {value!r}")
        choices = _choices(meta)
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    return value


def _check_range(name: str, value: float, meta: dict[str, Any]) -> None:
    """ConfigError if `value` lies outside the declared [min, max] (min exclusive with min_open)."""
    lo, hi = meta["min"], meta["max"]
    if lo is not None and (value <= lo if meta["min_open"] else value < lo):
        raise ConfigError(f"{name}: must be {'>' if meta['min_open'] else '>='} {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}: must be <= {hi:g}, got {value!r}")


def parse_int_list(name: str, text: str) -> list[int]:
    """'30,40' -> [30, 40]; ConfigError naming the option otherwise."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{name}: expected comma-separated integers, got {text!r}") from None


def check_settings(obj: Any) -> Any:
    """Validate (and normalise types of) every declared field of a config dataclass; returns the object.

    Frozen dataclasses are updated through object.__setattr__ so a config is checked where it is built.
    """
    for f, kind in declared_fields(type(obj)):
        value = getattr(obj, f.name)
        if value is REQUIRED:
            raise ConfigError(f"{option_name(f)}: a value is required")
        meta = f.metadata[_META]
        checked = _check_value(option_name(f), value, kind, meta)
        if meta["check"] is not None and checked is not None:
            meta["check"](checked)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)
    return obj


def with_settings(obj: Any, **changes: Any) -> Any:
    """A checked copy of config `obj` with `changes` (None keeps a value); unknown names raise ConfigError."""
    known = {f.name for f in dataclasses.fields(obj)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} for {type(obj).__name__}")
    return check_settings(dataclasses.replace(obj, **{k: v for k, v in changes.items() if v is not None}))


# --- the CLI side ---------------------------------------------------------------------------------
def _parse_key_values(items: tuple[str, ...], name: str) -> tuple[tuple[str, Any], ...]:
    """('a=1', 'b=x') -> (('a', 1), ('b', 'x')); VALUE is read as YAML (numbers, booleans, lists)."""
    import yaml

    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}: expected KEY=VALUE, got {item!r}")
        try:
            out.append((key.strip(), yaml.safe_load(raw)))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{name}: cannot read the value of {item!r} ({exc.problem})") from None
    return tuple(sorted(out))


def click_options(cls: type, *, exclude: Sequence[str] = (), required: Sequence[str] = ()
                  ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding one click option per declared field of `cls` (fields in declaration order).

    Parsed values reach the command under the field names; `from_cli(cls, values)` builds the config.
    Fields without a default are required options; `required` makes others required too.
    """
    import click

    def option(f: dataclasses.Field, kind: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        meta = f.metadata[_META]
        base, _ = _base(kind)
        name = option_name(f)
        has_default = (f.default is not REQUIRED or f.default_factory is not dataclasses.MISSING) \
            and f.name not in required
        default = f.default if f.default is not REQUIRED and has_default else None
        if f.default_factory is not dataclasses.MISSING and has_default:
            default = f.default_factory()
        kw: dict[str, Any] = {"help": meta["help"], "required": not has_default, "metavar": meta["metavar"]}
        if not has_default:
            pass
        elif meta["default_text"] is not None:
            kw["show_default"] = meta["default_text"]
        elif has_default and default is not None and default != () and default != []:
            kw["show_default"] = True
        decls = [name, f.name]
        if base is bool:
            decls = [f"{name}/--no-{name[2:]}", f.name]
            kw.update(default=default, type=bool)
        elif base in (int, float):
            rng = click.IntRange if base is int else click.FloatRange
            kw.update(default=default, type=rng(meta["min"], meta["max"], min_open=meta["min_open"]))
        elif _is_int_list(base):
            kw.update(default=None if default is None else ",".join(map(str, default)), type=str,
                      callback=_as_click(lambda v, n=name: None if v is None else parse_int_list(n, v)),
                      metavar=meta["metavar"] or "N,N,...")
        elif _is_pairs(base):
            kw.update(multiple=True, type=str, metavar=meta["metavar"] or "KEY=VALUE",
                      callback=_as_click(lambda v, n=name: _parse_key_values(v, n)))
            kw.pop("show_default", None)
        elif _is_str_list(base) and typing.get_origin(base) is tuple:
            kw.update(multiple=True, type=path_type(meta["path"]) or str, default=None)
            kw.pop("show_default", None)
        elif _is_str_list(base):
            kw.update(type=str, default=",".join(default) if default else None, metavar=meta["metavar"] or "A,B,...")
        else:
            choices = _choices(meta)
            kw.update(default=default, type=click.Choice(choices) if choices else (path_type(meta["path"]) or str))
        return click.option(*decls, **kw)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for f, kind in reversed(declared_fields(cls)):
            meta = f.metadata[_META]
            if not meta["cli"] or f.name in exclude:
                continue
            if meta["argument"]:
                fn = click.argument(f.name, type=path_type(meta["path"]) or str)(fn)
            else:
                fn = option(f, kind)(fn)
        return fn

    return decorate


def _as_click(parse: Callable[[Any], Any]) -> Callable[[Any, Any, Any], Any]:
    """A click callback running `parse(value)`, its ConfigError shown as click's 'Invalid value'."""
    import click

    def callback(ctx: Any, param: Any, value: Any) -> Any:
        try:
            return parse(value)
        except ConfigError as exc:
            raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None

    return callback


def path_type(kind: str | None) -> Any:
    """click.Path for a declared path kind (None when the field is not a path)."""
    import click

    if kind is None:
        return None
    if kind in ("cache", "new-cache"):
        return _cache_location(exists=kind == "cache")
    return {"file": click.Path(exists=True, dir_okay=False), "dir": click.Path(exists=True, file_okay=False),
            "new-file": click.Path(dir_okay=False), "new-dir": click.Path(file_okay=False)}[kind]


def _cache_location(*, exists: bool) -> Any:
    """A click type for a cache: an fsspec URL (s3://bucket/cache.zarr) as given, else a local folder
    (that exists, for `exists`)."""
    import click

    from egocache.core.files import is_url

    class CacheLocation(click.ParamType):
        name = "path or URL"

        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            if isinstance(value, str) and is_url(value):
                return value
            return click.Path(exists=exists, file_okay=False).convert(value, param, ctx)

    return CacheLocation()


def from_cli(cls: type, values: dict[str, Any], **extra: Any) -> Any:
    """The config `cls` built from parsed CLI values (multiple options as tuples) and checked."""
    known = {f.name for f in dataclasses.fields(cls)}
    given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in known and v is not None}
    given = {k: v for k, v in given.items() if v != () or k in extra}
    return check_settings(cls(**given, **extra))
