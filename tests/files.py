"""Small text files the tests write (one CSV writer for every test)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any] | Mapping[str, Any]],
              *, quoting: int = csv.QUOTE_MINIMAL) -> str:
    """Write a CSV with `header` and `rows` (cell sequences in header order, or dicts by column); its path."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n", quoting=quoting)
        out.writerow(header)
        for row in rows:
            out.writerow([row.get(h, "") for h in header] if isinstance(row, Mapping) else row)
    return str(path)
