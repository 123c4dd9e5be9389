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
        self.done += 1
        tag = f"[{self.tag}] step {self.done}/{self.total} {name}"
        marker = self.dir / f"{name}.json"
        if marker.exists():
            self.log(f"{tag}: done before, reusing ({marker})")
            return json.loads(marker.read_text())
        self.log(f"{tag}: running")
        began = time.perf_counter()
        try:
            result = fn()
        except EgocacheError as exc:
            raise EgocacheError(f"{self.tag} step {name!r} failed: {exc}") from exc
        except Exception as exc:
            raise EgocacheError(f"{self.tag} step {name!r} failed: {type(exc).__name__}: {exc}") from exc
        result = {**result, "seconds": round(time.perf_counter() - began, 1)}
        write_json_atomic(marker, result)
        self.log(f"{tag}: finished in {result['seconds']:.0f} s "
                 f"({self.tag} at {time.perf_counter() - self.began:.0f} s)")
        return result
