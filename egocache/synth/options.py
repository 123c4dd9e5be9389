"""The settings of `egocache synth` and of the generic image set, declared once (the CLI builds its options
from them)."""

from __future__ import annotations

from dataclasses import dataclass

from egocache.core.settings import check_settings, setting
from egocache.errors import ConfigError
from egocache.synth.images import MIN_SIZE, NUM_CLASSES, SyntheticImageSet

IMU_LAYOUTS = ("epic100", "ego4d", "both")


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (width, height), both even (H.264 4:2:0) and at least 16; ConfigError naming --size."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WIDTHxHEIGHT like 160x120, got {text!r}") from None
    if min(w, h) < 16 or w % 2 or h % 2:
        raise ConfigError(f"--size: width and height must be even and >= 16, got {text!r}")
    return w, h


@dataclass(frozen=True, kw_only=True)
class SynthOptions:
    """Where and how big the synthetic dataset is."""

    out: str = setting(path="new-dir", argument=True, help="Folder to write the dataset into (new or empty).")
    videos: int = setting(4, min=1, help="Number of videos.")
    seed: int = setting(0, help="Same seed, same bytes.")
    size: str = setting("160x120", check=parse_size, metavar="WxH", help="Frame WIDTHxHEIGHT.")
    fps: float = setting(30.0, min=0, min_open=True, help="Frames per second.")
    duration: float = setting(30.0, min=0, min_open=True, help="Seconds per video.")
    validation_share: float = setting(0.25, min=0, max=0.5,
                                      help="Share of the videos in the validation split (0.5: every other one).")
    imu_layout: str = setting("both", choices=IMU_LAYOUTS, help="EPIC-100 (<P>/videos, <P>/meta_data) and/or "
                                                                "Ego4D (full_scale/, imu/) files.")
    rgb_frames: bool = setting(False, help="Also write the EPIC RGB-frame release (<P>/rgb_frames/<video>/"
                                           "frame_0000000001.jpg, ...) at its 50 fps.")
    audio: bool = setting(True, help="Give every video a sound track (AAC, 24 kHz mono) whose sounds go with "
                                     "some verbs (docs/synthetic.md).")
    workers: int = setting(1, min=1, help="Processes rendering and encoding the videos (the same bytes for any "
                                          "number).")

    def __post_init__(self) -> None:
        """Check every setting where the options are built."""
        check_settings(self)


@dataclass(frozen=True, kw_only=True)
class ImageSetOptions:
    """Which generic synthetic image set (synth/images.py) `egocache pretrain-image-encoder` trains on."""

    classes: int = setting(NUM_CLASSES, min=2, max=NUM_CLASSES,
                           help="Classes (shape x pattern x colour family); the first K of them.")
    size: int = setting(64, min=MIN_SIZE, help="Side of the square images in pixels (the demo's student "
                                               "frames: 64; the paper's: 224).")

    def __post_init__(self) -> None:
        """Check every setting where the options are built."""
        check_settings(self)

    def build(self) -> SyntheticImageSet:
        """The image set these options describe."""
        return SyntheticImageSet(self.classes, self.size)
