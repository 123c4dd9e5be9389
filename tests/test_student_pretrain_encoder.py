"""`egocache pretrain-image-encoder`: end to end through the CLI, a torchvision file that the student loads
strictly, fresh balanced images, learning, resume after an interruption, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache_factory import make_test_cache
from egocache.cli import main
from egocache.errors import CheckpointError
from egocache.student import pretrain_encoder
from egocache.student.checkpoint import load_student_checkpoint
from egocache.student.config import PretrainEncoderOptions
from egocache.student.models import build_student
from egocache.student.pretrain_encoder import pretrain_image_encoder
from egocache.student.resnet import ResNet18, load_image_weights
from egocache.synth.images import SyntheticImageSet

TINY = ["--images", "192", "--val-images", "60", "--epochs", "2", "--batch-size", "32", "--size", "32",
        "--classes", "3", "--device", "cpu", "--no-progress"]


def quiet(line: str) -> None:
    """Swallow log lines."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny run through the CLI: 3 classes at 32 px, 2 epochs of 192 images."""
    out = tmp_path_factory.mktemp("pretrain") / "enc" / "resnet18-synth.pth"
    res = CliRunner().invoke(main, ["pretrain-image-encoder", str(out), *TINY, "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def test_the_cli_writes_a_torchvision_file_that_loads_strictly_and_a_summary(trained):
    out, summary = trained
    state = torch.load(out, weights_only=True)
    assert set(state) == set(ResNet18().state_dict())
    assert state["fc.weight"].shape == (1000, 512) and state["fc.bias"].shape == (1000,)
    assert state["fc.weight"][:3].abs().sum() > 0
    assert not state["fc.weight"][3:].any() and not state["fc.bias"][3:].any()
    net = ResNet18()
    load_image_weights(net, out)
    assert torch.equal(net.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    student = build_student("visonly", frames=1, feature_dim=16, heads={"verb": 4}, image_weights=out)
    assert torch.equal(student.image_encoder.backbone.conv1.weight, state["conv1.weight"])
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(summary))
    assert summary["image_set"]["classes"] == 3 and summary["image_set"]["size"] == 32
    assert summary["settings"]["images"] == 192 and [e["epoch"] for e in summary["epochs"]] == [1, 2]
    assert summary["held_out"]["images"] == 60 and summary["seconds"]["train"] > 0
    assert not Path(f"{out}.partial.pt").exists()


def test_held_out_accuracy_beats_chance_clearly(trained):
    _, summary = trained
    assert summary["held_out"]["top1"] > 0.6, summary["held_out"]     # chance: 1/3


def test_train_student_accepts_the_file_as_image_weights(trained, tmp_path):
    out, _ = trained
    cache = make_test_cache(tmp_path, n_train=16, n_val_segments=2)
    res = CliRunner().invoke(main, ["train-student", "--cache", cache, "--out", str(tmp_path / "run"), "--variant",
                                    "visonly", "--frames", "1", "--epochs", "1", "--batch-size", "8",
                                    "--num-workers", "0", "--no-progress", "--image-weights", str(out),
                                    "--freeze-image-encoder", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    model = load_student_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert torch.equal(model["image_encoder.backbone.conv1.weight"], torch.load(out, weights_only=True)["conv1.weight"])


def test_a_finished_run_is_reported_not_repeated(trained):
    out, _ = trained
    before = out.stat().st_mtime_ns
    res = CliRunner().invoke(main, ["pretrain-image-encoder", str(out), *TINY])
    assert res.exit_code == 0 and "already trained with these settings" in res.output
    assert out.stat().st_mtime_ns == before


class Recording:
    """An image source that records the labels and keys it is asked for."""

    def __init__(self, inner: SyntheticImageSet) -> None:
        self.inner, self.num_classes, self.size = inner, inner.num_classes, inner.size
        self.calls: list[tuple[np.ndarray, list[tuple[int, ...]]]] = []

    @property
    def class_names(self) -> list[str]:
        return self.inner.class_names

    def render(self, labels: np.ndarray, keys: list[tuple[int, ...]]) -> np.ndarray:
        self.calls.append((np.array(labels), list(keys)))
        return self.inner.render(labels, keys)

    def spec(self) -> dict:
        return self.inner.spec()


def options(out: Path, **kw) -> PretrainEncoderOptions:
    base = dict(out=str(out), images=60, val_images=10, epochs=2, batch_size=16, device="cpu", progress=False)
    return PretrainEncoderOptions(**{**base, **kw})


def test_every_epoch_draws_fresh_balanced_images_and_the_held_out_set_is_apart(tmp_path):
    source = Recording(SyntheticImageSet(classes=7, size=16))
    pretrain_image_encoder(options(tmp_path / "e.pth"), source, log=quiet)
    train, held = source.calls[:6], source.calls[6:]                 # 60 // 16 = 3 steps per epoch, 2 epochs
    keys = [set(k for _, ks in train[e * 3:(e + 1) * 3] for k in ks) for e in range(2)]
    assert len(keys[0]) == len(keys[1]) == 48 and not keys[0] & keys[1]
    held_keys = {k for _, ks in held for k in ks}
    assert len(held_keys) == 10 and not held_keys & (keys[0] | keys[1])
    for e in range(2):
        counts = np.bincount(np.concatenate([lab for lab, _ in train[e * 3:(e + 1) * 3]]), minlength=7)
        assert counts.max() - counts.min() <= 1              # 60 rounded down to 3 batches of 16
    assert np.array_equal(np.bincount(np.concatenate([lab for lab, _ in held]), minlength=7), [2, 2, 2, 1, 1, 1, 1])


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    images = SyntheticImageSet(classes=4, size=16)
    ref = tmp_path / "ref" / "e.pth"
    pretrain_image_encoder(options(ref, checkpoint_every=2), images, log=quiet)

    out = tmp_path / "run" / "e.pth"
    real, calls = pretrain_encoder.augment, []

    def killed_at_step_5(x, gen):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(x, gen)

    monkeypatch.setattr(pretrain_encoder, "augment", killed_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        pretrain_image_encoder(options(out, checkpoint_every=2), images, log=quiet)
    monkeypatch.setattr(pretrain_encoder, "augment", real)
    assert not out.exists() and Path(f"{out}.partial.pt").exists()
    with pytest.raises(CheckpointError, match="partial run made with other settings"):
        pretrain_image_encoder(options(out, checkpoint_every=2, lr=1e-3), images, log=quiet)
    lines: list[str] = []
    summary = pretrain_image_encoder(options(out, checkpoint_every=2), images, log=lines.append)
    assert any("resuming at epoch 2 batch 1 (step 4)" in line for line in lines), lines
    a, b = torch.load(ref, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_summary = json.loads(ref.with_suffix(".json").read_text())
    assert summary["held_out"] == ref_summary["held_out"]
    assert [{k: v for k, v in e.items() if k != "train_seconds"} for e in summary["epochs"]] == \
        [{k: v for k, v in e.items() if k != "train_seconds"} for e in ref_summary["epochs"]]


@pytest.mark.parametrize("out,extra,message", [
    ("x/e.pth", ["--size", "8"], "Invalid value for '--size'"),
    ("x/e.pth", ["--classes", "200"], "Invalid value for '--classes'"),
    ("x/e.json", [], "the summary takes OUT with suffix .json"),
    ("x/e.pth", ["--images", "8", "--batch-size", "16"], "fewer than one batch"),
    ("file.txt/e.pth", [], "cannot create folder"),
])
def test_bad_requests_get_one_line_errors(tmp_path, out, extra, message):
    (tmp_path / "file.txt").write_text("not a folder")
    res = CliRunner().invoke(main, ["pretrain-image-encoder", str(tmp_path / out), "--no-progress", *extra])
    assert res.exit_code in (1, 2) and message in res.output, res.output
    error = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and not (tmp_path / "x").exists()
