"""Students distilled from several cached teachers: ensemble weights (equal, fixed, adaptive) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from cache_factory import VERBS, make_test_cache
from egocache.cache.teachers import TeacherGroupWriter
from egocache.cli import main
from egocache.student.checkpoint import load_student_checkpoint
from egocache.student.losses import LossConfig, ensemble_logits, student_loss

ROOT = "synthetic-test"         # the test cache's own teacher


def batch_of(z_a: torch.Tensor, z_b: torch.Tensor, labels: torch.Tensor) -> dict:
    """A batch with two teachers' verb logits (b also has no noun head) and features."""
    f = torch.zeros(len(labels), 4)
    return {"label": {"verb": labels},
            "teachers": {"a": {"feature": f, "logits": {"verb": z_a, "noun": z_a[:, :2]}, "aux": {}},
                         "b": {"feature": f + 1, "logits": {"verb": z_b}, "aux": {}}}}


def test_ensemble_weights_equal_fixed_and_adaptive():
    torch.manual_seed(0)
    z_a, z_b = torch.randn(5, 3), torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, -1, 1])
    batch = batch_of(z_a, z_b, labels)
    equal, w = ensemble_logits(batch, "verb", LossConfig(teachers=("a", "b")))
    torch.testing.assert_close(equal, (z_a + z_b) / 2)
    assert set(w) == {"a", "b"}
    fixed, _ = ensemble_logits(batch, "verb", LossConfig(teachers=("a", "b"), weighting="fixed", weights=(3.0, 1.0)))
    torch.testing.assert_close(fixed, 0.75 * z_a + 0.25 * z_b)
    # a head only one teacher has: that teacher alone, whatever its weight
    noun, w_noun = ensemble_logits(batch, "noun", LossConfig(teachers=("a", "b"), weighting="fixed", weights=(0.1, 0.9)))
    torch.testing.assert_close(noun, z_a[:, :2])
    assert set(w_noun) == {"a"}
    tau = 0.5
    adaptive, _ = ensemble_logits(batch, "verb", LossConfig(teachers=("a", "b"), weighting="adaptive", weight_tau=tau))
    for i in range(5):
        if labels[i] < 0:       # unknown label: equal weights
            want = (z_a[i] + z_b[i]) / 2
        else:
            ce = torch.stack([F.cross_entropy(z[i:i + 1], labels[i:i + 1]) for z in (z_a, z_b)])
            wa, wb = torch.softmax(-ce / tau, 0)
            want = wa * z_a[i] + wb * z_b[i]
        torch.testing.assert_close(adaptive[i], want)


def test_adaptive_weights_favour_the_teacher_that_is_right():
    labels = torch.tensor([0, 1])
    right = 8 * F.one_hot(labels, 3).float()
    wrong = 8 * F.one_hot((labels + 1) % 3, 3).float()
    _, w = ensemble_logits(batch_of(right, wrong, labels), "verb", LossConfig(teachers=("a", "b"), weighting="adaptive"))
    assert w["a"] > 0.99 and w["b"] < 0.01


def test_loss_uses_the_named_feature_teacher_or_none():
    labels = torch.tensor([0, 1])
    batch = batch_of(torch.randn(2, 3), torch.randn(2, 3), labels)
    out = {"logits": {"verb": torch.randn(2, 3)}, "feature": torch.zeros(2, 4)}
    with_b = student_loss(out, batch, LossConfig(teachers=("a", "b"), feature_teacher="b"), distill=True)
    assert float(with_b["l1"]) == 1.0 and {"w_a", "w_b"} <= set(with_b)
    none = student_loss(out, batch, LossConfig(teachers=("a", "b")), distill=True)
    assert float(none["l1"]) == 0.0
    with pytest.raises(ValueError, match="not one of the teachers"):
        LossConfig(teachers=("a",), feature_teacher="b")
    with pytest.raises(ValueError, match="one weight"):
        LossConfig(teachers=("a", "b"), weighting="fixed", weights=(1.0,))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    """The student test cache plus an added teacher 'other' (verb head only, 6-d features) that fails clip 0."""
    path = make_test_cache(tmp_path_factory.mktemp("ens"), n_train=32, n_val_segments=4)
    rng = np.random.default_rng(1)
    teacher = {"name": "other-test", "config": {}, "checkpoint_sha256": None, "feature_dim": 6,
               "heads": {"verb": VERBS}, "aux": {"object_score": 3, "ego_score": 1}}
    w = TeacherGroupWriter.create(path, "other", teacher=teacher, sampling={"t": 4, "stride": 2})
    for i in range(w.num_shards):
        m = w.shard_slice(i).stop - w.shard_slice(i).start
        status, errors = np.ones(m, np.int8), [""] * m
        if i == 0:
            status[0], errors[0] = 2, "decode: clip outside the video"
        score = rng.dirichlet(np.ones(3), size=m).astype(np.float32)
        w.write_shard(i, rng.normal(size=(m, 6)).astype(np.float32),
                      {"verb": rng.normal(size=(m, len(VERBS))).astype(np.float32)},
                      {"object_score": score, "ego_score": rng.uniform(size=(m, 1)).astype(np.float32)},
                      status, errors)
    return path


def args(cache: str, out, *extra: str) -> list[str]:
    return ["train-student", "--cache", cache, "--out", str(out), "--batch-size", "8", "--num-workers", "0",
            "--no-progress", "--variant", "visonly-distill", "--frames", "1", "--epochs", "1", "--json", *extra]


def test_cli_distils_an_adaptive_ensemble_with_the_l1_term_on_a_named_teacher(cache, tmp_path):
    res = CliRunner().invoke(main, args(cache, tmp_path / "run", "--teachers", f"{ROOT},other",
                                        "--teacher-weights", "adaptive", "--feature-teacher", "other"))
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    losses = metrics["train"] if "train" in metrics else metrics
    text = json.dumps(losses)
    assert f"w_{ROOT}" in text and "w_other" in text
    ckpt = load_student_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["config"]["teachers"] == [ROOT, "other"]
    # the L1 term matched the 6-d features of 'other': the student's feature head is 6-d
    assert any(v.shape[0] == 6 for k, v in ckpt["model"].items() if "feature" in k or "proj" in k)


def test_cli_adds_auxiliary_targets_of_a_cached_teacher(cache, tmp_path):
    res = CliRunner().invoke(main, args(cache, tmp_path / "run", "--aux", "other/object_score:0.5,ego_score:0.1:bce"))
    assert res.exit_code == 0, res.output
    text = (tmp_path / "run" / "metrics.json").read_text()
    assert "aux_object_score" in text and "aux_ego_score" in text
    ckpt = load_student_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["model_config"]["aux"] == {"object_score": 3, "ego_score": 1}
    assert ckpt["model"]["aux_heads.object_score.weight"].shape[0] == 3


def test_aux_loss_terms():
    from egocache.student.losses import aux_loss

    target = torch.tensor([[0.2, 0.8]])
    pred = torch.log(target)
    assert float(aux_loss(pred, target, "kl")) == pytest.approx(0.0, abs=1e-6)
    assert float(aux_loss(torch.zeros(1, 2), target, "mse")) == pytest.approx((0.04 + 0.64) / 2)
    torch.testing.assert_close(aux_loss(torch.zeros(1, 2), target, "bce"), torch.tensor(np.log(2), dtype=torch.float32))


@pytest.mark.parametrize("extra,message", [
    (["--aux", "nope:1"], "no teacher of the cache declares 'nope' (declared auxiliary outputs: other/object_score, "
                          "other/ego_score)"),
    (["--aux", "ego_score:1"], "its values are not distributions"),
    (["--aux", "object_score"], "expected [TEACHER/]NAME:WEIGHT"),
    (["--aux", "object_score:1", "--variant", "visonly"], "trains on labels only"),
    (["--teachers", f"{ROOT},nope"], "no teacher 'nope' in this cache; its teachers: synthetic-test, other"),
    (["--teachers", f"{ROOT},other", "--teacher-weights", "1,2,3"], "3 weights for 2 --teachers"),
    (["--teachers", "other", "--feature-teacher", ROOT], "--feature-teacher synthetic-test: not one of --teachers"),
    (["--teacher-weights", "adaptive"], "none are given"),
    (["--teachers", "other,other"], "a teacher is named twice"),
])
def test_cli_refuses_bad_teacher_settings_in_one_line(cache, tmp_path, extra, message):
    res = CliRunner().invoke(main, args(cache, tmp_path / "run", *extra))
    assert res.exit_code in (1, 2) and message in res.output, res.output
    assert "Traceback" not in res.output
