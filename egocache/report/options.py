"""The `egocache benchmark` settings, declared once (no torch here: the CLI builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass

from egocache.core.device import check_device_name
from egocache.core.settings import check_settings, setting
from egocache.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class BenchmarkOptions:
    """What to benchmark (a cache and its student runs, or the paper's full-size configurations) and how."""

    cache: str | None = setting(None, path="dir", help="Cache whose teacher and validation split to benchmark.")
    runs: str | None = setting(None, path="dir", help="Folder holding student runs (each with metrics.json and "
                                                     "best.pt/last.pt).")
    out: str = setting("report", path="new-dir", help="Folder for report.md, report.json, results.csv and the plots.")
    paper_configs: bool = setting(False, help="Benchmark the full-size mformer (16x224^2) and EgoDistill N=1,2,4 "
                                              "at 224^2, no data needed.")
    device: str = setting("cpu", check=check_device_name, help="Where latency is measured: cpu, cuda or cuda:K.")
    batch_size: int = setting(32, min=1, help="Latency batch size.")
    repeats: int = setting(5, min=1, help="Timed batches (the median is reported).")
    latency: bool | None = setting(None, default_text="on for --cache runs; for --paper-configs only on cuda",
                                   help="Measure latency.")
    skip_verify: bool = setting(False, help="Benchmark a cache that fails `egocache verify` (with a warning).")

    def __post_init__(self) -> None:
        """Check every setting, and that there is something to benchmark."""
        check_settings(self)
        if not self.paper_configs and not (self.cache and self.runs):
            raise ConfigError("--cache and --runs: give both, or --paper-configs")
