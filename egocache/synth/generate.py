"""The built-in synthetic egocentric dataset: head-camera videos, IMU and EPIC-KITCHENS-100 style labels.

`synthesize(out_dir, ...)` writes long videos (H.264 .mp4) of a head-mounted camera looking around an
isotropically textured world, with annotated action segments (2-4 s) and idle stretches between them.
Each video gets an IMU stream (accelerometer + gyroscope, about 200 Hz, jittered timestamps, noise and
drifting bias) that is the exact motion of the rendered camera (see synth_motion). Labels follow the
EPIC-100 CSV schema; files follow the EPIC-100 and/or Ego4D layouts.

The world has the premises of EgoDistill (docs/synthetic.md says why each is there):
- The action is visible over time in the frames. In a motion pair (MOTION_PAIRS, e.g. take/put) the
  object moves one way or the other (lifted up or put down, swung open or shut, turned on or off, see
  synth/render.py) and the two verbs run the same path in opposite directions: every quantity a single
  frame shows has the same distribution for both verbs (the world's texture is isotropic and freshly
  drawn per kitchen, the head direction at the segment centre is drawn independently of the verb), so
  one frame cannot tell them apart, while a clip of frames (which way the object moves) can.
- Head motion goes with the action only partly (the paper's Fig. 5): in HEAD_SHARES["informative"] of
  the motion-pair segments the head turns with the object along the pair's axis; in "weak" ones it
  barely moves (WEAK_TURN_FACTOR of a turn, along a random axis in a random direction: the IMU says
  nothing the frames do not), in "unrelated" ones it turns a full turn along a random axis in a random
  direction (drastic motion unrelated to the action).
  synth.json records each segment's kind. Within a segment the head turns with a smooth speed profile
  (still at the segment's ends, fastest in the middle), so the turn survives the IMU window's centring.
- Sensor noise, jittered timestamps and drifting biases on both IMU sensors.
- A sound track (AAC, synth/audio.py) on which cut/pour/wash are loud and distinct and the motion
  pairs quiet and alike within each pair, with background noise and unrelated events.
Appearance verbs (APPEARANCE_VERBS) show a distinctive cue and move the head at random.
Same seed, same bytes: everything is drawn from numpy generators seeded by `seed`, and x264 runs single-
threaded with fixed options (identical output for the same seed and the same numpy/PyAV builds).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
from tqdm import tqdm

from egocache import __version__
from egocache.core.files import write_atomic, write_json_atomic
from egocache.errors import ConfigError, EgocacheError
from egocache.pipeline.datasets.epic100 import RGB_FPS
from egocache.pipeline.datasets.meta import DATASET_META_FILE, dataset_meta_json
from egocache.synth.audio import AUDIO_RATE_HZ, audio_meta, audio_rng, sound_track
from egocache.synth.files import (CLASS_COLUMNS, EPIC_COLUMNS, IMU_RATE_HZ, epic_timestamp, link, write_csv,
                                  write_imu, write_rgb_frames)
from egocache.synth.options import SynthOptions
from egocache.synth.motion import HeadMotion, HermiteTrack, random_sines
from egocache.synth.render import (HFOV_DEG, Prop, SceneRenderer, encode_video, texture_width,
                                            world_texture)
from egocache.synth.vocab import NOUN_BY_KEY, NOUN_SPECS, VERB_BY_KEY, VERB_SPECS

GENERATOR = "egocache.synth"   # synth.json "generator" of this dataset
MOTION_PAIRS: list[tuple[str, str]] = [("take", "put"), ("open", "close"), ("turn-on", "turn-off")]
APPEARANCE_VERBS: tuple[str, ...] = ("wash", "cut", "pour")
VERBS: tuple[str, ...] = tuple(v.key for v in VERB_SPECS)
NOUNS: tuple[str, ...] = tuple(n.key for n in NOUN_SPECS)

EDGE_S = 1.2                      # idle before the first and after the last segment (holds an IMU window)
SEGMENT_S = (2.0, 4.0)
GAP_S = (0.8, 1.8)
AXES = ("yaw", "pitch", "roll")
AXIS_TURN_DEG = {"yaw": (24.0, 36.0), "pitch": (16.0, 24.0), "roll": (24.0, 32.0)}   # motion-pair head turn
OFF_AXIS_DEG = 4.0                # motion-pair verbs: random drift of the other two axes
APPEARANCE_TURN_DEG = {"yaw": 30.0, "pitch": 20.0, "roll": 28.0}   # appearance verbs: up to this, either way
CENTRE_DEG = {"pitch": 15.0, "roll": 5.0}                                          # head at a segment centre
KNOB_SPIN_DEG = (120.0, 200.0)
PROP_RADIUS = (0.15, 0.19)        # the object's size, a fraction of the image height
HEAD_SHARES = {"informative": 0.5, "weak": 0.25, "unrelated": 0.25}   # motion-pair segments' head motion
WEAK_TURN_FACTOR = 0.1

assert all(v in VERB_BY_KEY for pair in MOTION_PAIRS for v in pair) and set(APPEARANCE_VERBS) <= set(VERBS)


@dataclass(frozen=True)
class SynthVideo:
    """One synthetic video and where its files are (None for a layout that was not written)."""

    video_id: str
    participant_id: str
    split: str
    num_frames: int
    duration_s: float
    num_segments: int
    video_path: str               # the real file (the EPIC one when both layouts are written)
    epic_video: str | None
    ego4d_video: str | None
    accl_csv: str | None
    gyro_csv: str | None
    ego4d_imu_csv: str | None
    rgb_frames: str | None = None     # EPIC RGB-frame folder (rendered at the release's 50 fps)
    audio_events: tuple[dict[str, Any], ...] = ()   # the sounds of its track (synth/audio.py), if it has one


PATH_FIELDS = ("video_path", "epic_video", "ego4d_video", "accl_csv", "gyro_csv", "ego4d_imu_csv", "rgb_frames")
IMU_UNITS = {"accl": "m/s^2", "gyro": "rad/s"}


@dataclass(frozen=True)
class SynthSummary:
    """What `synthesize` wrote: annotation and class files, metadata, and every video."""

    root: str
    train_csv: str
    validation_csv: str
    verb_classes_csv: str
    noun_classes_csv: str
    meta_json: str
    dataset_meta: str             # egocache-dataset.json: the facts extraction carries into the cache
    videos: list[SynthVideo] = field(default_factory=list)
    seed: int = 0
    size: tuple[int, int] = (0, 0)
    fps: float = 0.0
    duration_s: float = 0.0
    imu_layout: str = "both"
    validation_share: float = 0.25
    audio: bool = True

    def num_segments(self, split: str) -> int:
        """Annotated segments in `split` ("train" or "validation")."""
        return sum(v.num_segments for v in self.videos if v.split == split)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (for `--json` and synth.json)."""
        out = asdict(self)
        out["segments"] = {s: self.num_segments(s) for s in ("train", "validation")}
        return out


@dataclass(frozen=True)
class _Segment:
    """A planned action: times (s, on a 0.01 s grid), labels, head state and the drawn object."""

    start: float
    stop: float
    verb: str
    noun: str
    centre: np.ndarray            # yaw, pitch, roll (rad) at the segment centre
    turn: np.ndarray              # change of yaw, pitch, roll over the segment (rad)
    prop: Prop
    head: str                     # motion-pair verbs: "informative", "weak", "unrelated"; else "random"


def _verb_deck(rng: np.random.Generator) -> Callable[[], str]:
    """Draw verbs as a dealer would from shuffled decks of all verbs, so classes stay balanced."""
    deck: list[str] = []

    def draw() -> str:
        if not deck:
            deck.extend(str(v) for v in rng.permutation(VERBS))
        return deck.pop()

    return draw


def _segment_times(rng: np.random.Generator, duration_s: float) -> list[tuple[float, float]]:
    """Segment (start, stop) times: an idle lead-in, then segments separated by idle gaps."""
    times: list[tuple[float, float]] = []
    t = round(rng.uniform(EDGE_S, EDGE_S + 0.8), 2)
    while True:
        length = round(rng.uniform(*SEGMENT_S), 2)
        if t + length + EDGE_S > duration_s:
            return times
        times.append((t, round(t + length, 2)))
        t = round(t + length + rng.uniform(*GAP_S), 2)


def _plan_segment(rng: np.random.Generator, start: float, stop: float, verb: str, prev_yaw: float | None,
                  size: tuple[int, int], show: tuple[float, float]) -> _Segment:
    """Labels, head turn and object look of one segment; nothing here depends on the verb's direction
    except the direction of the object's motion and, when the head moves with it, of the head's turn."""
    spec = VERB_BY_KEY[verb]
    noun = str(rng.choice(spec.nouns))
    yaw = rng.uniform(0, 2 * np.pi) if prev_yaw is None else prev_yaw + math.radians(rng.uniform(-100, 100))
    centre = np.array([yaw, math.radians(rng.uniform(-1, 1) * CENTRE_DEG["pitch"]),
                       math.radians(rng.uniform(-1, 1) * CENTRE_DEG["roll"])])
    head = "random"
    if spec.axis is None:
        turn = np.radians([rng.uniform(-1, 1) * APPEARANCE_TURN_DEG[a] for a in AXES])
    else:
        head = str(rng.choice(list(HEAD_SHARES), p=list(HEAD_SHARES.values())))
        axis, sign = ((spec.axis, spec.sign) if head == "informative"
                      else (str(rng.choice(AXES)), int(rng.choice([-1, 1]))))
        turn = np.radians(rng.uniform(-OFF_AXIS_DEG, OFF_AXIS_DEG, size=3))
        turn[AXES.index(axis)] = sign * math.radians(rng.uniform(*AXIS_TURN_DEG[axis]))
        if head == "weak":
            turn *= WEAK_TURN_FACTOR
    w, h = size
    look = NOUN_BY_KEY[noun]
    angle = rng.uniform(0, 2 * np.pi) if look.spins else rng.uniform(-0.15, 0.15)
    spin = spec.sign * math.radians(rng.uniform(*KNOB_SPIN_DEG)) if spec.axis == "roll" else 0.0
    prop = Prop(noun=noun, overlay=spec.overlay, cx=w * (0.5 + rng.uniform(-0.12, 0.12)),
                cy=h * (0.5 + rng.uniform(-0.1, 0.1)), radius=h * rng.uniform(*PROP_RADIUS), angle=angle,
                spin=spin, start=start, stop=stop, show_from=show[0], show_to=show[1], motion=spec.motion,
                direction=spec.sign)
    return _Segment(start, stop, verb, noun, centre, turn, prop, head)


def _head_motion(rng: np.random.Generator, segments: list[_Segment], duration_s: float) -> HeadMotion:
    """Head tracks through every segment (still at its ends, fastest at its centre: 1.5x the mean rate),
    C1 cubic joins in the idle stretches."""
    def rest_near(yaw: float) -> np.ndarray:
        """A still head pose at a random pitch/roll, within 30 degrees of `yaw`."""
        return np.array([yaw + math.radians(rng.uniform(-30, 30)),
                         math.radians(rng.uniform(-1, 1) * CENTRE_DEG["pitch"]),
                         math.radians(rng.uniform(-1, 1) * CENTRE_DEG["roll"])])

    begin = rest_near(segments[0].centre[0] - segments[0].turn[0] / 2)
    end = rest_near(segments[-1].centre[0] + segments[-1].turn[0] / 2)
    t, v, d = [0.0], [begin], [np.zeros(3)]
    for s in segments:
        peak = 1.5 * s.turn / (s.stop - s.start)
        t += [s.start, (s.start + s.stop) / 2, s.stop]
        v += [s.centre - s.turn / 2, s.centre, s.centre + s.turn / 2]
        d += [np.zeros(3), peak, np.zeros(3)]
    t.append(duration_s)
    v.append(end)
    d.append(np.zeros(3))
    times, values, rates = np.array(t), np.array(v), np.array(d)
    tracks = [HermiteTrack(times, values[:, k], rates[:, k]) for k in range(3)]
    wobble = random_sines(rng, tuple(math.radians(a) for a in (0.6, 0.6, 0.3)), (0.4, 2.5))
    sway = random_sines(rng, (0.012, 0.012, 0.008), (0.3, 1.6))
    return HeadMotion(*tracks, wobble=wobble, sway=sway)


def _plan_video(rng: np.random.Generator, draw_verb: Callable[[], str], duration_s: float,
                size: tuple[int, int]) -> tuple[list[_Segment], HeadMotion]:
    """Segments and head motion of one video."""
    times = _segment_times(rng, duration_s)
    edges = [0.0] + [x for se in times for x in se] + [duration_s]
    segments: list[_Segment] = []
    for k, (start, stop) in enumerate(times):
        margin = min(0.3, 0.45 * (start - edges[2 * k]), 0.45 * (edges[2 * k + 3] - stop))
        prev_yaw = None if not segments else float(segments[-1].centre[0] + segments[-1].turn[0] / 2)
        segments.append(_plan_segment(rng, start, stop, draw_verb(), prev_yaw, size,
                                      (start - margin, stop + margin)))
    return segments, _head_motion(rng, segments, duration_s)


def _annotation_rows(video_id: str, participant: str, segments: list[_Segment], fps: float,
                     rng: np.random.Generator) -> list[list[Any]]:
    """EPIC-100 CSV rows for one video's segments."""
    rows = []
    for k, s in enumerate(segments):
        verb_id, noun_id = VERBS.index(s.verb), NOUNS.index(s.noun)
        narrated = max(0.0, s.start - rng.uniform(0.1, 0.8))
        rows.append([f"{video_id}_{k}", participant, video_id, epic_timestamp(narrated, 3),
                     epic_timestamp(s.start), epic_timestamp(s.stop), int(round(s.start * fps)),
                     int(round(s.stop * fps)), f"{s.verb} {s.noun}", s.verb, verb_id, s.noun, noun_id,
                     f"['{s.noun}']", f"[{noun_id}]"])
    return rows


@dataclass
class _VideoJob:
    """What one video's files are drawn from: everything `_write_video` needs, picklable for a worker."""

    files: dict[str, str | None]
    size: tuple[int, int]
    motion: HeadMotion
    props: list[Prop]
    num_frames: int
    fps: float
    duration_s: float
    track: np.ndarray | None                # the sound track, or None without audio
    imu_rngs: list[np.random.Generator]


def _write_kitchen(world_seed: np.random.SeedSequence, jobs: list[_VideoJob], bar: tqdm | None = None) -> None:
    """Draw one participant's kitchen texture and write each of their videos in it; tick `bar` per frame."""
    texture = world_texture(np.random.default_rng(world_seed), texture_width(jobs[0].size[0]))
    for job in jobs:
        _write_video(job, texture, bar)


def _write_video(job: _VideoJob, texture: np.ndarray, bar: tqdm | None) -> None:
    """Render and encode one video (atomically, with its sound track), its RGB frames if asked for, the
    Ego4D link and its IMU files."""
    size = job.size
    renderer = SceneRenderer(texture, size, job.motion, job.props)
    files = job.files

    def frames() -> Iterator[np.ndarray]:
        for img in renderer.frames(np.arange(job.num_frames) / job.fps):
            if bar is not None:
                bar.update(1)
            yield img

    video_path = files["epic_video"] or files["ego4d_video"]
    write_atomic(video_path, lambda tmp: encode_video(tmp, frames(), size, job.fps, job.track, AUDIO_RATE_HZ))
    if files.get("rgb_frames"):
        write_rgb_frames(files["rgb_frames"], renderer.frames(np.arange(int(job.duration_s * RGB_FPS["extension"]))
                                                              / RGB_FPS["extension"]))
    if files["epic_video"] and files["ego4d_video"]:
        link(files["epic_video"], files["ego4d_video"])
    write_imu(job.motion, job.duration_s, job.imu_rngs, files["accl_csv"], files["gyro_csv"], files["ego4d_imu_csv"])


def _check_args(out_dir: str, videos: int, size: tuple[int, int], fps: float, duration_s: float,
                imu_layout: str, validation_share: float, workers: int) -> None:
    """Refuse arguments that cannot make a dataset, naming the option (ConfigError) or the folder."""
    SynthOptions(out=out_dir, videos=videos, size=f"{size[0]}x{size[1]}", fps=fps,
                 duration=duration_s, imu_layout=imu_layout, validation_share=validation_share,
                 workers=workers)   # checks each setting
    if duration_s < 2 * EDGE_S + 0.8 + SEGMENT_S[1]:
        raise ConfigError(f"--duration: must be >= {2 * EDGE_S + 0.8 + SEGMENT_S[1]:.1f} s to hold a segment, "
                          f"got {duration_s}")
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise EgocacheError(f"{out_dir}: exists and is not an empty folder; synth writes into a new or empty "
                            "one")


def _class_rows(kind: str) -> list[list[Any]]:
    """EPIC-style class table rows: id, key, instances, category."""
    specs = VERB_SPECS if kind == "verb" else NOUN_SPECS
    return [[i, s.key, f"['{s.key}']", s.category] for i, s in enumerate(specs)]


def _meta(summary: SynthSummary) -> dict[str, Any]:
    """synth.json: what was generated and what the labels mean (paths relative to the dataset root)."""
    return {
        "generator": GENERATOR, "egocache_version": __version__,
        "seed": summary.seed, "size": list(summary.size), "fps": summary.fps,
        "duration_s": summary.duration_s, "imu_layout": summary.imu_layout, "hfov_deg": HFOV_DEG,
        "imu": {"rate_hz": IMU_RATE_HZ, "axes": "camera frame: x right, y down, z forward",
                "epic100": {**IMU_UNITS, "timestamps": "gpmd2csv payload counter (ms)"}, "ego4d": IMU_UNITS,
                "accl": "specific force (linear acceleration + 1 g upwards), with noise and drifting bias",
                "gyro": "angular velocity of the rendered camera, with noise and drifting bias"},
        "verbs": [{"id": i, "key": v.key, "category": v.category, "nouns": list(v.nouns),
                   "motion_axis": v.axis, "motion_sign": v.sign, "appearance_cue": v.overlay}
                  for i, v in enumerate(VERB_SPECS)],
        "nouns": [{"id": i, "key": n.key, "category": n.category} for i, n in enumerate(NOUN_SPECS)],
        "motion_pairs": [list(p) for p in MOTION_PAIRS], "appearance_verbs": list(APPEARANCE_VERBS),
        "head_motion_shares": HEAD_SHARES, "weak_turn_factor": WEAK_TURN_FACTOR,
        "audio": audio_meta() if summary.audio else None,
        "split": (f"by video: video i is validation where floor((i + 1) * {summary.validation_share}) > "
                  f"floor(i * {summary.validation_share}) (every 4th at 0.25), else the last of two or more"),
        "videos": [{k: os.path.relpath(x, summary.root) if k in PATH_FIELDS and x else x
                    for k, x in asdict(v).items() if k != "audio_events"} for v in summary.videos],
        "segment_audio": {f"{v.video_id}_{e['segment']}": e["sound"] for v in summary.videos
                          for e in v.audio_events if e["segment"] is not None},
        "audio_events": {v.video_id: list(v.audio_events) for v in summary.videos if v.audio_events},
    }


def _video_files(root: str, participant: str, vid: str, imu_layout: str) -> dict[str, str | None]:
    """Where one video's files go in the requested layout(s); None for a layout not written."""
    epic, ego4d = imu_layout in ("epic100", "both"), imu_layout in ("ego4d", "both")
    meta = os.path.join(root, participant, "meta_data")
    return {"epic_video": os.path.join(root, participant, "videos", f"{vid}.MP4") if epic else None,
            "ego4d_video": os.path.join(root, "full_scale", f"{vid}.mp4") if ego4d else None,
            "accl_csv": os.path.join(meta, f"{vid}-accl.csv") if epic else None,
            "gyro_csv": os.path.join(meta, f"{vid}-gyro.csv") if epic else None,
            "ego4d_imu_csv": os.path.join(root, "imu", f"{vid}.csv") if ego4d else None}


def synthesize(out_dir: str, *, videos: int = 4, seed: int = 0, size: tuple[int, int] = (160, 120),
               fps: float = 30.0, duration_s: float = 30.0, imu_layout: str = "both",
               rgb_frames: bool = False, validation_share: float = 0.25, audio: bool = True,
               workers: int = 1, progress: bool = False) -> SynthSummary:
    """Write the synthetic dataset under `out_dir` (new or empty) and return where everything is.

    Videos are P01_101, P01_102, P02_101, ... (two per participant, who share a kitchen: one world
    texture); a `validation_share` of them (every 4th video at the default 0.25) is the validation
    split. With `audio`, every video has a sound track (synth/audio.py; its own random stream, so the
    frames, IMU and labels are the same with or without it). `workers` > 1 renders and encodes the videos
    in that many processes (the same bytes: each video is drawn from its own generators). Raises ValueError
    for arguments that cannot make a dataset and EgocacheError if `out_dir` is not empty.
    """
    size = (int(size[0]), int(size[1]))
    _check_args(out_dir, videos, size, fps, duration_s, imu_layout, validation_share, workers)
    root = os.path.abspath(out_dir)
    os.makedirs(root, exist_ok=True)
    ids = [(f"P{i // 2 + 1:02d}", f"P{i // 2 + 1:02d}_{101 + i % 2}") for i in range(videos)]
    participants = sorted({p for p, _ in ids})
    deck_seed, *seeds = np.random.SeedSequence(seed).spawn(1 + videos + len(participants))
    draw_verb = _verb_deck(np.random.default_rng(deck_seed))
    worlds = dict(zip(participants, seeds[videos:]))
    val = ({i for i in range(videos) if math.floor((i + 1) * validation_share) > math.floor(i * validation_share)}
           or ({videos - 1} if videos > 1 else set()))
    plans = []
    for i in range(videos):
        plan_rng, *imu_rngs = (np.random.default_rng(s) for s in seeds[i].spawn(4))
        plans.append((plan_rng, imu_rngs, *_plan_video(plan_rng, draw_verb, duration_s, size)))
    num_frames = int(round(duration_s * fps))
    rows: dict[str, list[list[Any]]] = {"train": [], "validation": []}
    written: list[SynthVideo] = []
    head_kinds: dict[str, str] = {}
    kitchens: dict[str, list[_VideoJob]] = {p: [] for p in participants}
    for i, (plan_rng, imu_rngs, segments, motion) in enumerate(plans):
        participant, vid = ids[i]
        split = "validation" if i in val else "train"
        files = _video_files(root, participant, vid, imu_layout)
        if rgb_frames and imu_layout in ("epic100", "both"):
            files["rgb_frames"] = os.path.join(root, participant, "rgb_frames", vid)
        track, sounds = (sound_track(audio_rng(seed, i), [(s.start, s.stop, s.verb) for s in segments], duration_s)
                         if audio else (None, []))
        kitchens[participant].append(_VideoJob(files, size, motion, [s.prop for s in segments], num_frames, fps,
                                               duration_s, track, imu_rngs))
        rows[split] += _annotation_rows(vid, participant, segments, fps, plan_rng)
        written.append(SynthVideo(vid, participant, split, num_frames, duration_s, len(segments),
                                  files["epic_video"] or files["ego4d_video"], **files, audio_events=tuple(sounds)))
        head_kinds.update({f"{vid}_{k}": s.head for k, s in enumerate(segments)})
    with tqdm(total=videos * num_frames, unit="frame", desc="synth", disable=not progress) as bar:
        if workers <= 1:
            for participant, jobs in kitchens.items():
                _write_kitchen(worlds[participant], jobs, bar)
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for jobs, _ in zip(kitchens.values(),
                                   pool.map(_write_kitchen, [worlds[p] for p in kitchens], kitchens.values())):
                    bar.update(num_frames * len(jobs))
    paths = {name: os.path.join(root, f"EPIC_100_{name}.csv")
             for name in ("train", "validation", "verb_classes", "noun_classes")}
    write_csv(paths["train"], EPIC_COLUMNS, rows["train"])
    write_csv(paths["validation"], EPIC_COLUMNS, rows["validation"])
    write_csv(paths["verb_classes"], CLASS_COLUMNS, _class_rows("verb"))
    write_csv(paths["noun_classes"], CLASS_COLUMNS, _class_rows("noun"))
    summary = SynthSummary(root, paths["train"], paths["validation"], paths["verb_classes"],
                           paths["noun_classes"], os.path.join(root, "synth.json"),
                           os.path.join(root, DATASET_META_FILE), written, seed, size, float(fps),
                           float(duration_s), imu_layout, float(validation_share), bool(audio))
    write_json_atomic(summary.meta_json, {**_meta(summary), "segment_head_motion": head_kinds}, sort_keys=False)
    write_json_atomic(summary.dataset_meta, dataset_meta_json(
        MOTION_PAIRS, "egocache synthetic dataset: the motion-pair verbs look alike in any single frame; "
                      "they differ in which way the object moves over the clip, and where the head moves "
                      "with it, in head motion", IMU_UNITS), sort_keys=False)
    return summary
