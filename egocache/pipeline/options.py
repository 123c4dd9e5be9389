"""The settings of the pipeline's commands, `extract`, `train-teacher` and `test-teacher`, each declared once.

What they all read is declared once in a shared group, which every option class inherits:
`DataOptions` (annotations -> manifest), `TeacherOptions` (which teacher, which weights, which
device) and the stored frame size, which fixes the frame plan (pipeline/frames.py) and so the pixels
the teacher sees in each. The CLI builds its options from these declarations (core/settings.py).
No torch here: `egocache --help` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egocache.cache.schema import FRAME_CODECS
from egocache.cache.selections import FRAME_SELECTIONS
from egocache.core.device import check_device_name
from egocache.core.settings import check_settings, setting
from egocache.errors import ConfigError
from egocache.pipeline.audio import AUDIO_MODES
from egocache.pipeline.datasets import ADAPTERS, DATASET_META_FILE, Manifest, load_manifest
from egocache.pipeline.datasets.common import FRAMES_SOURCES, AdapterOptions
from egocache.pipeline.datasets.selection import IMU_MODES, PROTOCOL_NAMES, Selection
from egocache.pipeline.frames import SPATIAL_CROPS


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """Which annotations, where the videos and IMU are, how segments become clips."""

    dataset: str = setting(choices=lambda: list(ADAPTERS), help="Annotation format.")
    annotations: tuple[str, ...] = setting(path="file", help="Annotation file (repeatable: e.g. the train and "
                                                            "validation CSVs).")
    root: str = setting(path="dir", help="Dataset root holding the videos and IMU files.")
    dataset_meta: str | None = setting(None, path="file", default_text=f"ROOT/{DATASET_META_FILE} if present",
                                       help="Dataset metadata file (motion-pair verbs).")
    eval_clips: int = setting(3, min=1, help="Clips per validation segment (predictions averaged per segment).")
    train_clips: int = setting(1, min=1, help="Clips per training segment, spread over it (more training data "
                                              "from few segments).")
    # --- which segments, in which split (pipeline/datasets/selection.py) ---------------------------
    protocol: str | None = setting(None, choices=PROTOCOL_NAMES, help="The paper's data protocol for epic100 "
                                   "or ego4d (App. B): its IMU, audio, split and class rules, verb labels.")
    imu: str = setting("required", choices=IMU_MODES, help="required: leave out videos without IMU (what IMU "
                       "students need); optional: keep their clips, flagged as without IMU; none: read no IMU.")
    imu_keep_backwards: bool = setting(False, help="Keep IMU windows where the file's timestamps ran backwards "
                                                   "(Ego4D: often 0.5-1 s off the video there).")
    eval_participants: list[str] = setting(factory=list, metavar="P30,P35,...", help="Camera wearers whose "
                                           "segments form the validation split; everyone else trains.")
    split_file: str | None = setting(None, path="file", help="CSV of id (video, segment or clip id) -> split; "
                                                             "segments it does not list are left out.")
    min_class_instances: int = setting(1, min=1, help="Leave out classes (main head) with fewer segments.")
    split_seed: int = setting(0, help="Seed of the random per-class split of a protocol (recorded in the cache).")
    # --- where frames and IMU come from (the adapters) --------------------------------------------
    frames_source: str = setting("auto", choices=FRAMES_SOURCES, help="EPIC: read the videos, the RGB-frame "
                                 "folders (<P>/rgb_frames/<video>), or the video where present else the folder.")
    rgb_frames_fps: float | None = setting(None, min=0, min_open=True, default_text="EPIC: 50 for PXX_1YY, else 60",
                                           help="Frame rate of the RGB-frame folders.")
    ego4d_narration_window: bool = setting(False, help="Ego4D: use the narration's start_sec..end_sec for "
                                                       "actions without usable pre/post frames (else skipped).")
    ego4d_metadata: str | None = setting(None, path="file", default_text="ROOT/ego4d.json if present",
                                         help="Ego4D metadata with videos[].has_imu.")

    def load_manifest(self) -> Manifest:
        """The manifest these options describe."""
        adapter = AdapterOptions(frames_source=self.frames_source, rgb_frames_fps=self.rgb_frames_fps,
                                 narration_window=self.ego4d_narration_window, ego4d_metadata=self.ego4d_metadata)
        selection = Selection(imu=self.imu, split_file=self.split_file,
                              eval_participants=tuple(self.eval_participants),
                              min_class_instances=self.min_class_instances, split_seed=self.split_seed)
        return load_manifest(self.dataset, list(self.annotations), self.root, eval_clips=self.eval_clips,
                             train_clips=self.train_clips, dataset_meta=self.dataset_meta, adapter=adapter,
                             selection=selection, protocol=self.protocol)


@dataclass(frozen=True, kw_only=True)
class TeacherOptions:
    """Which teacher, with which weights and overrides, on which device."""

    teacher: str = setting(help="Registered teacher name (`egocache teachers` lists them), e.g. mformer, or a "
                                "teacher spec file SPEC.json naming a torch.export .pt2 or TorchScript file or a "
                                "module:factory entry point (docs/internals.md).")
    checkpoint: str | None = setting(None, path="file", help="Teacher weights (ours or an official MotionFormer "
                                                            ".pyth); a seeded random init if omitted.")
    teacher_overrides: tuple[tuple[str, Any], ...] = setting(
        (), flag="--teacher-option", help="Override a teacher setting (repeatable), e.g. img_size=32.")
    device: str = setting("auto", check=check_device_name, help="auto (cuda when available), cpu, cuda or cuda:K; "
                                                                "cuda runs bf16 autocast.")
    frame_size: int = setting(224, min=8, help="Side of the stored student frames in pixels; frames are decoded "
                                               "at the larger of this and the teacher's input size.")


@dataclass(frozen=True, kw_only=True)
class ExtractOptions(DataOptions, TeacherOptions):
    """Everything `extract` needs; each field declares its `egocache extract` option."""

    cache: str = setting(path="new-cache", help="Output Zarr cache: a folder, or an fsspec URL such as "
                         "s3://bucket/cache.zarr (needs the s3 extra).")
    teacher_name: str | None = setting(None, help="Into an existing cache of another teacher, the teacher is added "
                                       "as the group teachers/NAME (frames and IMU are not rewritten); default: "
                                       "its registered name or its spec file's stem.")
    frames: tuple[int, ...] = setting((1, 2, 4), min=1, help="Student frame counts N to store frames for "
                                                            "(train-student --frames picks one).")
    frame_selections: list[str] = setting(factory=lambda: ["uniform"], choices=FRAME_SELECTIONS,
                                          help="Frame selections to store for each N, comma-separated "
                                               "(train-student --frame-selection picks one; paper Table 4).")
    first_last: bool = setting(True, help="Also store each clip's first and last frame (self-supervised IMU stage).")
    audio: str = setting("optional", choices=AUDIO_MODES, help="Store each clip's log spectrogram (16 kHz mono, "
                         "STFT 400/160). optional: clips of videos without audio are kept, flagged audio_present "
                         "0; required: they fail; none: no audio arrays.")
    frame_codec: str = setting("raw", choices=FRAME_CODECS, help="Stored frames: raw uint8 (fastest reads) or "
                                                                 "JPEG q90 (~7x smaller).")
    shard_size: int = setting(64, min=1, help="Clips per cache shard (= per task).")
    batch_size: int = setting(8, min=1, help="Clips per teacher forward pass.")
    decode_threads: int = setting(1, min=0, help="ffmpeg threads per decoding worker (0 = one per core).")
    torch_threads: int = setting(1, min=0, help="torch CPU threads per worker process (0: torch's default). One "
                                                "count for every worker keeps features bitwise equal whatever --workers.")
    workers: int = setting(1, min=0, help="0 or 1: run in this process; N >= 2: a local dask cluster of N "
                                          "worker processes.")
    scheduler: str | None = setting(None, metavar="ADDRESS", help="Run on an existing dask.distributed "
                                                                  "scheduler (e.g. tcp://host:8786) instead.")
    strict: bool = setting(False, help="Stop at the first bad annotation or clip (exit code 1).")
    dry_run: bool = setting(False, help="Check every video, frame folder and IMU source and print the preflight "
                                        "summary; decode nothing, write nothing.")
    progress: bool = setting(True, help="Show a progress bar.")

    def __post_init__(self) -> None:
        """Check every setting where the options are built."""
        check_settings(self)


@dataclass(frozen=True, kw_only=True)
class TeacherTrainConfig(DataOptions, TeacherOptions):
    """What `train-teacher` fine-tunes on which data, and how; the defaults suit mformer-tiny on the
    synthetic set (the paper's real fine-tune: lr 1e-4, batch 64)."""

    out: str = setting(path="new-file", help="Checkpoint to write; OUT with suffix .json (summary) and .val.npz "
                                             "(validation logits) too, and OUT.partial.pt while training.")
    reset_heads: bool = setting(False, help="Re-initialise the checkpoint's heads when their class counts "
                                            "differ from the dataset's.")
    train_clips: int = setting(4, min=1, help="Clips per training segment, spread over it; an epoch sees them all.")
    epochs: int = setting(30, min=1, help="Training epochs.")
    batch_size: int = setting(16, min=1, help="Clips per step.")
    lr: float = setting(2e-3, min=0, min_open=True, help="AdamW peak learning rate (linear warm-up, cosine decay).")
    weight_decay: float = setting(0.05, min=0, help="AdamW weight decay (not on biases and norms).")
    warmup_epochs: int = setting(2, min=0, help="Epochs of linear learning-rate warm-up.")
    max_frames_gb: float = setting(8.0, min=0, min_open=True, help="Refuse runs whose decoded frames exceed this "
                                                                   "in memory (GB).")
    seed: int = setting(0, help="Seed of init, data order and augmentation.")
    checkpoint_every: int = setting(200, min=1, help="Also save the training state every K steps inside an "
                                                     "epoch (a killed run resumes from it).")
    progress: bool = setting(True, help="Show progress bars on stderr.")

    def __post_init__(self) -> None:
        """Check every setting where the config is built."""
        check_settings(self)
        if Path(self.out).suffix in (".json", ".npz"):
            raise ConfigError(f"--out {self.out}: the summary and logits take .json/.val.npz next to it; give "
                              "the checkpoint another suffix (e.g. .pyth)")


def parse_views(text: str) -> tuple[int, int]:
    """'10x3' -> (10 clips over the segment, 3 spatial crops); ConfigError naming --views otherwise."""
    t, sep, s = text.strip().lower().partition("x")
    if not (sep and t.isdigit() and s.isdigit() and int(t) >= 1 and int(s) in SPATIAL_CROPS):
        raise ConfigError(f"--views: expected TxS with T >= 1 clips per segment and S in "
                          f"{', '.join(map(str, SPATIAL_CROPS))} spatial crops (e.g. 10x3 or 1x1), got {text!r}")
    return int(t), int(s)


@dataclass(frozen=True, kw_only=True)
class TeacherTestOptions(DataOptions, TeacherOptions):
    """Everything `test-teacher` needs: the teacher, the data as `extract` reads it, the views per segment."""

    eval_clips: int = setting(1, min=1, max=1, cli=False, help="One manifest clip per segment (its centre "
                                                               "clip); --views decides the clips evaluated.")
    train_clips: int = setting(1, min=1, max=1, cli=False, help="As eval_clips, for training segments.")
    split: str = setting("validation", help="Split whose segments are evaluated.")
    views: str = setting("10x3", check=parse_views, metavar="TxS",
                         help="Views per segment whose softmax is averaged: T clips spread over the segment x "
                              "S spatial crops (3: left/top, centre, right/bottom; 1: centre). MotionFormer's "
                              "EPIC test is 10x3; 1x1 is the segment's centre clip, as extraction caches it.")
    batch_size: int = setting(8, min=1, help="Views per teacher forward pass.")
    out: str | None = setting(None, path="new-file", help="Also write the result as JSON to this file.")
    progress: bool = setting(True, help="Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        """Check every setting where the options are built."""
        check_settings(self)
