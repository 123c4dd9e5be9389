"""What a trained student expects as input, saved with its run (`OUT/run.json`) so it runs without its cache.

A student is trained on frames and IMU windows that extraction prepared in one particular way: N frames
at fixed positions of a clip of T teacher frames at a stride (2.133 s for 16x4), decoded at the larger
of the teacher's and the stored frame size and resized to the frame size, and a mean-centred IMU window
of 422 samples at 198 Hz. `StudentInputs` holds those facts, read from the cache's root attributes when
`train-student` starts (`inputs_from_cache`), and the class names of every head in the student's output
order. Running the student on a video (`egocache predict`, `egocache.deploy`) needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egocache.core.files import write_json_atomic
from egocache.errors import CheckpointError

RUN_INPUTS_FILE = "run.json"
RUN_INPUTS_FORMAT = 1


@dataclass(frozen=True)
class StudentInputs:
    """The clip geometry, frame size, IMU window and class names a student was trained with."""

    variant: str
    frames: int                          # N frames per clip
    frame_size: int                      # side of the (square) student frames
    teacher_size: int                    # teacher input side at extraction (frames decoded at max of the two)
    positions: tuple[float, ...]         # where the N frames sit in the clip, fractions in [0, 1]
    clip_frames: int                     # teacher frames T per clip (fixes the clip span with the stride)
    clip_stride: int                     # native frames between teacher frames at 30 fps
    clip_seconds: float                  # clip duration (T * stride / 30)
    imu_rate_hz: float
    imu_window: int
    imu_channels: tuple[str, ...]
    needs_imu: bool                      # whether the variant reads the IMU window
    heads: dict[str, list[str]]          # head -> class names, in the student's output order
    source: dict[str, Any] = field(default_factory=dict)   # cache path and id, teacher, dataset (for people)
    frame_selection: str = "uniform"     # which stored frames: a "random" student drew its N per clip
    needs_audio: bool = False            # whether the variant reads the clip's log spectrogram (listentolook)
    audio: dict[str, Any] = field(default_factory=dict)    # the cache's audio section (STFT settings), if read

    @property
    def sensor(self) -> str:
        """The model's second input: "audio" (the clip's log spectrogram) for an audio variant, else "imu"
        (vision-only variants take an IMU-shaped input they ignore)."""
        return "audio" if self.needs_audio else "imu"

    @property
    def sensor_shape(self) -> tuple[int, int]:
        """Per-clip shape of the second input: (frequency bins, STFT frames) or (IMU samples, channels)."""
        if self.needs_audio:
            return int(self.audio["freq_bins"]), int(self.audio["frames"])
        return self.imu_window, len(self.imu_channels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with the format number)."""
        out = dataclasses.asdict(self)
        out["positions"], out["imu_channels"] = list(self.positions), list(self.imu_channels)
        return {"format": RUN_INPUTS_FORMAT, **out}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "StudentInputs":
        """Inverse of to_dict; CheckpointError naming `where` if the content is not such a record."""
        if not isinstance(data, dict) or data.get("format") != RUN_INPUTS_FORMAT:
            raise CheckpointError(f"{where}: not an egocache student input record (format {RUN_INPUTS_FORMAT})")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names - set(data) if n not in ("source", "frame_selection", "needs_audio", "audio"))
        if missing:
            raise CheckpointError(f"{where}: student input record lacks {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in names}
        try:
            inputs = cls(**{**values, "positions": tuple(float(p) for p in values["positions"]),
                            "imu_channels": tuple(values["imu_channels"]),
                            "heads": {str(h): [str(c) for c in v] for h, v in values["heads"].items()}})
        except (TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{where}: malformed student input record ({exc})") from exc
        if len(inputs.positions) != inputs.frames:
            raise CheckpointError(f"{where}: {len(inputs.positions)} frame positions for N={inputs.frames}")
        return inputs


def inputs_from_cache(info: Any, *, variant: str, frames: int, heads: list[str],
                      frame_selection: str = "uniform") -> StudentInputs:
    """The inputs of a `variant` student with N=`frames` and `heads` trained from the cache `info` (CacheInfo).

    A "random" frame selection has no fixed positions; its record holds the uniform ones and says
    "random", so that a deployment can refuse it (`check_deployable`).
    """
    from egocache.cache.selections import selection_positions
    from egocache.student.variants import variant_spec

    sam, teacher, imu = info.sampling, info.teacher, info.imu
    sel = "uniform" if frame_selection == "random" else frame_selection
    return StudentInputs(
        variant=variant, frames=frames, frame_size=int(sam["frame_size"]),
        teacher_size=int(teacher.get("img_size") or 0),
        positions=tuple(selection_positions(sel, frames)), frame_selection=frame_selection,
        clip_frames=int(sam["t"]), clip_stride=int(sam["stride"]), clip_seconds=float(sam["clip_seconds"]),
        imu_rate_hz=float(imu["rate_hz"]), imu_window=int(imu["window"]), imu_channels=tuple(imu["channels"]),
        needs_imu=variant_spec(variant).imu, heads={h: list(info.heads[h]) for h in heads},
        needs_audio=variant_spec(variant).audio,
        audio=dict(info.audio) if variant_spec(variant).audio and getattr(info, "audio", None) else {},
        source={"cache": os.path.abspath(info.path), "teacher": teacher.get("name"),
                "dataset": info.source.get("dataset")})


def write_run_inputs(out: str | os.PathLike[str], inputs: StudentInputs) -> Path:
    """Write OUT/run.json atomically."""
    return write_json_atomic(Path(out) / RUN_INPUTS_FILE, inputs.to_dict(), sort_keys=False)


def read_run_inputs(run: str | os.PathLike[str]) -> tuple[StudentInputs, str]:
    """(the inputs of the student in run folder `run`, where they were read from).

    From RUN/run.json, which `train-student` writes; a run made before it did is described by the
    cache named in RUN/config.json, if that cache is still there (the second value says which).
    """
    path = Path(run) / RUN_INPUTS_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: unreadable ({exc})") from exc
        return StudentInputs.from_dict(data, str(path)), str(path)
    config = Path(run) / "config.json"
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CheckpointError(f"{run}: not a student run folder (no readable {RUN_INPUTS_FILE} or config.json)") \
            from None
    cache = cfg.get("cache") or ""
    if not (Path(cache) / "zarr.json").is_file():
        raise CheckpointError(f"{path}: missing, and the run's cache {cache!r} (config.json) is not there to "
                              "describe its inputs; rerun train-student with --resume to write it")
    from egocache.cache import open_cache

    inputs = inputs_from_cache(open_cache(cache), variant=cfg["variant"], frames=int(cfg["frames"]),
                               heads=list(cfg["heads"]), frame_selection=cfg.get("frame_selection", "uniform"))
    return inputs, f"cache {cache} (the run has no {RUN_INPUTS_FILE})"


def check_deployable(inputs: StudentInputs, where: str) -> None:
    """Refuse a student without fixed frame positions (trained on a random frame selection), and an audio
    student whose record lacks the STFT settings it was trained with (a run from before audio)."""
    if inputs.needs_audio and not {"freq_bins", "frames", "window_seconds"} <= set(inputs.audio):
        raise CheckpointError(f"{where}: a {inputs.variant} student whose input record lacks the cache's audio "
                              "settings; rerun train-student with --resume to write them")
    if inputs.frame_selection == "random":
        raise CheckpointError(f"{where}: trained on a random frame selection (an ablation of paper Table 4), so it "
                              "has no fixed frame positions to run on; deploy a student trained with "
                              "--frame-selection uniform, first, last or center")
