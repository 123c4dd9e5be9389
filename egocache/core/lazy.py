"""Names a package exports but imports only when first used (keeps torch, h5py and the like off the
import path of the CLI and of extraction workers)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `package.<module>` for each of `names`
    ({exported name: module}) when the name is first asked for."""
    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
