"""Test data for the extraction tests: a tiny synthetic EPIC-100 dataset, a corrupted copy, array reads."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np

from egocache.pipeline.options import ExtractOptions
from files import write_csv
from egocache.synth import SynthSummary, synthesize

# 2 videos of 10 s at 96x64: 1 training segment (1 clip) + 2 validation segments (3 clips each) = 7 clips.
NUM_CLIPS = 7
TEACHER_ARGS = ["--teacher", "mformer-tiny", "--frame-size", "32", "--shard-size", "1", "--batch-size", "4",
                "--device", "cpu", "--no-progress"]


def make_dataset(out: Path) -> SynthSummary:
    """The tiny synthetic dataset every extraction test reads."""
    return synthesize(str(out), videos=2, seed=0, size=(96, 64), duration_s=10.0)


def annotations(ds: SynthSummary) -> tuple[str, ...]:
    """The dataset's train and validation CSVs."""
    return (ds.train_csv, ds.validation_csv)


def options(ds: SynthSummary, cache: Path, **kw: object) -> ExtractOptions:
    """Extraction options of the tests: mformer-tiny on CPU, 32 px student frames, one clip per shard."""
    base: dict[str, object] = dict(teacher="mformer-tiny", dataset="epic100", annotations=annotations(ds),
                                   root=ds.root, cache=str(cache), frame_size=32, shard_size=1, batch_size=4,
                                   device="cpu", progress=False)
    base.update(kw)
    return ExtractOptions(**base)  # type: ignore[arg-type]


def cli_args(ds: SynthSummary, cache: Path, csvs: tuple[str, ...] | None = None, root: str | None = None
             ) -> list[str]:
    """`egocache extract` arguments equal to options(ds, cache)."""
    args = ["extract", *TEACHER_ARGS, "--dataset", "epic100", "--root", root or ds.root,
            "--cache", str(cache)]
    for a in csvs or annotations(ds):
        args += ["--annotations", a]
    return args


def read_arrays(cache: Path | str) -> dict[str, np.ndarray]:
    """Every array of a cache (a folder or an s3:// URL), read whole with plain zarr."""
    import zarr

    from egocache.cache import open_store

    group = zarr.open_group(open_store(str(cache)).zarr_store(read_only=True), mode="r")
    return {name: np.asarray(group[name][:]) for name in sorted(group.array_keys())}


# Bad inputs: video id -> what is wrong with it (the corrupted copy's EPIC CSV has one row per video).
BAD_VIDEOS = {
    "P02_101": "missing video file",
    "P02_102": "zero-byte video",
    "P02_103": "truncated video",
    "P02_104": "not a video",
    "P02_105": "missing IMU files",
    "P02_106": "broken IMU file",
    "P02_107": "clip outside the video",
}
# Under --imu required (the default) the videos without usable IMU are left out at manifest time, one
# line per video; the others fail clip by clip.
NO_IMU_VIDEOS = ("P02_105", "P02_106")
CLIP_FAILURES = tuple(v for v in BAD_VIDEOS if v not in NO_IMU_VIDEOS)


def make_bad_dataset(ds: SynthSummary, out: Path) -> tuple[str, str, str]:
    """A copy of `ds` plus one broken video per BAD_VIDEOS entry and two bad annotation rows.

    Returns (root, train CSV with every case, train CSV with clip failures only). The full CSV also
    has an unknown verb class and a repeated narration id, which the manifest reports as problems.
    """
    root = out / "bad"
    shutil.copytree(ds.root, root, symlinks=True)
    good = ds.videos[0]
    video, accl, gyro = Path(good.epic_video), Path(good.accl_csv), Path(good.gyro_csv)
    vids, meta = root / "P02" / "videos", root / "P02" / "meta_data"
    vids.mkdir(parents=True)
    meta.mkdir(parents=True)
    data = video.read_bytes()
    contents = {"P02_102": b"", "P02_103": data[: len(data) * 2 // 5],
                "P02_104": b"this is not a video\n" * 50}
    for vid in BAD_VIDEOS:
        if vid != "P02_101":
            (vids / f"{vid}.MP4").write_bytes(contents.get(vid, data))
        if vid != "P02_105":
            shutil.copy(accl, meta / f"{vid}-accl.csv")
            shutil.copy(gyro, meta / f"{vid}-gyro.csv")
    (meta / "P02_106-accl.csv").write_text("Milliseconds,AcclX,AcclY,AcclZ\nnot,a,number,here\n")
    with open(ds.train_csv, newline="") as fh:
        reader = csv.DictReader(fh)
        fields, first = list(reader.fieldnames or []), next(reader)
    rows = [dict(first)]
    for i, vid in enumerate(BAD_VIDEOS):
        row = dict(first, narration_id=f"{vid}_0", participant_id="P02", video_id=vid)
        if vid == "P02_107":
            row.update(start_timestamp="00:00:20.00", stop_timestamp="00:00:22.50")
        rows.append(row)
    only_clips = root / "clips_train.csv"
    write_csv(only_clips, fields, rows)
    rows.append(dict(first, narration_id="P01_101_7", verb_class="99"))      # unknown verb class
    rows.append(dict(first))                                                  # repeated narration id
    full = root / "EPIC_100_train.csv"
    write_csv(full, fields, rows)
    return str(root), str(full), str(only_clips)

