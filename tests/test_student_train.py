"""Student training from the cache: config, evaluation, data order, frozen features, stages, bad caches, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cache_factory import MOTION_VERBS, VERBS, make_test_cache
from egocache.core.files import write_json_atomic
from egocache.errors import ConfigError, CacheError, CacheFormatError, CheckpointError, EgocacheError
from egocache.student.checkpoint import load_student_checkpoint
from egocache.student.config import TrainConfig, check_cache, default_milestones, resolve_config
from egocache.core.metrics import (Predictions, evaluate_predictions, segment_scores)
from egocache.student.evaluate import read_segment_predictions, write_metrics_csv
from egocache.student.losses import student_loss
from egocache.student.resnet import ResNet18
from egocache.student.train import EpochSampler, Runtime, StageRun, to_device, train_student

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return make_test_cache(tmp_path_factory.mktemp("cache"), n_train=32, n_val_segments=6)


def config(cache: str, out: Path, **kw) -> TrainConfig:
    base = dict(cache=cache, out=str(out), batch_size=8, epochs=2, pretrain_epochs=1, num_workers=0,
                checkpoint_every=100)
    return TrainConfig(**{**base, **kw})


def quiet(msg: str) -> None:
    """Swallow training log lines in tests (they are checked where they matter)."""


# --- config -----------------------------------------------------------------------------------------

def test_resolve_config_uses_paper_schedules_per_dataset():
    ego = resolve_config(TrainConfig(), dataset="ego4d", heads=["verb"])
    epic = resolve_config(TrainConfig(), dataset="epic100", heads=["verb", "noun"])
    assert (ego.epochs, ego.milestones, ego.tau) == (150, [90, 120], 10.0)
    assert (epic.epochs, epic.milestones, epic.tau, epic.heads) == (50, [30, 40], 1.0, ["verb", "noun"])
    assert epic.pretrain_milestones == [30, 40] and (epic.batch_size, epic.lr, epic.alpha) == (64, 1e-4, 0.95)
    assert default_milestones(10) == [6, 8]
    own = resolve_config(TrainConfig(epochs=4, milestones=[1], tau=3.0), dataset="ego4d", heads=["verb"])
    assert (own.epochs, own.milestones, own.tau) == (4, [1], 3.0)
    with pytest.raises(ValueError, match="not in the cache"):
        resolve_config(TrainConfig(heads=["action"]), dataset="epic100", heads=["verb"])


def test_config_overrides_are_type_checked_and_round_trip():
    cfg = TrainConfig().with_overrides(milestones="40,30", lr=1, batch_size=None)
    assert cfg.milestones == [30, 40] and cfg.lr == 1.0 and cfg.batch_size == 64
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown setting.*learning_rate"):
        TrainConfig().with_overrides(learning_rate=0.1)
    with pytest.raises(ConfigError, match="--batch-size: expected an integer"):
        TrainConfig().with_overrides(batch_size="64")
    with pytest.raises(ConfigError, match="--variant: expected one of"):
        TrainConfig().with_overrides(variant="resnet")
    with pytest.raises(ConfigError, match="--device: expected auto, cpu"):
        TrainConfig().with_overrides(device="tpu")
    with pytest.raises(ConfigError, match="--milestones: expected comma-separated integers, got 'abc'"):
        TrainConfig().with_overrides(milestones="abc")
    with pytest.raises(ConfigError, match="--lr: must be > 0"):
        TrainConfig(lr=0.0)


# --- evaluation ---------------------------------------------------------------------------------------

def test_segment_scores_softmax_and_logit_averaging_differ_as_documented():
    logits = np.array([[10.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [2.0, 0.0]])
    segments = np.array([7, 7, 7, 7, 3])
    codes, soft = segment_scores(logits, segments, average="softmax")
    _, mean_logits = segment_scores(logits, segments, average="logits")
    assert codes.tolist() == [3, 7]
    assert soft[1].argmax() == 1 and mean_logits[1].argmax() == 0  # one confident clip vs three mild ones
    assert np.allclose(soft.sum(axis=1), 1.0)
    assert np.allclose(mean_logits[1], [2.5, 0.75])


def test_evaluate_predictions_and_metrics_csv(tmp_path):
    pred = Predictions(logits={"verb": np.eye(6, dtype=np.float32)[[0, 2, 4]], "noun": np.eye(3)[[0, 0, 0]]},
                       labels={"verb": np.array([0, 2, 5]), "noun": np.array([0, 1, 2])},
                       segments=np.array([0, 1, 2]))
    m = evaluate_predictions(pred, {"verb": VERBS, "noun": ["x", "y", "z"]}, motion_verbs=MOTION_VERBS)
    assert m["main_head"] == "verb" and m["top1_acc"] == pytest.approx(2 / 3)
    assert m["motion_pairs_top1_acc"] == 1.0 and m["heads"]["noun"]["top1_acc"] == pytest.approx(1 / 3)
    for epoch in (2, 1):
        write_json_atomic(tmp_path / "metrics" / f"epoch_{epoch:03d}.json", {**m, "epoch": epoch, "losses": {"loss": 1.0 / epoch}})
    rows = (tmp_path / "metrics.csv").exists(), write_metrics_csv(tmp_path).read_text().splitlines()
    header = rows[1][0].split(",")
    assert not rows[0] and len(rows[1]) == 3
    assert {"epoch", "top1_acc", "loss_loss", "verb_top1_acc", "verb_motion_pairs_top1_acc"} <= set(header)
    assert rows[1][1].split(",")[header.index("epoch")] == "1"


# --- data order ----------------------------------------------------------------------------------------

def test_epoch_sampler_is_a_pure_function_of_seed_and_epoch_and_splits_batches_by_rank():
    def order(seed, epoch, skip=0, rank=0, world=1):
        s = EpochSampler(50, 8, seed, rank, world)
        s.set_epoch(epoch, skip)
        return list(s)

    assert order(1, 3) == order(1, 3) and order(1, 3) != order(1, 4) and order(2, 3) != order(1, 3)
    assert len(order(1, 3)) == 48 and len(set(order(1, 3))) == 48       # last partial batch dropped
    assert order(1, 3, skip=2) == order(1, 3)[16:]
    ranks = [order(1, 3, rank=r, world=2) for r in range(2)]
    joined = [i for b in range(6) for r in range(2) for i in ranks[r][4 * b:4 * b + 4]]
    assert joined == order(1, 3)


# --- frozen image features ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def selection_cache(tmp_path_factory) -> str:
    """A cache storing every frame selection of paper Table 4 for N = 1, 2."""
    return make_test_cache(tmp_path_factory.mktemp("selections"), n_train=32, n_val_segments=6,
                           selections=("first", "last", "center", "random"))


@pytest.mark.parametrize("selection", ["uniform", "random"])
def test_cached_image_features_give_the_losses_of_the_frozen_encoder(selection_cache, tmp_path, selection):
    """The stored features (a random selection's: of the whole pool, picked per clip) train as the frames do."""
    from egocache.cache import CacheDataset

    cache = selection_cache
    torch.manual_seed(123)
    imagenet = ResNet18()
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    cfg = check_cache(config(cache, tmp_path, variant="egodistill", frames=2, freeze_image_encoder=True,
                             image_weights=str(tmp_path / "resnet18.pth"), frame_selection=selection, seed=3))
    run = StageRun("distill", cfg[1], cfg[0], Runtime(0, 1, torch.device("cpu")), resume=False,
                   progress=False, log=quiet)
    run.build()
    [stored] = (tmp_path / "image_features").glob("train-*.npy")
    assert torch.equal(run.student.image_encoder.backbone.conv1.weight, imagenet.conv1.weight)
    frames_ds = CacheDataset(cache, split="train", frames=2, selection=selection, selection_seed=3)
    assert np.load(stored).shape[1] == (16 if selection == "random" else 2)
    student = run.student
    state = {k: v.clone() for k, v in student.state_dict().items()}
    losses = {}
    for path in ("features", "frames"):
        student.load_state_dict(state)
        opt = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-3)
        torch.manual_seed(5)
        student.train()
        losses[path] = []
        for idx in ([0, 5, 9, 12], [1, 2, 30, 31], [0, 5, 9, 12]):
            batch = run.train_ds[idx] if path == "features" else frames_ds[idx]
            out = run.module(to_device(batch, torch.device("cpu")))
            loss = student_loss(out, batch, run.losses, distill=True)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[path].append(loss.item())
    assert "image_features" not in frames_ds[[0]] and "frames" not in run.train_ds[[0]]
    assert np.allclose(losses["features"], losses["frames"], rtol=1e-5, atol=1e-6)
    assert losses["features"][2] < losses["features"][0]  # it learns, with the encoder fixed


# --- whole runs -------------------------------------------------------------------------------------------

def test_train_all_stages_writes_checkpoints_metrics_and_resolved_config(cache, tmp_path):
    cfg = config(cache, tmp_path / "run", variant="egodistill", frames=1, checkpoint_every=3)
    logs: list[str] = []
    result = train_student(cfg, progress=False, log=logs.append)
    out = tmp_path / "run"
    assert set(result) == {"pretrain", "distill"}
    assert {"nce", "l1", "loss"} == set(result["pretrain"]["losses"])
    for name in ("last.pt", "best.pt", "metrics.json", "metrics.csv", "metrics/epoch_001.json",
                 "metrics/epoch_002.json", "pretrain/last.pt", "pretrain/metrics.json"):
        assert (out / name).exists(), name
    final = json.loads((out / "metrics.json").read_text())
    assert final["epoch"] == 2 and 0.0 <= final["top1_acc"] <= 1.0 and "motion_pairs_top1_acc" in final
    segs = read_segment_predictions(out / "segments.npz")                 # the last evaluation, per segment
    assert sorted(segs["segment_id"]) == [f"va{i}" for i in range(6)]
    assert np.mean(segs["verb_score"].argmax(1) == segs["verb_label"]) == pytest.approx(final["top1_acc"])
    assert set(final["heads"]) == {"verb", "noun"} and final["best"]["epoch"] in (1, 2)
    ckpt = load_student_checkpoint(out / "last.pt")
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (2, 0, 8)
    assert ckpt["config"]["tau"] == 1.0 and ckpt["config"]["milestones"] == [1, 2]
    assert {"optimizer", "scheduler", "rng", "model_config", "model"} <= set(ckpt)
    best = load_student_checkpoint(out / "best.pt")             # weights and metrics, no training state
    assert {"model_config", "model", "metrics", "epoch"} <= set(best) and not {"optimizer", "rng"} & set(best)
    assert (out / "best.pt").stat().st_size < (out / "last.pt").stat().st_size
    assert any("initialised from" in line for line in logs)
    assert any(line.startswith("distill epoch 2/2") and "clips/s" in line for line in logs)
    with pytest.raises(EgocacheError, match="pass --resume"):
        train_student(cfg, progress=False, log=quiet)
    again = train_student(cfg, resume=True, progress=False, log=logs.append)  # finished: nothing to do
    assert again["distill"]["top1_acc"] == final["top1_acc"] and "distill: already finished" in logs[-1]
    with pytest.raises(CheckpointError, match="other settings"):
        train_student(cfg.with_overrides(lr=1e-3), resume=True, progress=False, log=quiet)


def test_eval_every_evaluates_every_k_epochs_and_after_the_last(cache, tmp_path):
    train_student(config(cache, tmp_path, variant="visonly", epochs=3, eval_every=2), progress=False, log=quiet)
    evaluated = [json.loads((tmp_path / "metrics" / f"epoch_{e:03d}.json").read_text()).get("top1_acc") is not None
                 for e in (1, 2, 3)]
    assert evaluated == [False, True, True]
    with pytest.raises(ConfigError, match="--pretrain-nce and --pretrain-l1 are both 0"):
        config(cache, tmp_path, pretrain_nce=0.0, pretrain_l1=0.0)
    config(cache, tmp_path, pretrain_nce=0.0, pretrain_l1=0.0, stage="distill")     # nothing to pretrain


def test_visonly_variant_skips_pretrain_with_a_message(cache, tmp_path):
    logs: list[str] = []
    result = train_student(config(cache, tmp_path, variant="visonly", epochs=1), progress=False, log=logs.append)
    assert list(result) == ["distill"] and not (tmp_path / "pretrain").exists()
    assert "no IMU branch: skipping the pretrain stage" in logs[0]
    with pytest.raises(EgocacheError, match="no pretrain stage"):
        train_student(config(cache, tmp_path / "b", variant="visonly", stage="pretrain"), progress=False, log=quiet)


@pytest.mark.parametrize("case,variant,match", [
    ("no_imu", "egodistill", "needs IMU"),
    ("no_features", "visonly-distill", "no teacher features"),
    ("frames", "visonly", "no stored frames for N=4"),
    ("no_first_last", "visimu", "first and last frame"),
    ("version", "visonly", "format version"),
    ("corrupt", "visonly", "fails verification"),
])
def test_bad_caches_are_refused_before_training(tmp_path, case, variant, match):
    kw = {"no_imu": dict(imu=False), "no_features": dict(features=False),
          "no_first_last": dict(first_last=False)}.get(case, {})
    path = make_test_cache(tmp_path, n_train=16, n_val_segments=2, **kw)
    if case == "version":
        meta = json.loads(Path(path, "zarr.json").read_text())
        meta["attributes"]["format_version"] = 99
        Path(path, "zarr.json").write_text(json.dumps(meta))
    if case == "corrupt":
        shard = Path(path, "features", "c", "0", "0")
        shard.write_bytes(shard.read_bytes()[:-8] + b"\xff" * 8)   # format 2 rows are raw: change the bytes
    error = CacheFormatError if case == "version" else CacheError
    with pytest.raises(error, match=match):
        train_student(config(path, tmp_path / "run", variant=variant, frames=4 if case == "frames" else 1),
                      progress=False, log=quiet)
    assert not (tmp_path / "run").exists()


def test_torchrun_two_processes_match_one_process(cache, tmp_path):
    """Same global batch on 2 CPU ranks (gloo) as in 1 process: no BatchNorm is trained here, so tight."""
    args = ["-m", "egocache", "train-student", "--cache", cache, "--variant", "visonly-distill", "--frames", "2",
            "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--freeze-image-encoder", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for cmd, out in ((ddp + args[1:], "ddp"), ([sys.executable] + args, "one")):
        proc = subprocess.run(cmd + ["--out", str(tmp_path / out)], env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("ddp", "one"))
    for key in ("loss", "kd", "ce", "l1"):
        assert a["losses"][key] == pytest.approx(b["losses"][key], rel=1e-4)
    assert a["heads"]["verb"]["per_class_acc"] == b["heads"]["verb"]["per_class_acc"]
    assert load_student_checkpoint(tmp_path / "ddp" / "last.pt")["step"] == 8


def test_runs_share_a_features_dir_and_compute_each_feature_file_once(cache, tmp_path):
    torch.manual_seed(1)
    torch.save(ResNet18().state_dict(), tmp_path / "resnet18.pth")
    logs: list[str] = []
    for seed in (0, 1):
        train_student(config(cache, tmp_path / f"seed{seed}", variant="visonly-distill", epochs=1, seed=seed,
                             freeze_image_encoder=True, image_weights=str(tmp_path / "resnet18.pth"),
                             features_dir=str(tmp_path / "features")), progress=False, log=logs.append)
    computed = [line for line in logs if line.startswith("computing frozen image features")]
    assert len(computed) == 2 and {"train", "validation"} == {line.split()[6] for line in computed}
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2 and not (tmp_path / "seed1" / "image_features").exists()


def test_listentolook_pretrains_and_distils_from_audio_skipping_clips_without_it(tmp_path):
    path = make_test_cache(tmp_path, n_train=16, n_val_segments=2, audio=True)
    logs: list[str] = []
    result = train_student(config(path, tmp_path / "run", variant="listentolook", epochs=1), progress=False,
                           log=logs.append)
    assert list(result) == ["pretrain", "distill"] and result["distill"]["top1_acc"] is not None
    assert any("reads audio: skipping the clips without it 2 train, 0 validation" in line for line in logs)
    ckpt = load_student_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["model_config"]["audio_shape"] == [201, 48]
    assert any(k.startswith("audio_encoder.cnn.") for k in ckpt["model"]) and not any(
        k.startswith("imu_encoder.") for k in ckpt["model"])
    assert float(ckpt["model"]["audio_encoder.input_mean"].mean()) < -5.0      # set from the training spectrograms
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["needs_audio"] and not run["needs_imu"] and run["audio"]["n_fft"] == 400
    plain = make_test_cache(tmp_path, name="plain.zarr", n_train=16, n_val_segments=2)
    with pytest.raises(CacheError, match="has no audio .* variant listentolook"):
        train_student(config(plain, tmp_path / "run2", variant="listentolook"), progress=False, log=quiet)
