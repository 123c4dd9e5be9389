"""Teacher fine-tuning: `egocache train-teacher` end to end, checkpoint round trip, metrics, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import CheckpointError, EgocacheError, ManifestError
from egocache.pipeline.datasets import Clip, load_manifest
from egocache.synth import MOTION_PAIRS, synthesize
from egocache.pipeline.teachers import create_teacher, read_teacher_checkpoint, save_teacher_checkpoint
from egocache.pipeline.train_teacher import (TeacherTrainConfig, build_teacher, decode_teacher_clips,
                                             predict_clips, segment_metrics, train_teacher, training_views,
                                             zoom_crop)

# A very small mformer-tiny so one epoch takes a second or two on CPU.
SMALL = {"img_size": 32, "pos_img_size": 32, "embed_dim": 24, "num_heads": 2, "depth": 1}



@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """Three short synthetic videos: two train, one validation."""
    return synthesize(str(tmp_path_factory.mktemp("synth")), videos=3, seed=3, size=(64, 48), duration_s=12.0)


def config(synth, out: Path, **kwargs) -> TeacherTrainConfig:
    """A fast fine-tuning config on the synthetic dataset."""
    base = dict(teacher="mformer-tiny", dataset="epic100",
                annotations=(synth.train_csv, synth.validation_csv), root=synth.root, out=str(out),
                overrides=SMALL, epochs=1, batch_size=4, train_views=2, eval_clips=2, progress=False)
    return TeacherTrainConfig(**{**base, **kwargs})


def cli_args(synth, out: Path) -> list[str]:
    """train-teacher arguments for the fast config."""
    args = ["train-teacher", "--teacher", "mformer-tiny", "--dataset", "epic100",
            "--annotations", synth.train_csv, "--annotations", synth.validation_csv, "--root", synth.root,
            "--out", str(out), "--epochs", "2", "--batch-size", "4", "--train-views", "2",
            "--eval-clips", "2", "--no-progress", "--json"]
    for key, value in SMALL.items():
        args += ["--teacher-option", f"{key}={value}"]
    return args


def test_cli_end_to_end_checkpoint_loads_strictly_and_reproduces_validation_logits(synth, tmp_path):
    out = tmp_path / "ft" / "teacher.pyth"
    result = CliRunner().invoke(main, cli_args(synth, out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == json.loads(out.with_suffix(".json").read_text())
    ckpt = read_teacher_checkpoint(out)
    assert {"model_state", "cfg", "epoch", "optimizer_state", "class_names", "teacher"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["optimizer_state"]["state"]
    cfg = yaml.safe_load(ckpt["cfg"])
    assert cfg["SOLVER"]["OPTIMIZING_METHOD"] == "adamw" and cfg["DATA"]["TRAIN_CROP_SIZE"] == 32
    names = load_manifest("epic100", [synth.train_csv, synth.validation_csv], synth.root).class_names
    assert ckpt["class_names"] == names

    model = create_teacher("mformer-tiny", checkpoint=out)      # strict key + shape load
    assert model.spec.heads == {h: len(v) for h, v in names.items()}
    assert model.spec.img_size == 32 and model.spec.config["depth"] == 1
    saved = np.load(summary["validation_logits"])
    val = [c for c in load_manifest("epic100", [synth.validation_csv], synth.root, eval_clips=2).clips]
    data = decode_teacher_clips(val, model.spec, list(names))
    assert list(saved["clip_ids"]) == data.clip_ids
    logits = predict_clips(model, data.frames)
    for head in names:
        np.testing.assert_allclose(logits[head], saved[f"logits_{head}"], rtol=1e-5, atol=1e-5)


def test_summary_reports_clips_epochs_and_segment_metrics(synth, tmp_path):
    summary = train_teacher(config(synth, tmp_path / "t.pyth"), log=lambda line: None)
    n_val = sum(v.num_segments for v in synth.videos if v.split == "validation")
    n_train = sum(v.num_segments for v in synth.videos if v.split == "train")
    assert summary["clips"] == {"train": 2 * n_train, "validation": 2 * n_val, "failed": 0}
    assert summary["heads"] == {"verb": 9, "noun": 12} and summary["failures"] == []
    assert [e["epoch"] for e in summary["epochs"]] == [1]
    assert np.isfinite(summary["epochs"][0]["loss"])
    val = summary["validation"]
    assert val["segments"] == n_val
    assert set(val["top1"]) == {"verb", "noun"} and all(0.0 <= v <= 1.0 for v in val["top1"].values())
    assert sum(c["segments"] for c in val["per_class"]["verb"].values()) == n_val
    assert val["motion_pairs"]["pairs"] == [list(p) for p in MOTION_PAIRS]
    assert set(summary["seconds"]) == {"decode", "train", "eval", "total"}
    assert summary["config"]["overrides"] == SMALL and summary["config"]["seed"] == 0


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(synth, tmp_path):
    states = []
    for i, seed in enumerate((5, 5, 6)):
        out = tmp_path / f"run{i}.pyth"
        train_teacher(config(synth, out, seed=seed), log=lambda line: None)
        states.append(read_teacher_checkpoint(out)["model_state"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_bad_input_gives_clear_errors(synth, tmp_path):
    runner = CliRunner()
    args = cli_args(synth, tmp_path / "t.pyth")
    bad = runner.invoke(main, [a if a != "epic100" else "kinetics" for a in args])
    assert bad.exit_code == 2 and "Invalid value for '--dataset'" in bad.output
    missing = runner.invoke(main, [a if a != synth.train_csv else str(tmp_path / "nope.csv") for a in args])
    assert missing.exit_code == 2 and "nope.csv" in missing.output and "does not exist" in missing.output
    override = runner.invoke(main, args + ["--override", "depth"])
    assert override.exit_code == 2 and "expected KEY=VALUE, got 'depth'" in override.output
    unknown = runner.invoke(main, args + ["--override", "colour=3"])
    assert unknown.exit_code == 1 and "unknown override(s) colour" in unknown.output
    with pytest.raises(ManifestError, match="unknown dataset 'kinetics'"):
        train_teacher(config(synth, tmp_path / "t.pyth", dataset="kinetics"))
    with pytest.raises(ManifestError, match="nope.csv: annotation file not found"):
        train_teacher(config(synth, tmp_path / "t.pyth", annotations=(str(tmp_path / "nope.csv"),)))
    with pytest.raises(EgocacheError, match="epochs=0 must be >= 1"):
        train_teacher(config(synth, tmp_path / "t.pyth", epochs=0))
    with pytest.raises(EgocacheError, match="no training clips"):
        train_teacher(config(synth, tmp_path / "t.pyth", annotations=(synth.validation_csv,)))


def test_checkpoint_with_other_heads_is_refused_unless_heads_are_reset(synth, tmp_path):
    torch.manual_seed(0)
    init = create_teacher("mformer-tiny", **SMALL)                  # EPIC heads: verb 97, noun 300
    save_teacher_checkpoint(init, tmp_path / "init.pyth", cfg={})
    heads = {"verb": 9, "noun": 12}
    cfg = config(synth, tmp_path / "t.pyth", checkpoint=str(tmp_path / "init.pyth"), overrides={})
    with pytest.raises(CheckpointError, match=r"heads \{verb:97, noun:300\} differ .*--reset-heads"):
        build_teacher(cfg, heads, {})
    lines: list[str] = []
    model = build_teacher(dataclasses.replace(cfg, reset_heads=True), heads, {}, lines.append)
    assert model.spec.heads == heads and model.spec.config == init.spec.config
    assert model.head0.weight.shape == (9, SMALL["embed_dim"])
    assert torch.equal(model.blocks[0].attn.qkv.weight, init.blocks[0].attn.qkv.weight)
    assert "re-initialised head0.bias, head0.weight, head1.bias, head1.weight" in lines[0]


def test_undecodable_clips_are_reported_and_skipped(synth, tmp_path):
    spec = create_teacher("mformer-tiny", heads={"verb": 9}, **SMALL).spec
    good = load_manifest("epic100", [synth.train_csv], synth.root).clips[0]
    late = dataclasses.replace(good, clip_id="late/0", centre_s=500.0)
    gone = dataclasses.replace(good, clip_id="gone/0", video_path=str(tmp_path / "gone.mp4"))
    lines: list[str] = []
    data = decode_teacher_clips([good, late, gone], spec, ["verb"], log=lines.append)
    assert data.clip_ids == [good.clip_id] and data.frames.shape == (1, 8, 32, 32, 3)
    assert data.labels["verb"].tolist() == [good.labels["verb"]]
    assert [f.split(":")[0] for f in data.failures] == ["late/0", "gone/0"]
    assert "gone.mp4" in data.failures[1] and len(lines) == 2


def test_training_views_spread_over_the_segment():
    clip = Clip("s/0", "s", "v", "/v.mp4", "train", 5.0, 3.0, 7.0, {"verb": 1}, None, ())
    views = training_views([clip], 3)
    assert [v.clip_id for v in views] == ["s/v0", "s/v1", "s/v2"]
    centres = [v.centre_s for v in views]
    assert centres[1] == pytest.approx(5.0) and centres[0] < 5.0 < centres[2]
    assert all(v.labels == clip.labels and v.segment_id == "s" for v in views)


def test_zoom_crop_is_shared_by_all_frames_and_identity_at_full_scale():
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 3, 1, 16, 16)
    x = frame.expand(2, 3, 4, 16, 16).contiguous()
    out = zoom_crop(x, g)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.equal(out[:, :, :1].expand_as(out), out)          # same crop in every frame
    torch.testing.assert_close(zoom_crop(x, g, scale=(1.0, 1.0)), x, atol=1e-5, rtol=0)


def test_segment_metrics_average_clips_per_segment_and_score_motion_pairs():
    names = {"verb": ["take", "put", "wash"]}
    # segment a (take): clip logits disagree, their mean favours take; b (put) is read as take.
    logits = {"verb": np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.0, 3.0]])}
    labels = {"verb": np.array([0, 0, 1, 2])}
    m = segment_metrics(logits, ["a", "a", "b", "c"], labels, names, [("take", "put")])
    assert m["segments"] == 3 and m["top1"]["verb"] == pytest.approx(2 / 3)
    assert m["per_class"]["verb"] == {"take": {"top1": 1.0, "segments": 1}, "put": {"top1": 0.0, "segments": 1},
                                      "wash": {"top1": 1.0, "segments": 1}}
    assert m["mean_class_top1"]["verb"] == pytest.approx(2 / 3)
    assert m["motion_pairs"] == {"pairs": [["take", "put"]], "segments": 2, "top1": 0.5, "pair_top1": 0.5}
    unlabelled = segment_metrics(logits, ["a", "a", "b", "c"], {"verb": np.full(4, -1)}, names)
    assert unlabelled["top1"]["verb"] is None and "motion_pairs" not in unlabelled
