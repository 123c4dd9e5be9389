"""The `egocache` command: a click group whose commands parse options, call one library function, print.

Heavy imports (torch, decord, dask, zarr) happen inside command bodies so `egocache --help` is instant.
Library errors (EgocacheError) become one-line click errors with exit code 1.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable

import click

from egocache import __version__
from egocache.errors import EgocacheError


def library_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an EgocacheError raised by the library into a click error naming the reason."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EgocacheError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def echo_json(obj: Any) -> None:
    """Print `obj` as indented JSON on stdout."""
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "EGOCACHE"})
@click.version_option(__version__, prog_name="egocache")
def main() -> None:
    """Cache a heavy egocentric video teacher once; distil light image+IMU students from the cache.

    Typical chain: `egocache extract --teacher mformer ...` -> `egocache train-student ...`
    -> `egocache benchmark ...`; `egocache demo` runs it all on built-in synthetic data.
    """


# --- commands are added below, one block per command -------------------------------------------
