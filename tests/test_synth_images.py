"""The generic synthetic image set (synth/images.py): deterministic per key, every class a distinct
combination of factors, labels that the pixels carry, settings checked."""

from __future__ import annotations

import numpy as np
import pytest

from egocache.errors import ConfigError
from egocache.synth.images import COLOURS, NUM_CLASSES, PATTERNS, SHAPES, SyntheticImageSet, class_factors
from egocache.synth.options import ImageSetOptions


def test_an_image_is_a_pure_function_of_its_label_and_key():
    images = SyntheticImageSet(classes=12, size=32)
    labels, keys = np.arange(12), [(7, i) for i in range(12)]
    a = images.render(labels, keys)
    assert a.shape == (12, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, images.render(labels, keys))
    assert np.array_equal(a[3:5], images.render(labels[3:5], keys[3:5]))     # whatever else is in the batch
    assert not np.array_equal(a, images.render(labels, [(8, i) for i in range(12)]))
    assert len({img.tobytes() for img in a}) == 12 and a.std() > 20          # varied, not blank


def test_every_class_is_a_distinct_combination_and_few_classes_cover_every_factor():
    combos = [class_factors(k) for k in range(NUM_CLASSES)]
    assert NUM_CLASSES == len(SHAPES) * len(PATTERNS) * len(COLOURS) == len(set(combos))
    first = combos[:len(SHAPES)]
    assert {s for s, _, _ in first} == set(SHAPES) and {p for _, p, _ in first} == set(PATTERNS)
    assert {c for _, _, c in first} == set(COLOURS)
    assert SyntheticImageSet(classes=4).class_names == ["warm-solid-circle", "green-striped-ring",
                                                        "blue-checked-polygon", "warm-dotted-star"]


def hue_histograms(pixels: np.ndarray, bins: int = 12) -> np.ndarray:
    """Per image, the normalised histogram of the hue of its saturated pixels (saturation > 0.5)."""
    rgb = pixels.reshape(len(pixels), -1, 3).astype(np.float64) / 255
    hi, lo = rgb.max(-1), rgb.min(-1)
    r, g, b = np.moveaxis(rgb, -1, 0)
    delta = np.where(hi > lo, hi - lo, 1.0)
    hue = np.select([hi == r, hi == g], [(g - b) / delta % 6, (b - r) / delta + 2], (r - g) / delta + 4) / 6
    saturated = (hi - lo) > 0.5 * np.maximum(hi, 1e-6)
    hist = np.stack([np.histogram(h[s], bins=bins, range=(0, 1))[0] for h, s in zip(hue, saturated)]).astype(float)
    return hist / np.maximum(hist.sum(1, keepdims=True), 1)


def test_colour_classes_are_told_apart_by_a_colour_histogram_nearest_centroid():
    images = SyntheticImageSet(size=32)
    labels = np.arange(240) % NUM_CLASSES
    hist = hue_histograms(images.render(labels, [(1, i) for i in range(240)]))
    colour = labels % len(COLOURS)
    train, test = np.arange(240) < 160, np.arange(240) >= 160
    centroids = np.stack([hist[train & (colour == c)].mean(0) for c in range(len(COLOURS))])
    pred = ((hist[test][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == colour[test]).mean() > 0.7          # chance: 1/3


@pytest.mark.parametrize("kw,option", [({"size": 8}, "--size"), ({"classes": NUM_CLASSES + 1}, "--classes"),
                                       ({"classes": 1}, "--classes")])
def test_image_set_options_are_checked_naming_the_option(kw, option):
    with pytest.raises(ConfigError, match=option):
        ImageSetOptions(**kw)
