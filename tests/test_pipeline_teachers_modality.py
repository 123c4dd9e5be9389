"""Modality teachers (issue 13): Farneback flow (pipeline/flow.py), flow-tiny over it, objects-tiny with its
object_score auxiliary output; registry, run_teacher(_aux), checkpoints, FLOP counts, train-teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import EgocacheError
from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.flow import FLOW_CLIP_PX, clip_flow
from egocache.pipeline.frames import FramePlan
from egocache.pipeline.teachers import (create_teacher, list_teachers, read_teacher_checkpoint,
                                        save_teacher_checkpoint, teacher_spec, teacher_stats, trained_heads)
from egocache.pipeline.teachers.base import run_teacher, run_teacher_aux
from egocache.pipeline.train_teacher import decode_teacher_clips
from egocache.synth import synthesize

MODALITY = ("flow-tiny", "objects-tiny")
TINY = {"img_size": 32, "width": 8, "depth": 2, "feature_dim": 16}   # both configs have these fields


def square_clip(shift: tuple[int, int], frames: int = 4, size: int = 48, seed: int = 0) -> np.ndarray:
    """(1, T, S, S, 3) uint8: a textured 14-px square on a dark background, moving `shift` = (dx, dy) px a frame."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(120, 256, (14, 14, 3), dtype=np.uint8)
    clip = np.full((1, frames, size, size, 3), 30, np.uint8)
    for t in range(frames):
        x0, y0 = 12 + t * shift[0], 12 + t * shift[1]
        clip[0, t, y0:y0 + 14, x0:x0 + 14] = texture
    return clip


def random_clips(spec, batch: int = 3, seed: int = 1) -> np.ndarray:
    """Random uint8 RGB clips (B, T, S, S, 3) of the spec's shape."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (batch, spec.num_frames, spec.img_size, spec.img_size, 3), dtype=np.uint8)


def tiny(name: str, seed: int = 0, **kwargs):
    """A seeded tiny modality teacher in eval mode."""
    torch.manual_seed(seed)
    return create_teacher(name, **{**TINY, **kwargs})


# --- Farneback flow -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shift", [(2, 0), (-3, 0), (0, 2), (1, -1)])
def test_farneback_flow_of_a_translating_square_has_its_displacement(shift):
    flow = clip_flow(square_clip(shift))
    assert flow.dtype == np.float32 and flow.shape == (1, 2, 3, 48, 48)
    px = flow[0] * FLOW_CLIP_PX                          # back to pixels
    # inside the square at its first position (shifted by one step at most): (dx, dy) = shift
    inner = px[:, 0, 16:24, 16:24].reshape(2, -1).mean(1)
    assert np.allclose(inner, shift, atol=0.35), inner
    for axis, d in enumerate(shift):                     # the whole field's mean has the same sign
        mean = px[axis].mean()
        assert (mean > 0.05 if d > 0 else mean < -0.05 if d < 0 else abs(mean) < 0.05), (axis, mean)


def test_flow_is_clipped_scaled_deterministic_and_checks_its_input():
    clip = square_clip((4, 0))
    flow = clip_flow(clip, clip_px=1.0)
    assert flow.max() <= 1.0 and flow.min() >= -1.0 and np.isclose(flow[0, 0].max(), 1.0)
    assert np.array_equal(clip_flow(clip), clip_flow(clip.copy()))
    import cv2

    threads = cv2.getNumThreads()
    try:                                                 # the same bits on one OpenCV thread or several
        cv2.setNumThreads(1)
        alone = clip_flow(clip)
    finally:
        cv2.setNumThreads(threads)
    assert np.array_equal(alone, clip_flow(clip))
    still = np.repeat(clip[:, :1], 3, axis=1)
    assert np.abs(clip_flow(still)).max() < 1e-3
    with pytest.raises(ValueError, match="at least 2 frames"):
        clip_flow(clip[:, :1])
    with pytest.raises(ValueError, match="uint8 RGB"):
        clip_flow(clip.astype(np.float32))


# --- registry and specs ---------------------------------------------------------------------------------

def test_registry_lists_both_with_their_heads_aux_and_trained_heads():
    assert set(MODALITY) <= set(list_teachers())
    assert teacher_spec("flow-tiny").aux == {} and set(teacher_spec("flow-tiny").heads) == {"verb", "noun"}
    spec = teacher_spec("objects-tiny", heads={"noun": 12})
    assert spec.heads == {"noun": 12} and spec.aux == {"object_score": 12}
    assert json.loads(json.dumps(spec.to_dict()))["aux"] == {"object_score": 12}
    dataset = {"verb": 9, "noun": 12}
    assert trained_heads("objects-tiny", dataset) == {"noun": 12}
    assert trained_heads("flow-tiny", dataset) == trained_heads("mformer-tiny", dataset) == dataset
    with pytest.raises(EgocacheError, match="trains the head.*noun"):
        trained_heads("objects-tiny", {"verb": 9})
    with pytest.raises(EgocacheError, match="lack it"):
        teacher_spec("objects-tiny", heads={"verb": 9})


def test_configs_are_checked_and_overrides_type_checked():
    with pytest.raises(EgocacheError, match="num_frames=1: flow needs at least 2"):
        teacher_spec("flow-tiny", num_frames=1)
    with pytest.raises(EgocacheError, match="smaller than 2\\*\\*depth"):
        teacher_spec("objects-tiny", img_size=8, depth=4)
    with pytest.raises(EgocacheError, match="override width=2.5 should be"):
        teacher_spec("flow-tiny", width=2.5)
    with pytest.raises(EgocacheError, match="unknown override.*embed_dim"):
        teacher_spec("objects-tiny", embed_dim=8)
    assert teacher_spec("flow-tiny", clip_px=5).config["clip_px"] == 5.0


@pytest.mark.parametrize("name", MODALITY)
def test_teacher_stats_on_the_meta_device_measure_the_network(name):
    stats = teacher_stats(name)
    with torch.device("meta"):
        model = create_teacher(name)
    assert stats["params"] == sum(p.numel() for p in model.parameters()) and 0 < stats["gflops"] < 1.0
    small = teacher_stats(name, **TINY)
    assert 0 < small["macs"] < stats["macs"]


# --- preprocess -----------------------------------------------------------------------------------------

def test_flow_tiny_preprocess_gives_the_normalised_flow_of_the_frames():
    model = tiny("flow-tiny")
    clips = random_clips(model.spec)
    x = model.preprocess(torch.from_numpy(clips))
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, *model.input_shape()) == (3, 2, 7, 32, 32)
    assert torch.equal(x, model.preprocess(torch.from_numpy(clips.copy())))          # deterministic
    assert np.array_equal(x.numpy(), clip_flow(clips))
    assert x.abs().max() <= 1.0
    big = np.repeat(np.repeat(clips, 2, axis=2), 2, axis=3)                         # 64 px -> resized to 32
    assert tuple(model.preprocess(torch.from_numpy(big)).shape) == (3, 2, 7, 32, 32)
    with pytest.raises(ValueError, match="expected 8 frames"):
        model.preprocess(torch.from_numpy(clips[:, :4]))
    with pytest.raises(ValueError, match="expected flow"):
        model.forward_features(torch.zeros(1, 3, 8, 32, 32))


def test_objects_tiny_preprocess_keeps_the_normalised_centre_frame():
    model = tiny("objects-tiny")
    clips = random_clips(model.spec, batch=2)
    x = model.preprocess(torch.from_numpy(clips))
    assert tuple(x.shape) == (2, *model.input_shape()) == (2, 3, 1, 32, 32)
    centre = torch.from_numpy(clips[:, 4]).permute(0, 3, 1, 2).float() / 255.0
    assert torch.allclose(x[:, :, 0], (centre - 0.5) / 0.5, atol=1e-6)
    other = clips.copy()
    other[:, [0, 1, 2, 3, 5, 6, 7]] = 0                                             # only frame T//2 counts
    assert torch.equal(model.preprocess(torch.from_numpy(other)), x)


# --- run_teacher, aux, checkpoints ----------------------------------------------------------------------

@pytest.mark.parametrize("name", MODALITY)
def test_run_teacher_and_checkpoint_round_trip(name, tmp_path):
    model = tiny(name, heads={"verb": 5, "noun": 7})
    clips = random_clips(model.spec, batch=5)
    feats, logits = run_teacher(model, clips, "cpu", batch_size=2)
    assert feats.shape == (5, 16) and feats.dtype == np.float32 and np.abs(feats).max() <= 1.0
    assert {h: v.shape for h, v in logits.items()} == {"verb": (5, 5), "noun": (5, 7)}
    again, _ = run_teacher(model, clips, "cpu", batch_size=5)                       # batch size does not matter
    assert np.allclose(feats, again, atol=1e-5)
    path = save_teacher_checkpoint(model, tmp_path / "t.pyth", cfg={"note": "test"}, epoch=3)
    assert read_teacher_checkpoint(path)["teacher"]["name"] == name
    loaded = create_teacher(name, checkpoint=path)
    assert loaded.spec == model.spec
    feats2, logits2 = run_teacher(loaded, clips, "cpu", batch_size=2)
    assert np.array_equal(feats, feats2) and all(np.array_equal(logits[h], logits2[h]) for h in logits)
    empty = run_teacher(loaded, clips[:0], "cpu", batch_size=2)
    assert empty[0].shape == (0, 16) and empty[1]["noun"].shape == (0, 7)


def test_objects_tiny_object_score_is_the_softmax_of_its_noun_head():
    model = tiny("objects-tiny", heads={"noun": 11})
    clips = random_clips(model.spec, batch=4)
    feats, logits, aux = run_teacher_aux(model, clips, "cpu", batch_size=3)
    assert set(aux) == {"object_score"} and aux["object_score"].shape == (4, 11)
    assert aux["object_score"].dtype == np.float32 and (aux["object_score"] >= 0).all()
    assert np.allclose(aux["object_score"].sum(1), 1.0, atol=1e-5)
    assert np.allclose(aux["object_score"], torch.from_numpy(logits["noun"]).softmax(1).numpy(), atol=1e-6)
    plain_feats, plain_logits = run_teacher(model, clips, "cpu", batch_size=3)
    assert np.array_equal(plain_feats, feats) and np.array_equal(plain_logits["noun"], logits["noun"])
    empty = run_teacher_aux(model, clips[:0], "cpu", batch_size=3)
    assert empty[2]["object_score"].shape == (0, 11)
    flow_aux = run_teacher_aux(tiny("flow-tiny"), random_clips(tiny("flow-tiny").spec, 2), "cpu", 2)[2]
    assert flow_aux == {}


# --- train-teacher --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Three short synthetic videos: two train, one validation."""
    return synthesize(str(tmp_path_factory.mktemp("synth")), videos=3, seed=3, size=(64, 48), duration_s=12.0)


@pytest.mark.parametrize("name", MODALITY)
def test_train_teacher_cli_trains_both_and_the_checkpoint_reproduces_validation(name, synth, tmp_path):
    out = tmp_path / f"{name}.pyth"
    args = ["train-teacher", "--teacher", name, "--dataset", "epic100", "--annotations", synth.train_csv,
            "--annotations", synth.validation_csv, "--root", synth.root, "--out", str(out), "--epochs", "1",
            "--batch-size", "4", "--train-clips", "2", "--eval-clips", "2", "--frame-size", "32",
            "--device", "cpu", "--no-progress", "--json"]
    for key, value in TINY.items():
        args += ["--teacher-option", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    names = load_manifest("epic100", [synth.train_csv, synth.validation_csv], synth.root).class_names
    want = {"noun": len(names["noun"])} if name == "objects-tiny" else {h: len(v) for h, v in names.items()}
    assert summary["heads"] == want and set(summary["validation"]["heads"]) == set(want)
    assert summary["epochs"][0]["loss"] > 0 and not Path(f"{out}.partial.pt").exists()
    assert set(read_teacher_checkpoint(out)["class_names"]) == set(want)

    model = create_teacher(name, checkpoint=out)
    assert model.spec.heads == want and model.spec.config["width"] == 8
    assert model.spec.aux == ({"object_score": want["noun"]} if name == "objects-tiny" else {})
    val = load_manifest("epic100", [synth.validation_csv], synth.root, eval_clips=2).clips
    data = decode_teacher_clips(val, FramePlan(8, model.spec.frame_stride, 32, (), 32), list(want))
    _, logits = run_teacher(model, data.inputs, "cpu", 4)
    saved = np.load(summary["validation_logits"])
    assert list(saved["clip_ids"]) == data.clip_ids
    assert all(np.allclose(saved[f"logits_{h}"], logits[h], atol=1e-5) for h in want)
