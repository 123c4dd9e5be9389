"""The `egocache benchmark` settings, declared once (no torch here: the CLI builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egocache.core.device import check_device_name
from egocache.core.settings import check_settings, setting
from egocache.errors import ConfigError
from egocache.student.variants import list_variants

ABLATION_PARTS = ("fig3", "table1", "table4")


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
    # --- --ablations: the paper's Table 1, Table 4, Fig. 3 and 4 over seeds --------------------------
    ablations: bool = setting(False, help="Train and report the paper's ablations (Fig. 3, Table 1, Table 4, "
                                          "Fig. 4) over --seeds on --cache, or on the synthetic world if no "
                                          "--cache is given.")
    seeds: list[int] = setting(factory=lambda: [0, 1, 2], min=0, help="Seeds of every ablation run, "
                                                                      "comma-separated.")
    ablation_parts: list[str] = setting(factory=lambda: list(ABLATION_PARTS), choices=ABLATION_PARTS,
                                        help="Which ablations, comma-separated.")
    ablation_variants: list[str] = setting(factory=lambda: ["egodistill", "visonly-distill", "visimu", "visonly"],
                                           choices=list_variants, help="Fig. 3's student variants, comma-separated "
                                           "(add listentolook for the ListenToLook baseline; needs a cache with audio).")
    ablation_frames: list[int] = setting(factory=lambda: [1, 2, 4], min=1, help="The N of Fig. 3's curves "
                                                                                "(Table 1 is at N=1, Table 4 at N=4).")
    jobs: int = setting(2, min=1, help="Ablation runs trained at once, each in its own process (1: in order, in "
                                       "this process).")
    threads: int = setting(1, min=0, help="torch CPU threads per ablation run (0: one per CPU).")
    image_weights: str | None = setting(None, path="file", default_text="none (the synthetic default pretrains one)",
                                        help="torchvision-format ResNet-18 file for every ablation student.")
    student_options: tuple[tuple[str, Any], ...] = setting(
        (), flag="--student-option", help="A train-student setting for every ablation run (repeatable), "
                                          "e.g. epochs=50.")

    def __post_init__(self) -> None:
        """Check every setting, and that there is something to benchmark."""
        check_settings(self)
        if not self.paper_configs and not self.ablations and not (self.cache and self.runs):
            raise ConfigError("--cache and --runs: give both, or --paper-configs, or --ablations")
        if self.ablations and self.paper_configs:
            raise ConfigError("--ablations and --paper-configs: give one")

