"""Tests of the EgoDistill losses: hand-computed values, weighting, heads, gradients, a tiny overfit."""

from __future__ import annotations

import math

import pytest
import torch

from egocache.student.losses import (LossConfig, ce_loss, feature_l1, info_nce, kd_loss,
                                     pretrain_loss, student_loss)
from egocache.student.models import build_student


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_feature_l1_is_mean_absolute_difference():
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.5, 3.0]])
    assert feature_l1(a, b).item() == pytest.approx((1 + 2 + 0 + 3) / 4)


@pytest.mark.parametrize("tau_squared", [True, False])
def test_kd_matches_manual_kl(tau_squared):
    student = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    teacher = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    tau = 2.0
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p_t = _softmax([v / tau for v in t_row])
        p_s = _softmax([v / tau for v in s_row])
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s))
    expected = total / 2 * (tau * tau if tau_squared else 1.0)
    got = kd_loss(torch.tensor(student), torch.tensor(teacher), tau, tau_squared=tau_squared)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    same = torch.tensor(teacher)
    assert kd_loss(same, same, tau).item() == pytest.approx(0.0, abs=1e-6)


def test_ce_ignores_unknown_labels():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]])
    labels = torch.tensor([0, -1, 1])
    expected = (-math.log(_softmax([2.0, 0.0])[0]) - math.log(_softmax([5.0, -5.0])[1])) / 2
    assert ce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)
    leaf = logits.clone().requires_grad_(True)
    none = ce_loss(leaf, torch.full((3,), -1))
    none.backward()
    assert none.item() == 0.0 and torch.equal(leaf.grad, torch.zeros_like(leaf))


def test_info_nce_matches_manual_computation():
    pred = [[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]
    target = [[2.0, 0.1], [0.0, 1.0], [-1.0, 1.0]]
    tau = 0.1

    def cos(q, k):
        return sum(a * b for a, b in zip(q, k)) / math.hypot(*q) / math.hypot(*k)

    expected = 0.0
    for i, q in enumerate(pred):
        sims = [math.exp(cos(q, k) / tau) for k in target]
        expected += -math.log(sims[i] / sum(sims))
    got = info_nce(torch.tensor(pred), torch.tensor(target), tau)
    assert got.item() == pytest.approx(expected / 3, rel=1e-5)


def _out_and_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    out = {"feature": torch.randn(4, 6, generator=g),
           "logits": {"verb": torch.randn(4, 5, generator=g), "noun": torch.randn(4, 3, generator=g)}}
    batch = {"feature": torch.randn(4, 6, generator=g),
             "logits": {"verb": torch.randn(4, 5, generator=g), "noun": torch.randn(4, 3, generator=g)},
             "label": {"verb": torch.tensor([0, 4, -1, 2]), "noun": torch.tensor([1, -1, 0, 2])}}
    return out, batch


def test_total_loss_weights_kd_ce_and_l1():
    out, batch = _out_and_batch()
    cfg = LossConfig(alpha=0.7, beta=0.3, tau=3.0)
    kd = (kd_loss(out["logits"]["verb"], batch["logits"]["verb"], 3.0)
          + kd_loss(out["logits"]["noun"], batch["logits"]["noun"], 3.0)) / 2
    ce = (ce_loss(out["logits"]["verb"], batch["label"]["verb"])
          + ce_loss(out["logits"]["noun"], batch["label"]["noun"])) / 2
    l1 = feature_l1(out["feature"], batch["feature"])
    got = student_loss(out, batch, cfg, distill=True)
    assert got["loss"].item() == pytest.approx((0.7 * kd + 0.3 * ce + 0.3 * l1).item(), rel=1e-6)
    assert got["kd"].item() == pytest.approx(kd.item()) and got["l1"].item() == pytest.approx(l1.item())
    ce_only = student_loss(out, batch, cfg, distill=False)
    assert set(ce_only) == {"loss", "ce"} and ce_only["loss"].item() == pytest.approx(ce.item())


def test_heads_without_labels_or_teacher_are_left_out():
    out, batch = _out_and_batch()
    batch["label"]["noun"] = torch.full((4,), -1)
    del batch["logits"]["noun"]
    got = student_loss(out, batch, LossConfig(), distill=True)
    verb, teacher_verb = out["logits"]["verb"], batch["logits"]["verb"]
    assert got["ce"].item() == pytest.approx(ce_loss(verb, batch["label"]["verb"]).item())
    assert got["kd"].item() == pytest.approx(kd_loss(verb, teacher_verb, 1.0).item())
    with pytest.raises(ValueError, match="no head shared with the teacher"):
        student_loss(out, {**batch, "logits": {"action": torch.zeros(4, 2)}}, LossConfig(), distill=True)
    with pytest.raises(ValueError, match="no head with labels"):
        student_loss(out, {**batch, "label": {}}, LossConfig(), distill=False)


def test_loss_config_defaults_and_validation():
    assert LossConfig() == LossConfig(alpha=0.95, beta=1.0, tau=1.0, nce_tau=0.1, kd_tau_squared=True)
    assert LossConfig.for_dataset("ego4d").tau == 10.0 and LossConfig.for_dataset("epic100").tau == 1.0
    with pytest.raises(ValueError, match="alpha"):
        LossConfig(alpha=1.5)
    with pytest.raises(ValueError, match="temperatures"):
        LossConfig(tau=0.0)


def _tiny_batch(seed: int = 0, b: int = 6, imu_len: int = 422):
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.randint(0, 256, (b, 1, 32, 32, 3), generator=g, dtype=torch.uint8),
            "first_last": torch.randint(0, 256, (b, 2, 32, 32, 3), generator=g, dtype=torch.uint8),
            "imu": torch.randn(b, imu_len, 6, generator=g),
            "feature": torch.tanh(torch.randn(b, 16, generator=g)),
            "logits": {"verb": 3 * torch.randn(b, 4, generator=g)},
            "label": {"verb": torch.randint(0, 4, (b,), generator=g)}}


def test_distill_gradients_reach_trained_parts_only():
    torch.manual_seed(0)
    s = build_student("egodistill", frames=1, feature_dim=16, heads={"verb": 4})
    s.freeze_image_encoder()
    student_loss(s(_tiny_batch()), _tiny_batch(), LossConfig(), distill=True)["loss"].backward()
    assert all(p.grad is None for p in s.image_encoder.parameters())
    assert all(p.grad is None for p in s.predictor.parameters())
    for part in (s.imu_encoder, s.fusion, s.classifiers):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_pretrain_loss_is_nce_plus_l1_and_skips_classifiers():
    torch.manual_seed(0)
    s = build_student("egodistill", frames=1, feature_dim=16, heads={"verb": 4})
    s.freeze_image_encoder()
    batch = _tiny_batch()
    out = s.pretrain_forward(batch)
    got = pretrain_loss(out, batch, LossConfig())
    nce = info_nce(out["pred_imu"], out["imu_feature"], 0.1)
    assert got["loss"].item() == pytest.approx((nce + feature_l1(out["feature"], batch["feature"])).item())
    got["loss"].backward()
    assert all(p.grad is None for p in s.classifiers.parameters())
    assert all(p.grad is None for p in s.image_encoder.parameters())
    for part in (s.imu_encoder, s.fusion, s.predictor):
        assert all(p.grad is not None for p in part.parameters())
    l1_only = pretrain_loss(out, batch, LossConfig(pretrain_nce=0.0))          # Table 1's "L1-pretrain" row
    nce_only = pretrain_loss(out, batch, LossConfig(pretrain_l1=0.0))          # ... and "NCE-pretrain"
    assert l1_only["loss"].item() == pytest.approx(feature_l1(out["feature"], batch["feature"]).item())
    assert nce_only["loss"].item() == pytest.approx(nce.item())
    with pytest.raises(ValueError, match="pretrain_nce=-1"):
        LossConfig(pretrain_nce=-1.0)


@pytest.mark.parametrize("variant, ratio", [("egodistill", 0.6), ("visonly", 0.3)])
def test_tiny_student_overfits_one_batch(variant, ratio):
    torch.manual_seed(0)
    s = build_student(variant, frames=1, feature_dim=16, heads={"verb": 4})
    batch = _tiny_batch(imu_len=64)  # the IMU CNN takes any length; short keeps the test fast
    batch["label"]["verb"] = batch["logits"]["verb"].argmax(1)  # labels agree with the teacher
    opt = torch.optim.AdamW([p for p in s.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(12):
        loss = student_loss(s(batch), batch, LossConfig(), distill=s.distill)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < ratio * losses[0], losses
