"""EgoDistill training losses (paper Eq. 3-7): feature L1, KD, CE, their weighted sum, and InfoNCE.

Choices the paper leaves open, fixed here:
- Reductions: L1 is the mean absolute difference over feature dimensions and batch; KD is the KL
  divergence summed over classes and averaged over the batch; CE and InfoNCE are batch means.
- KD is multiplied by τ² (Hinton et al. 2015): softened targets scale the KD gradient by 1/τ², so
  without it α=0.95 would weigh KD 100x less at Ego4D's τ=10 than at EPIC's τ=1. `kd_tau_squared=False`
  gives the literal Eq. 4. At τ=1 the two agree.
- Heads: KD is averaged over the heads present in both the student and the teacher logits, CE over the
  heads present in both the student and the labels that have at least one label != -1 in the batch
  (-1 = unknown, ignored). Build the student with only {"verb": C} to train on verbs alone, as the paper.
- CE-only variants (visimu, visonly) use L = CE (weight 1, not 1-α, which would shrink their
  learning rate 20x); distilling variants use L = α·KD + (1-α)·CE + β·L1.
- InfoNCE negatives are the other clips of the same (per-process) batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_LABEL = -1
_DATASET_TAU = {"ego4d": 10.0, "epic100": 1.0}


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and temperatures; defaults are the paper's EPIC-Kitchens setting."""

    alpha: float = 0.95           # KD vs CE balance
    beta: float = 1.0             # weight of the feature L1
    tau: float = 1.0              # KD temperature (10 for Ego4D, 1 for EPIC-Kitchens)
    nce_tau: float = 0.1          # InfoNCE temperature τ' of the self-supervised stage
    kd_tau_squared: bool = True   # scale KD by τ² (Hinton's convention)
    pretrain_nce: float = 1.0     # weights of the self-supervised stage's InfoNCE and L1 (Table 1's
    pretrain_l1: float = 1.0      # "NCE-pretrain" / "L1-pretrain" rows switch one off)

    def __post_init__(self) -> None:
        """Reject weights and temperatures outside their meaningful range."""
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {self.alpha}")
        if self.beta < 0 or self.pretrain_nce < 0 or self.pretrain_l1 < 0:
            raise ValueError(f"loss weights must be >= 0, got beta={self.beta} pretrain_nce={self.pretrain_nce} "
                             f"pretrain_l1={self.pretrain_l1}")
        if self.tau <= 0 or self.nce_tau <= 0:
            raise ValueError(f"temperatures must be > 0, got tau={self.tau} nce_tau={self.nce_tau}")

    @classmethod
    def for_dataset(cls, dataset: str) -> LossConfig:
        """Paper defaults for a dataset name ("ego4d": τ=10, "epic100": τ=1, anything else: τ=1)."""
        return cls(tau=_DATASET_TAU.get(dataset, 1.0))


def feature_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between student and teacher features (B,D) (Eq. 3, mean-reduced)."""
    return (pred.float() - target.float()).abs().mean()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float, *,
            tau_squared: bool = True) -> torch.Tensor:
    """KL(softmax(teacher/τ) ‖ softmax(student/τ)), summed over classes, batch mean, × τ² if asked."""
    log_p_student = F.log_softmax(student_logits.float() / tau, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / tau, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * tau * tau if tau_squared else kl


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the labels != -1; 0 (still in the graph) when all are -1."""
    labels = labels.long()
    if not bool((labels != IGNORE_LABEL).any()):
        return logits.float().sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_LABEL)


def info_nce(pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """InfoNCE (Eq. 7): cosine similarity / τ', positives on the diagonal, in-batch negatives."""
    sim = F.normalize(pred.float(), dim=-1) @ F.normalize(target.float(), dim=-1).T
    return F.cross_entropy(sim / tau, torch.arange(sim.shape[0], device=sim.device))


def _mean(terms: list[torch.Tensor]) -> torch.Tensor:
    """Average of a non-empty list of scalar losses."""
    return torch.stack(terms).mean()


def student_loss(out: dict, batch: dict, cfg: LossConfig, *, distill: bool) -> dict[str, torch.Tensor]:
    """Total training loss of a student output against a cache batch.

    `out` is Student.forward's {"feature", "logits"}; `batch` carries the teacher's "feature" (B,D),
    "logits" {head: (B,C)} and "label" {head: (B,)}. Returns "loss" (to backpropagate) and its parts
    "ce" and, when distilling, "kd" and "l1" (detached, for logging).
    """
    logits = out["logits"]
    labels = batch["label"]
    ce_heads = [h for h in logits if h in labels]
    if not ce_heads:
        raise ValueError(f"no head with labels: student heads {sorted(logits)}, "
                         f"batch labels {sorted(labels)}")
    labelled = [h for h in ce_heads if bool((labels[h] != IGNORE_LABEL).any())]
    ce = _mean([ce_loss(logits[h], labels[h]) for h in labelled]) if labelled \
        else ce_loss(logits[ce_heads[0]], labels[ce_heads[0]])
    if not distill:
        return {"loss": ce, "ce": ce.detach()}
    teacher = batch["logits"]
    kd_heads = [h for h in logits if h in teacher]
    if not kd_heads:
        raise ValueError(f"no head shared with the teacher: student heads {sorted(logits)}, "
                         f"teacher heads {sorted(teacher)}")
    kd = _mean([kd_loss(logits[h], teacher[h], cfg.tau, tau_squared=cfg.kd_tau_squared)
                for h in kd_heads])
    l1 = feature_l1(out["feature"], batch["feature"])
    loss = cfg.alpha * kd + (1.0 - cfg.alpha) * ce + cfg.beta * l1
    return {"loss": loss, "kd": kd.detach(), "ce": ce.detach(), "l1": l1.detach()}


def pretrain_loss(out: dict, batch: dict, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Self-supervised stage (§3.4): w·InfoNCE(h(z⁰,zᵀ), f_M(IMU)) + w'·L1(Π output, teacher feature).

    `out` is Student.pretrain_forward's {"pred_imu", "imu_feature", "feature"}; `batch` carries the
    teacher "feature". Returns "loss" and its detached parts "nce" and "l1".
    """
    nce = info_nce(out["pred_imu"], out["imu_feature"], cfg.nce_tau)
    l1 = feature_l1(out["feature"], batch["feature"])
    return {"loss": cfg.pretrain_nce * nce + cfg.pretrain_l1 * l1, "nce": nce.detach(), "l1": l1.detach()}
