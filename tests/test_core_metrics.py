"""The one evaluator (core/metrics.py): per-segment top-1, per-class accuracy, motion pairs."""

from __future__ import annotations

import numpy as np
import pytest

from egocache.core.metrics import Predictions, calibration, evaluate_predictions, head_metrics, per_class_accuracy


def test_head_metrics_per_segment_per_class_and_motion_pairs():
    # segments 0..3 with 2 clips each; labels 0,1,1,-1 (the last is unknown and does not count)
    logits = np.array([[3, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 1], [0, 0, 3], [0, 0, 3], [5, 0, 0], [5, 0, 0]],
                      dtype=np.float32)
    segments = np.repeat(np.arange(4), 2)
    labels = np.repeat([0, 1, 1, -1], 2)
    m = head_metrics(logits, labels, segments, ["a", "b", "c"], motion_pairs=[(1, 2)])
    assert m["segments"] == 3 and m["clips"] == 6
    assert m["top1_acc"] == pytest.approx(2 / 3)        # seg0 right, seg1 right (3 vs 1), seg2 wrong
    assert m["clip_top1_acc"] == pytest.approx(3 / 6)
    assert m["per_class_acc"] == {"a": 1.0, "b": 0.5} and m["mean_class_acc"] == pytest.approx(0.75)
    assert (m["motion_pairs_segments"], m["motion_pairs_top1_acc"]) == (2, 0.5)
    assert m["motion_pairs_within_acc"] == 0.5          # seg1: b above its partner c; seg2: below
    assert np.isnan(per_class_accuracy(np.array([0]), np.array([0]), 2)[1])
    with pytest.raises(ValueError, match="segment code 0"):
        head_metrics(logits[:2], np.array([0, 1]), np.array([0, 0]), ["a", "b", "c"])


def test_softmax_and_logit_averaging_can_disagree():
    # one segment of label a: a confident wrong clip (b by 10) and two right ones (a by 2)
    logits = np.array([[0.0, 10.0], [2.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    pred = Predictions({"verb": logits}, {"verb": np.zeros(3, np.int64)}, np.zeros(3, np.int64))
    assert evaluate_predictions(pred, {"verb": ["a", "b"]}, average="softmax")["top1_acc"] == 1.0
    assert evaluate_predictions(pred, {"verb": ["a", "b"]}, average="logits")["top1_acc"] == 0.0


def test_motion_verbs_must_be_pairs_of_classes():
    pred = Predictions({"verb": np.eye(3, dtype=np.float32)}, {"verb": np.arange(3)}, np.arange(3))
    with pytest.raises(ValueError, match="fly missing"):
        evaluate_predictions(pred, {"verb": ["a", "b", "c"]}, motion_verbs=["a", "fly"])
    with pytest.raises(ValueError, match="not pairs"):
        evaluate_predictions(pred, {"verb": ["a", "b", "c"]}, motion_verbs=["a", "b", "c"])
    m = evaluate_predictions(pred, {"verb": ["a", "b", "c"]}, motion_verbs=["a", "b"])
    assert m["motion_pairs_top1_acc"] == 1.0 and m["motion_pairs_within_acc"] == 1.0


def test_calibration_ece_nll_brier_by_hand():
    # four segments, two classes: confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])
    c = calibration(probs, labels)
    # bins of 1/15: 0.9 -> bin 13, 0.6 -> bin 8, 0.55 -> bin 8; |1/2 - 0.9| * 2/4 + |1 - 0.575| * 2/4
    assert c["ece"] == pytest.approx(0.4 * 0.5 + 0.425 * 0.5)
    assert c["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.1, 0.6, 0.55])))
    assert c["brier"] == pytest.approx(np.mean([2 * 0.1 ** 2, 2 * 0.9 ** 2, 2 * 0.4 ** 2, 2 * 0.45 ** 2]))
    assert c["reliability"] == [[pytest.approx(0.575), 1.0, 2], [pytest.approx(0.9), 0.5, 2]]
    assert calibration(np.eye(3), np.arange(3))["ece"] == pytest.approx(0.0)
    assert calibration(np.zeros((0, 2)), np.zeros(0, np.int64))["ece"] is None


def test_every_evaluation_reports_calibration_on_the_segment_probabilities():
    logits = np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]], dtype=np.float32))
    pred = Predictions({"verb": logits}, {"verb": np.array([0, 1, 1, 0])}, np.arange(4))
    for average in ("softmax", "logits"):
        m = evaluate_predictions(pred, {"verb": ["a", "b"]}, average=average)
        assert m["ece"] == pytest.approx(0.4125, rel=1e-5) and m["heads"]["verb"]["calibration"]["bins"] == 15
        assert m["brier"] == pytest.approx(m["heads"]["verb"]["calibration"]["brier"])
