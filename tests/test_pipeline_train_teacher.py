"""Teacher fine-tuning: `egocache train-teacher` end to end, checkpoint round trip, resume, the same
pixels and evaluator as extraction and the benchmark, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import CheckpointError, ConfigError, EgocacheError, ManifestError
from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.frames import FramePlan
from egocache.pipeline.options import TeacherTrainConfig
from egocache.pipeline.teachers import create_teacher, read_teacher_checkpoint, save_teacher_checkpoint
from egocache.pipeline.teachers.base import run_teacher
from egocache.pipeline.train_teacher import build_teacher, decode_teacher_clips, train_teacher, zoom_crop
from egocache.synth import MOTION_PAIRS, synthesize

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
                teacher_overrides=SMALL, epochs=1, batch_size=4, train_clips=2, eval_clips=2, frame_size=32,
                device="cpu", progress=False)
    return TeacherTrainConfig(**{**base, **kwargs})


def cli_args(synth, out: Path, *extra: str) -> list[str]:
    """train-teacher arguments for the fast config."""
    args = ["train-teacher", "--teacher", "mformer-tiny", "--dataset", "epic100",
            "--annotations", synth.train_csv, "--annotations", synth.validation_csv, "--root", synth.root,
            "--out", str(out), "--epochs", "2", "--batch-size", "4", "--train-clips", "2",
            "--eval-clips", "2", "--frame-size", "32", "--device", "cpu", "--no-progress", "--json", *extra]
    for key, value in SMALL.items():
        args += ["--teacher-option", f"{key}={value}"]
    return args


def test_cli_end_to_end_checkpoint_loads_strictly_and_reproduces_validation_logits(synth, tmp_path):
    out = tmp_path / "ft" / "teacher.pyth"
    result = CliRunner().invoke(main, cli_args(synth, out))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2] and not Path(f"{out}.partial.pt").exists()
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
    val = load_manifest("epic100", [synth.validation_csv], synth.root, eval_clips=2).clips
    data = decode_teacher_clips(val, FramePlan(8, model.spec.frame_stride, 32, (), 32), list(names))
    assert list(saved["clip_ids"]) == data.clip_ids
    _, logits = run_teacher(model, data.inputs, "cpu", 4)
    for head in names:
        np.testing.assert_allclose(logits[head], saved[f"logits_{head}"], rtol=1e-5, atol=1e-5)
    again = CliRunner().invoke(main, cli_args(synth, out))      # the same command on a finished run
    assert again.exit_code == 0 and "already trained" in again.output
    assert json.loads(again.stdout)["seconds"] == summary["seconds"]


def test_summary_reports_clips_epochs_and_segment_metrics(synth, tmp_path):
    summary = train_teacher(config(synth, tmp_path / "t.pyth"), log=lambda line: None)
    n_val = sum(v.num_segments for v in synth.videos if v.split == "validation")
    n_train = sum(v.num_segments for v in synth.videos if v.split == "train")
    assert summary["clips"] == {"train": 2 * n_train, "validation": 2 * n_val, "failed": 0}
    assert summary["heads"] == {"verb": 9, "noun": 12} and summary["failures"] == []
    assert [e["epoch"] for e in summary["epochs"]] == [1]
    assert np.isfinite(summary["epochs"][0]["loss"])
    val = summary["validation"]
    assert val["averaging"] == "softmax" and val["heads"]["verb"]["segments"] == n_val
    assert set(val["heads"]) == {"verb", "noun"} and all(0.0 <= m["top1_acc"] <= 1.0 for m in val["heads"].values())
    assert {"motion_pairs_top1_acc", "motion_pairs_within_acc"} <= set(val)   # pairs come from the metadata
    assert set(summary["seconds"]) == {"decode", "train", "eval", "total"}
    assert summary["settings"]["teacher_overrides"] == [list(p) for p in sorted(SMALL.items())]
    assert summary["spec"]["decode_size"] == 32


def test_same_seed_gives_the_same_weights_and_another_seed_does_not(synth, tmp_path):
    states = []
    for i, seed in enumerate((5, 5, 6)):
        out = tmp_path / f"run{i}.pyth"
        train_teacher(config(synth, out, seed=seed), log=lambda line: None)
        states.append(read_teacher_checkpoint(out)["model_state"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_a_finished_run_with_other_settings_is_trained_again_and_a_foreign_partial_refused(synth, tmp_path):
    out = tmp_path / "t.pyth"
    train_teacher(config(synth, out), log=lambda line: None)
    lines: list[str] = []
    train_teacher(config(synth, out, lr=1e-3), log=lines.append)
    assert not any("already trained" in line for line in lines)
    save_teacher_checkpoint(create_teacher("mformer-tiny", **SMALL), f"{out}.partial.pt", cfg={},
                            extra={"train_state": {"key": "other"}})
    with pytest.raises(CheckpointError, match="partial run made with other settings"):
        train_teacher(config(synth, out, lr=5e-4), log=lambda line: None)


def test_bad_input_gives_clear_errors(synth, tmp_path):
    runner = CliRunner()
    args = cli_args(synth, tmp_path / "t.pyth")
    bad = runner.invoke(main, [a if a != "epic100" else "kinetics" for a in args])
    assert bad.exit_code == 2 and "Invalid value for '--dataset'" in bad.output
    missing = runner.invoke(main, [a if a != synth.train_csv else str(tmp_path / "nope.csv") for a in args])
    assert missing.exit_code == 2 and "nope.csv" in missing.output and "does not exist" in missing.output
    override = runner.invoke(main, args + ["--teacher-option", "depth"])
    assert override.exit_code == 2 and "expected KEY=VALUE, got 'depth'" in override.output
    unknown = runner.invoke(main, args + ["--teacher-option", "colour=3"])
    assert unknown.exit_code == 1 and "unknown override(s) colour" in unknown.output
    with pytest.raises(ConfigError, match="--dataset: expected one of"):
        config(synth, tmp_path / "t.pyth", dataset="kinetics")
    with pytest.raises(ManifestError, match="nope.csv: annotation file not found"):
        train_teacher(config(synth, tmp_path / "t.pyth", annotations=(str(tmp_path / "nope.csv"),)))
    with pytest.raises(ConfigError, match="--epochs: must be >= 1"):
        config(synth, tmp_path / "t.pyth", epochs=0)
    with pytest.raises(ConfigError, match="--out .*json"):
        config(synth, tmp_path / "t.json")
    with pytest.raises(EgocacheError, match="no training clips"):
        train_teacher(config(synth, tmp_path / "t.pyth", annotations=(synth.validation_csv,)))


def test_checkpoint_with_other_heads_is_refused_unless_heads_are_reset(synth, tmp_path):
    torch.manual_seed(0)
    init = create_teacher("mformer-tiny", **SMALL)                  # EPIC heads: verb 97, noun 300
    save_teacher_checkpoint(init, tmp_path / "init.pyth", cfg={})
    heads = {"verb": 9, "noun": 12}
    cfg = config(synth, tmp_path / "t.pyth", checkpoint=str(tmp_path / "init.pyth"), teacher_overrides=())
    with pytest.raises(CheckpointError, match=r"heads \{verb:97, noun:300\} differ .*--reset-heads"):
        build_teacher(cfg, heads, {})
    lines: list[str] = []
    model = build_teacher(dataclasses.replace(cfg, reset_heads=True), heads, {}, lines.append)
    assert model.spec.heads == heads and model.spec.config == init.spec.config
    assert model.head0.weight.shape == (9, SMALL["embed_dim"])
    assert torch.equal(model.blocks[0].attn.qkv.weight, init.blocks[0].attn.qkv.weight)
    assert "re-initialised head0.bias, head0.weight, head1.bias, head1.weight" in lines[0]


def test_undecodable_clips_are_reported_and_skipped(synth, tmp_path):
    good = load_manifest("epic100", [synth.train_csv], synth.root).clips[0]
    late = dataclasses.replace(good, clip_id="late/0", centre_s=500.0)
    gone = dataclasses.replace(good, clip_id="gone/0", video_path=str(tmp_path / "gone.mp4"))
    lines: list[str] = []
    data = decode_teacher_clips([good, late, gone], FramePlan(8, 8, 32, (), 32), ["verb"], log=lines.append)
    assert data.clip_ids == [good.clip_id] and data.inputs.shape == (1, 8, 32, 32, 3)
    assert data.labels["verb"].tolist() == [good.labels["verb"]]
    assert [f.split(":")[0] for f in data.failures] == ["late/0", "gone/0"]
    assert "gone.mp4" in data.failures[1] and len(lines) == 2


def test_training_clips_are_spread_over_each_segment_as_extraction_cuts_them(synth):
    manifest = load_manifest("epic100", [synth.train_csv], synth.root, train_clips=3)
    first = [c for c in manifest.clips if c.segment_id == manifest.clips[0].segment_id]
    assert [c.clip_id.rsplit("/", 1)[1] for c in first] == ["0", "1", "2"]
    assert first[0].centre_s < first[1].centre_s < first[2].centre_s
    assert first[1].centre_s == pytest.approx((first[0].segment_start_s + first[0].segment_stop_s) / 2)


def test_zoom_crop_is_shared_by_all_frames_and_identity_at_full_scale():
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 3, 1, 16, 16)
    x = frame.expand(2, 3, 4, 16, 16).contiguous()
    out = zoom_crop(x, g)
    assert out.shape == x.shape and not torch.allclose(out, x)
    assert torch.equal(out[:, :, :1].expand_as(out), out)          # same crop in every frame
    torch.testing.assert_close(zoom_crop(x, g, scale=(1.0, 1.0)), x, atol=1e-5, rtol=0)


def test_teacher_trains_on_the_pixels_the_cache_holds_and_prints_the_benchmarks_accuracy(synth, tmp_path):
    """train-teacher's validation logits are the logits extraction caches for the same clips, and its
    accuracy is the benchmark's teacher row (one decoder, one frame plan, one evaluator)."""
    import zarr

    from egocache.cache import CacheDataset
    from egocache.cache.schema import read_array
    from egocache.pipeline.extract import extract
    from egocache.pipeline.options import ExtractOptions
    from egocache.report.benchmark import teacher_metrics

    out = tmp_path / "t.pyth"
    summary = train_teacher(config(synth, out, frame_size=48), log=lambda line: None)  # decoded at 48, > 32
    assert summary["spec"]["decode_size"] == 48
    cache = tmp_path / "cache.zarr"
    extract(ExtractOptions(teacher="mformer-tiny", checkpoint=str(out), dataset="epic100",
                           annotations=(synth.train_csv, synth.validation_csv), root=synth.root, cache=str(cache),
                           eval_clips=2, frame_size=48, frames=(1,), shard_size=8, batch_size=3, device="cpu",
                           progress=False))
    saved = np.load(summary["validation_logits"])
    ds = CacheDataset(str(cache), split="validation", read_frames=False)
    cached = ds[list(range(len(ds)))]
    ids = read_array(zarr.open_group(str(cache), mode="r"), "clip_id", str(cache))[ds.rows]
    assert ids.tolist() == saved["clip_ids"].tolist()
    for head in ("verb", "noun"):
        np.testing.assert_allclose(cached["logits"][head].numpy(), saved[f"logits_{head}"], rtol=0, atol=1e-5)
    bench = teacher_metrics(str(cache), ds.info.source.get("motion_pair_verbs"))
    assert bench["top1_acc"] == summary["validation"]["top1_acc"]
    assert bench["motion_pairs_top1_acc"] == summary["validation"]["motion_pairs_top1_acc"]
    assert ds.info.source["motion_pair_verbs"] == [v for p in MOTION_PAIRS for v in p]


@pytest.mark.slow
def test_kill_9_then_the_same_command_gives_the_uninterrupted_checkpoint_and_metrics(synth, tmp_path):
    ref_out = tmp_path / "ref" / "t.pyth"
    argv = cli_args(synth, ref_out, "--epochs", "3", "--checkpoint-every", "2", "--seed", "4")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import torch, sys; torch.set_num_threads(1); from egocache.cli import main; main(sys.argv[1:])"
    ref = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed" / "t.pyth"
    argv = cli_args(synth, out, "--epochs", "3", "--checkpoint-every", "2", "--seed", "4")
    partial = Path(f"{out}.partial.pt")
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first partial checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and partial.exists()
    resumed = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0 and "resuming at epoch" in resumed.stderr, resumed.stderr[-3000:]
    a, b = read_teacher_checkpoint(ref_out), read_teacher_checkpoint(out)
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    ref_summary, summary = json.loads(ref.stdout), json.loads(resumed.stdout)
    assert summary["validation"] == ref_summary["validation"] and summary["epochs"] == ref_summary["epochs"]
    np.testing.assert_array_equal(np.load(ref_summary["validation_logits"])["logits_verb"],
                                  np.load(summary["validation_logits"])["logits_verb"])
