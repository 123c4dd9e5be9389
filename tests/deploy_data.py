"""Test data for the deploy tests: the tiny synthetic dataset, its extracted cache and students trained from it.

The chain is the real one (synth -> extract with mformer-tiny -> train-student), scaled to seconds: the
cache's single training clip trains each student for one epoch (frozen image encoder, batch 1), so
the students' accuracy means nothing, but their inputs, class names and pixels are those a user gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from egocache.pipeline.extract import extract
from egocache.student.config import TrainConfig
from egocache.student.train import train_student
from egocache.synth import SynthSummary, SynthVideo
from extract_data import make_dataset, options


@dataclass
class Chain:
    """The dataset, its cache, and run folders by name (egodistill-n1, egodistill-n2, visonly-n1,
    listentolook-n1)."""

    dataset: SynthSummary
    cache: str
    runs: dict[str, str]

    @property
    def video(self) -> SynthVideo:
        """The validation video (two annotated segments)."""
        return next(v for v in self.dataset.videos if v.split == "validation")

    def imu_args(self) -> list[str]:
        """`--imu` options of the validation video (EPIC accl + gyro CSVs)."""
        return ["--imu", str(self.video.accl_csv), "--imu", str(self.video.gyro_csv)]


RUNS = {"egodistill-n1": ("egodistill", 1), "egodistill-n2": ("egodistill", 2), "visonly-n1": ("visonly", 1),
        "listentolook-n1": ("listentolook", 1)}


def make_chain(root: Path, runs: tuple[str, ...] = tuple(RUNS)) -> Chain:
    """Synthesise, extract and train the named students under `root`."""
    ds = make_dataset(root / "ds")
    cache = root / "cache.zarr"
    extract(options(ds, cache))
    out = {}
    for name in runs:
        variant, frames = RUNS[name]
        cfg = TrainConfig(cache=str(cache), out=str(root / name), variant=variant, frames=frames, stage="distill",
                          epochs=1, batch_size=1, num_workers=0, device="cpu", freeze_image_encoder=True)
        train_student(cfg, progress=False, log=lambda msg: None)
        out[name] = str(root / name)
    return Chain(ds, str(cache), out)
