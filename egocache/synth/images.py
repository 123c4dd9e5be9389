"""A generic labelled synthetic image set: the stand-in for ImageNet that the student's encoder pretrains on.

EgoDistill starts the student's ResNet-18 from ImageNet weights. None can be downloaded here, so
`egocache pretrain-image-encoder` trains it on this set instead: generic recognition of shape, surface
pattern and colour, on separate data. Nothing here is the benchmark: no scene, no kitchen props, no
head motion, none of the video generator's code or vocabulary. Features learnt on it can transfer to
the benchmark's frames without having seen them. Users with real ImageNet weights pass those instead.

Classes: class k is (shape k mod 7, pattern k mod 5, colour family k mod 3). As 7, 5 and 3 are
coprime, classes 0..104 are every combination exactly once (Chinese remainder theorem), and the first
K of them cover every shape, pattern and colour family as soon as K >= 7.
    shapes   circle, ring, polygon (3-6 sides), star (4-7 points), bar, cross, blob
    patterns solid, striped, checked, dotted, gradient (in the object's own rotated frame)
    colours  warm (hue -30..60 deg), green (90..180), blue (210..300); saturated, varied lightness;
             a pattern's second colour is a dark or light shade of the first
An image: a textured background (three random low-frequency waves blended between two muted random
colours, thresholded into hard-edged blobs half the time), 0-4 small muted clutter shapes of any kind,
then 1-3 copies of the class's object, each at its own position, scale and rotation, then a lighting
gradient, gain and colour cast, and Gaussian noise.

Determinism: an image is a pure function of its label and its key (a tuple of non-negative ints that
seeds its own numpy Generator), so a batch's images do not depend on which other images share it and
the trainer can draw any epoch's images again when it resumes. Drawing is per image (one vector of
uniforms and one noise array); painting is vectorised over the batch, one numpy pass per shape
family and pattern present in each object slot.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

SHAPES = ("circle", "ring", "polygon", "star", "bar", "cross", "blob")
PATTERNS = ("solid", "striped", "checked", "dotted", "gradient")
COLOURS = ("warm", "green", "blue")
HUES_DEG = ((-30.0, 60.0), (90.0, 180.0), (210.0, 300.0))   # hue range of each colour family
NUM_CLASSES = len(SHAPES) * len(PATTERNS) * len(COLOURS)     # 105
MIN_SIZE = 16
MAX_COPIES = 3           # copies of the class object per image (1..3)
MAX_CLUTTER = 4          # small distractor shapes per image (0..4)
WAVES = 3                # background waves
SPEC_VERSION = 1         # bump when the images drawn for a key change
_TAU = 2 * np.pi
# Every random quantity of an image: (name, values per image, low, high, whole number), uniform in
# [low, high); `_draw` turns hues, counts and flags into colours and masks.
_PARAMS: tuple[tuple[str, int, float, float, bool], ...] = (
    # background: two muted colours, WAVES waves of 0.5-3 cycles per image width, hard-edged half the time
    ("bg_hue", 2, 0, 360, False), ("bg_sat", 2, 0.0, 0.5, False), ("bg_val", 2, 0.25, 0.9, False),
    ("wave_angle", WAVES, 0, _TAU, False), ("wave_freq", WAVES, 0.5, 3.0, False),
    ("wave_phase", WAVES, 0, _TAU, False), ("bg_hard", 1, 0, 1, False),
    # clutter: 0..MAX_CLUTTER small muted shapes of any family
    ("cl_count", 1, 0, MAX_CLUTTER + 1, True), ("cl_shape", MAX_CLUTTER, 0, len(SHAPES), True),
    ("cl_cx", MAX_CLUTTER, -0.9, 0.9, False), ("cl_cy", MAX_CLUTTER, -0.9, 0.9, False),
    ("cl_r", MAX_CLUTTER, 0.06, 0.16, False), ("cl_angle", MAX_CLUTTER, 0, _TAU, False),
    ("cl_sides", MAX_CLUTTER, 3, 8, True), ("cl_p1", MAX_CLUTTER, 0, _TAU, False),
    ("cl_p2", MAX_CLUTTER, 0, _TAU, False), ("cl_hue", MAX_CLUTTER, 0, 360, False),
    ("cl_sat", MAX_CLUTTER, 0.0, 0.45, False), ("cl_val", MAX_CLUTTER, 0.2, 0.95, False),
    # the class object: 1..MAX_COPIES copies, each placed, sized, turned and coloured on its own
    ("obj_copies", 1, 1, MAX_COPIES + 1, True), ("obj_cx", MAX_COPIES, -0.55, 0.55, False),
    ("obj_cy", MAX_COPIES, -0.55, 0.55, False), ("obj_r", MAX_COPIES, 0.28, 0.55, False),
    ("obj_angle", MAX_COPIES, 0, _TAU, False), ("obj_sides", MAX_COPIES, 3, 7, True),
    ("obj_p1", MAX_COPIES, 0, _TAU, False), ("obj_p2", MAX_COPIES, 0, _TAU, False),
    ("obj_freq", MAX_COPIES, 1.5, 3.0, False), ("obj_phase", MAX_COPIES, 0, 2, False),
    ("obj_hue", MAX_COPIES, 0, 1, False), ("obj_sat", MAX_COPIES, 0.55, 1.0, False),
    ("obj_val", MAX_COPIES, 0.55, 1.0, False), ("obj_dark", MAX_COPIES, 0, 1, False),
    ("obj_darken", MAX_COPIES, 0.2, 0.45, False), ("obj_lighten", MAX_COPIES, 0.5, 0.75, False),
    # lighting: gain, linear gradient, colour cast; Gaussian noise of std sigma
    ("gain", 1, 0.7, 1.25, False), ("gx", 1, -0.25, 0.25, False), ("gy", 1, -0.25, 0.25, False),
    ("cast", 3, 0.9, 1.1, False), ("sigma", 1, 0.0, 0.04, False),
)
_PARAM_COUNT = sum(count for _, count, _, _, _ in _PARAMS)



def class_factors(label: int) -> tuple[str, str, str]:
    """(shape, pattern, colour family) of class `label`."""
    return SHAPES[label % len(SHAPES)], PATTERNS[label % len(PATTERNS)], COLOURS[label % len(COLOURS)]


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hue (degrees), saturation, value arrays -> RGB in [0, 1], stacked on a new last axis."""
    h6 = (np.asarray(h) % 360.0) / 60.0
    c = v * s
    x = c * (1 - np.abs(h6 % 2 - 1))
    z = np.zeros_like(c)
    sector = np.floor(h6).astype(int) % 6
    r = np.choose(sector, [c, x, z, z, x, c])
    g = np.choose(sector, [x, c, c, x, z, z])
    b = np.choose(sector, [z, z, x, c, c, x])
    m = v - c
    return np.stack([r + m, g + m, b + m], axis=-1)


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray, sides: np.ndarray, p1: np.ndarray,
                p2: np.ndarray) -> np.ndarray:
    """Inside-mask of shape family `shape` in object coordinates (u, v) (unit: the object's radius)."""
    name = SHAPES[shape]
    if name in ("bar", "cross"):
        bar = (np.abs(u) <= 1.0) & (np.abs(v) <= 0.3)
        return bar | ((np.abs(v) <= 1.0) & (np.abs(u) <= 0.3)) if name == "cross" else bar
    rho = np.hypot(u, v)
    if name == "circle":
        return rho <= 1.0
    if name == "ring":
        return (rho <= 1.0) & (rho >= 0.6)
    phi = np.arctan2(v, u)
    if name == "polygon":
        sector = 2 * np.pi / sides
        return rho * np.cos((phi % sector) - sector / 2) <= np.cos(np.pi / sides)
    if name == "star":
        tri = np.abs(2 * ((phi * sides / (2 * np.pi)) % 1.0) - 1)      # 1 at the points, 0 between
        return rho <= 0.42 + 0.58 * tri
    return rho <= 0.75 + 0.17 * np.sin(3 * phi + p1) + 0.08 * np.sin(5 * phi + p2)     # blob


def _pattern(pattern: int, u: np.ndarray, v: np.ndarray, freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Mix weight in [0, 1] of the second colour for pattern `pattern` at object coordinates (u, v)."""
    name = PATTERNS[pattern]
    if name == "solid":
        return np.zeros_like(u)
    if name == "gradient":
        return np.clip((u + 1) / 2, 0.0, 1.0)
    a, b = u * freq + phase, v * freq + phase
    if name == "striped":
        return (np.sin(np.pi * a) > 0).astype(u.dtype)
    if name == "checked":
        return ((np.sin(np.pi * a) > 0) ^ (np.sin(np.pi * b) > 0)).astype(u.dtype)
    return (np.hypot(a % 1.0 - 0.5, b % 1.0 - 0.5) <= 0.3).astype(u.dtype)           # dotted


class SyntheticImageSet:
    """The generic shape/pattern/colour image set at one square size; `render(labels, keys)` draws images."""

    def __init__(self, classes: int = NUM_CLASSES, size: int = 64) -> None:
        if not 2 <= classes <= NUM_CLASSES or size < MIN_SIZE:
            raise ValueError(f"classes must lie in [2, {NUM_CLASSES}] and size be >= {MIN_SIZE}, got {classes}, {size}")
        self.num_classes, self.size = int(classes), int(size)
        grid = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size * 2 - 1
        self._x, self._y = grid[None, None, :], grid[None, :, None]

    @property
    def class_names(self) -> list[str]:
        """'colour-pattern-shape' of every class, in label order."""
        return ["{2}-{1}-{0}".format(*class_factors(k)) for k in range(self.num_classes)]

    def spec(self) -> dict[str, Any]:
        """What the set is (JSON-ready): a trained encoder's sidecar records it."""
        return {"name": "egocache-synthetic-shapes", "version": SPEC_VERSION, "classes": self.num_classes,
                "size": self.size, "shapes": list(SHAPES), "patterns": list(PATTERNS), "colours": list(COLOURS),
                "class_of_label": "(shape k mod 7, pattern k mod 5, colour k mod 3)"}

    def render(self, labels: Sequence[int] | np.ndarray, keys: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
        """uint8 (n, size, size, 3) RGB images of classes `labels`, image i drawn from key `keys[i]`."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        if len(keys) != len(labels):
            raise ValueError(f"{len(labels)} labels but {len(keys)} keys")
        p = self._draw(labels, keys)
        img = self._background(p)
        for slot in range(MAX_CLUTTER):
            self._paint(img, p, "cl", slot, p["cl_shape"][:, slot], None)
        for slot in range(MAX_COPIES):
            self._paint(img, p, "obj", slot, labels % len(SHAPES), labels % len(PATTERNS))
        shade = p["gain"][:, None, None] * (1 + p["gx"][:, None, None] * self._x + p["gy"][:, None, None] * self._y)
        img *= shade[..., None] * p["cast"][:, None, None, :]
        img += p["sigma"][:, None, None, None] * p["noise"]
        return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    def _draw(self, labels: np.ndarray, keys: Sequence[Sequence[int]] | np.ndarray) -> dict[str, np.ndarray]:
        """Every random quantity of every image: image i's uniforms and noise from a Generator seeded by keys[i],
        mapped onto the ranges of _PARAMS for the whole batch at once."""
        n, s = len(labels), self.size
        uniform = np.empty((n, _PARAM_COUNT), np.float64)
        noise = np.empty((n, s, s, 3), np.float32)
        for i, key in enumerate(keys):
            rng = np.random.default_rng([int(k) for k in key])
            uniform[i] = rng.random(_PARAM_COUNT)
            noise[i] = rng.standard_normal((s, s, 3), dtype=np.float32)
        p: dict[str, np.ndarray] = {"noise": noise}
        col = 0
        for name, count, lo, hi, whole in _PARAMS:
            value = lo + (hi - lo) * uniform[:, col:col + count]
            p[name] = np.floor(value).astype(np.int64) if whole else value.astype(np.float32)
            col += count
        p["bg_colour"] = _hsv_to_rgb(p["bg_hue"], p["bg_sat"], p["bg_val"])                  # (n, 2, 3)
        p["hard"] = p.pop("bg_hard")[:, 0] < 0.5
        p["cl_active"] = np.arange(MAX_CLUTTER) < p.pop("cl_count")
        p["cl_colour"] = _hsv_to_rgb(p["cl_hue"], p["cl_sat"], p["cl_val"])
        copies = p.pop("obj_copies")
        p["obj_active"] = np.arange(MAX_COPIES) < copies
        p["obj_r"] *= np.array([1.0, 0.8, 0.65], np.float32)[copies - 1]    # smaller when there are more
        p["obj_sides"] += (labels % len(SHAPES) == SHAPES.index("star"))[:, None]   # stars 4-7, polygons 3-6
        lo, hi = (np.array(HUES_DEG, np.float32)[labels % len(COLOURS)].T[..., None])
        first = _hsv_to_rgb(lo + (hi - lo) * p["obj_hue"], p["obj_sat"], p["obj_val"])
        dark = p["obj_dark"][..., None] < 0.5
        p["obj_colour"] = first
        p["obj_shade"] = np.where(dark, first * p["obj_darken"][..., None],
                                  first + (1 - first) * p["obj_lighten"][..., None])
        for name in ("gain", "gx", "gy", "sigma"):
            p[name] = p[name][:, 0]
        return p

    def _background(self, p: dict[str, np.ndarray]) -> np.ndarray:
        """(n, S, S, 3) float32 backgrounds: waves blended between two colours, hard-thresholded for some."""
        k = p["wave_freq"] * np.pi
        kx, ky = (k * np.cos(p["wave_angle"]))[..., None, None], (k * np.sin(p["wave_angle"]))[..., None, None]
        t = np.sin(kx * self._x[:, None] + ky * self._y[:, None] + p["wave_phase"][..., None, None]).mean(1) * 0.5 + 0.5
        t = np.where(p["hard"][:, None, None], (t > 0.5).astype(np.float32), t)
        c0, c1 = p["bg_colour"][:, 0, None, None, :], p["bg_colour"][:, 1, None, None, :]
        return (c0 + (c1 - c0) * t[..., None]).astype(np.float32)

    def _local(self, p: dict[str, np.ndarray], prefix: str, slot: int, idx: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Object coordinates (u, v) (m, S, S) of slot `slot` for images `idx`: shifted, rotated, scaled."""
        def g(name: str) -> np.ndarray:
            return p[f"{prefix}_{name}"][idx, slot, None, None]

        dx, dy = self._x - g("cx"), self._y - g("cy")
        c, s, r = np.cos(g("angle")), np.sin(g("angle")), g("r")
        return (c * dx + s * dy) / r, (c * dy - s * dx) / r

    def _paint(self, img: np.ndarray, p: dict[str, np.ndarray], prefix: str, slot: int, shapes: np.ndarray,
               patterns: np.ndarray | None) -> None:
        """Paint slot `slot` of the "cl" (clutter, solid) or "obj" (class object) shapes onto `img` in place.

        Coordinates are computed once for the images whose slot is active; each shape family's mask and
        each pattern's mix are computed for the images that have it.
        """
        idx = np.flatnonzero(p[f"{prefix}_active"][:, slot])
        if not len(idx):
            return
        u, v = self._local(p, prefix, slot, idx)
        sides, p1, p2 = (p[f"{prefix}_{k}"][idx, slot, None, None] for k in ("sides", "p1", "p2"))
        mask = np.empty(u.shape, bool)
        for shape in np.unique(shapes[idx]):
            sel = shapes[idx] == shape
            mask[sel] = _shape_mask(int(shape), u[sel], v[sel], sides[sel], p1[sel], p2[sel])
        colour = p[f"{prefix}_colour"][idx, slot, None, None, :]
        if patterns is not None:
            mix = np.empty(u.shape, np.float32)
            freq, phase = p["obj_freq"][idx, slot, None, None], p["obj_phase"][idx, slot, None, None]
            for pattern in np.unique(patterns[idx]):
                sel = patterns[idx] == pattern
                mix[sel] = _pattern(int(pattern), u[sel], v[sel], freq[sel], phase[sel])
            colour = colour + (p["obj_shade"][idx, slot, None, None, :] - colour) * mix[..., None]
        whole = len(idx) == len(img)
        part = img if whole else img[idx]
        np.copyto(part, np.broadcast_to(colour, part.shape), where=mask[..., None])
        if not whole:
            img[idx] = part
