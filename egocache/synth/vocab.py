"""The synthetic dataset's vocabulary: verbs (what they do to the head and the picture) and nouns (looks).

Motion-pair verbs come in pairs that look the same in any single frame: the object moves one way or
the other over the segment (lifted up and towards the camera or put down, a door swung open or shut,
a knob turned one way with its lamp lighting or the other way with the lamp going out), and the head
may turn with it along one axis (pitch, yaw, roll). Appearance verbs add a distinctive colour/pattern
around the object and move the head at random, so the IMU says little about them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VerbSpec:
    """One verb class: EPIC-style key and category, the nouns it takes and how it shows."""

    key: str
    category: str
    nouns: tuple[str, ...]
    axis: str | None = None       # motion-pair verbs: the head axis that moves ("pitch", "yaw", "roll")
    sign: int = 0                 # +1 / -1 along `axis` (and of the object's motion) over the segment
    overlay: str | None = None    # appearance verbs: the cue drawn around the object

    @property
    def motion(self) -> str | None:
        """The object's motion of a motion-pair verb: "lift" (pitch pair), "swing" (yaw), "spin" (roll)."""
        return {"pitch": "lift", "yaw": "swing", "roll": "spin"}.get(self.axis or "")


@dataclass(frozen=True)
class NounSpec:
    """One noun class: EPIC-style key and category and its look (shape, half-size in radii, colours)."""

    key: str
    category: str
    shape: str                    # "disc", "ring", "rect", "knob"
    half_w: float
    half_h: float
    colour: tuple[int, int, int]
    accent: tuple[int, int, int]
    spins: bool = False           # knobs: any orientation (uniform angle); others stay near upright


HELD = ("cup", "plate", "bottle", "box", "pan")
DOORS = ("drawer", "cupboard", "fridge")
KNOBS = ("tap", "hob")

VERB_SPECS: tuple[VerbSpec, ...] = (
    VerbSpec("take", "retrieve", HELD, axis="pitch", sign=+1),
    VerbSpec("put", "leave", HELD, axis="pitch", sign=-1),
    VerbSpec("open", "access", DOORS, axis="yaw", sign=+1),
    VerbSpec("close", "access", DOORS, axis="yaw", sign=-1),
    VerbSpec("turn-on", "rotate", KNOBS, axis="roll", sign=+1),
    VerbSpec("turn-off", "rotate", KNOBS, axis="roll", sign=-1),
    VerbSpec("wash", "clean", ("plate", "cup", "pan"), overlay="water"),
    VerbSpec("cut", "cut", ("onion", "carrot"), overlay="board"),
    VerbSpec("pour", "pour", ("bottle", "cup"), overlay="stream"),
)

NOUN_SPECS: tuple[NounSpec, ...] = (
    NounSpec("cup", "cutlery", "disc", 0.75, 0.75, (196, 40, 44), (245, 240, 230)),
    NounSpec("plate", "cutlery", "ring", 1.0, 1.0, (238, 236, 228), (120, 150, 190)),
    NounSpec("bottle", "containers", "rect", 0.38, 1.0, (40, 150, 70), (230, 230, 90)),
    NounSpec("box", "containers", "rect", 0.8, 0.8, (232, 196, 48), (120, 70, 30)),
    NounSpec("pan", "cookware", "disc", 0.85, 0.85, (60, 62, 68), (20, 20, 22)),
    NounSpec("drawer", "furniture", "rect", 1.0, 0.55, (150, 95, 50), (40, 30, 25)),
    NounSpec("cupboard", "furniture", "rect", 0.7, 1.0, (120, 170, 210), (30, 40, 60)),
    NounSpec("fridge", "appliances", "rect", 0.75, 1.0, (225, 228, 232), (60, 60, 70)),
    NounSpec("tap", "appliances", "knob", 0.8, 0.8, (190, 195, 205), (25, 30, 40), spins=True),
    NounSpec("hob", "appliances", "knob", 0.8, 0.8, (30, 30, 34), (220, 50, 40), spins=True),
    NounSpec("onion", "vegetables", "disc", 0.7, 0.7, (150, 70, 130), (235, 200, 225)),
    NounSpec("carrot", "vegetables", "rect", 0.28, 0.95, (240, 120, 30), (90, 160, 60)),
)

VERB_BY_KEY: dict[str, VerbSpec] = {v.key: v for v in VERB_SPECS}
NOUN_BY_KEY: dict[str, NounSpec] = {n.key: n for n in NOUN_SPECS}
