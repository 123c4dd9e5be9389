"""Resumable multi-step jobs: a marker per finished step, so a re-run skips what is done.

`egocache demo` and `egocache benchmark --ablations` chain many long steps (synth, teacher, extract,
dozens of student runs); each finished step writes OUT/steps/<name>.json with its result, a re-run
reuses it, and an interrupted step resumes through that step's own resume logic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from egocache.core.files import write_json_atomic
from egocache.errors import EgocacheError


class Steps:
    """Markers of finished steps under OUT/steps/: run a step only when its marker is missing."""

    def __init__(self, out: Path, total: int, log: Callable[[str], None], *, tag: str = "demo") -> None:
        """Markers under OUT/steps/; `total` steps are expected; log lines start with "[tag]"."""
        self.dir = Path(out) / "steps"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.total, self.done, self.log, self.tag = total, 0, log, tag
        self.began = time.perf_counter()

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run `fn` unless step `name` finished before; any failure is re-raised naming the step."""
        before = self.reuse(name)
        if before is not None:
            return before
        self.log(f"[{self.tag}] step {self.done + 1}/{self.total} {name}: running")
        began = time.perf_counter()
        try:
            result = fn()
        except EgocacheError as exc:
            raise EgocacheError(f"{self.tag} step {name!r} failed: {exc}") from exc
        except Exception as exc:
            raise EgocacheError(f"{self.tag} step {name!r} failed: {type(exc).__name__}: {exc}") from exc
        return self.record(name, result, time.perf_counter() - began)

    def reuse(self, name: str) -> dict[str, Any] | None:
        """Step `name`'s result if it finished before (counted and logged as done), else None."""
        marker = self.dir / f"{name}.json"
        if not marker.exists():
            return None
        self.done += 1
        self.log(f"[{self.tag}] step {self.done}/{self.total} {name}: done before, reusing ({marker})")
        return json.loads(marker.read_text())

    def record(self, name: str, result: dict[str, Any], seconds: float) -> dict[str, Any]:
        """Write step `name`'s marker (its result and `seconds`) and log it finished; return the marker's dict."""
        self.done += 1
        result = {**result, "seconds": round(seconds, 1)}
        write_json_atomic(self.dir / f"{name}.json", result)
        self.log(f"[{self.tag}] step {self.done}/{self.total} {name}: finished in {result['seconds']:.0f} s "
                 f"({self.tag} at {time.perf_counter() - self.began:.0f} s)")
        return result
