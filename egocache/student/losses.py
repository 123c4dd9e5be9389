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
- Several teachers (`teachers`, cached in one cache): KD is against their ensemble's logits, per head
  the weighted sum of the logits of the teachers that have the head (Radevski et al., ICCV 2023):
  weights equal, fixed (normalised over those teachers), or adaptive, the per-sample softmin of each
  teacher's CE against the label divided by `weight_tau` (equal where the label is unknown). The L1
  term matches one named teacher's features (`feature_teacher`), or is off.
- Auxiliary targets (Ego-Exo, `aux`): a cached teacher's named per-clip outputs, each predicted by a
  linear head on the student feature and added with its weight: KL for a distribution (an object
  score), BCE with logits for values in [0, 1], or MSE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_LABEL = -1
_DATASET_TAU = {"ego4d": 10.0, "epic100": 1.0}
WEIGHTINGS = ("equal", "fixed", "adaptive")


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
    teachers: tuple[str, ...] = ()           # an ensemble of cached teachers (empty: the cache's own)
    weighting: str = "equal"                 # equal, fixed (weights) or adaptive (per-sample softmin)
    weights: tuple[float, ...] = ()          # fixed weights, one per teacher
    weight_tau: float = 1.0                  # temperature of the adaptive softmin
    feature_teacher: str | None = None       # with teachers: whose features L1 matches (None: no L1)
    aux: tuple[tuple[str, str, float, str], ...] = ()   # auxiliary targets (teacher, output, weight, loss)

    def __post_init__(self) -> None:
        """Reject weights and temperatures outside their meaningful range."""
        if self.weighting not in WEIGHTINGS or self.weight_tau <= 0:
            raise ValueError(f"weighting must be one of {WEIGHTINGS} with weight_tau > 0, got {self.weighting!r}, "
                             f"{self.weight_tau}")
        if (self.weighting == "fixed") != bool(self.weights) or (
                self.weights and (len(self.weights) != len(self.teachers) or min(self.weights) < 0
                                  or sum(self.weights) <= 0)):
            raise ValueError(f"fixed weights need one weight >= 0 per teacher {self.teachers} (not all 0), "
                             f"got {self.weights}")
        if self.feature_teacher is not None and self.feature_teacher not in self.teachers:
            raise ValueError(f"feature_teacher {self.feature_teacher!r} is not one of the teachers {self.teachers}")
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


def teacher_weights(logits: torch.Tensor, labels: torch.Tensor | None, members: list[int], cfg: LossConfig
                    ) -> torch.Tensor:
    """(B, K) weights of the K teachers whose stacked logits (B, K, C) are given, rows summing to 1;
    `members` are their indices in cfg.teachers (for fixed weights); adaptive weights are equal where
    the label is unknown (-1, or a head without labels)."""
    b, k, c = logits.shape
    if cfg.weighting == "fixed":
        w = torch.tensor([cfg.weights[i] for i in members], dtype=torch.float32, device=logits.device)
        if float(w.sum()) <= 0:
            w = torch.ones_like(w)
        return (w / w.sum()).expand(b, k)
    equal = torch.full((b, k), 1.0 / k, device=logits.device)
    if cfg.weighting == "equal" or labels is None:
        return equal
    known = labels != IGNORE_LABEL
    target = torch.where(known, labels, torch.zeros_like(labels)).repeat_interleave(k)
    ce = F.cross_entropy(logits.float().reshape(b * k, c), target, reduction="none").reshape(b, k)
    return torch.where(known[:, None], torch.softmax(-ce / cfg.weight_tau, dim=1), equal)


def ensemble_logits(batch: dict, head: str, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
    """The teacher ensemble's logits (B, C) for `head` and each member's mean weight, or None if no
    teacher of cfg.teachers has the head."""
    outs = batch["teachers"]
    members = [i for i, t in enumerate(cfg.teachers) if head in outs[t]["logits"]]
    if not members:
        return None
    z = torch.stack([outs[cfg.teachers[i]]["logits"][head].float() for i in members], dim=1)
    w = teacher_weights(z, batch["label"].get(head), members, cfg)
    return (w.unsqueeze(-1) * z).sum(1), {cfg.teachers[i]: w[:, j].mean().detach() for j, i in enumerate(members)}


def feature_target(batch: dict, cfg: LossConfig) -> torch.Tensor | None:
    """The teacher features the L1 terms match: the cache's own teacher's, the named one's of an
    ensemble, or None (an ensemble without feature_teacher: no L1 term)."""
    if not cfg.teachers:
        return batch["feature"]
    return batch["teachers"][cfg.feature_teacher]["feature"] if cfg.feature_teacher else None


def aux_loss(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """One auxiliary distillation term: kl (target a distribution: soft-target cross-entropy minus the
    target's entropy, i.e. KL), bce (targets in [0, 1], predictions logits) or mse."""
    pred, target = pred.float(), target.float()
    if loss == "kl":
        return F.kl_div(F.log_softmax(pred, dim=-1), target, reduction="batchmean")
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(pred, target)
    return F.mse_loss(pred, target)


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
    weights: dict[str, list[torch.Tensor]] = {}
    if cfg.teachers:
        teacher = {}
        for h in logits:
            got = ensemble_logits(batch, h, cfg)
            if got is not None:
                teacher[h] = got[0]
                for name, w in got[1].items():
                    weights.setdefault(name, []).append(w)
    else:
        teacher = batch["logits"]
    kd_heads = [h for h in logits if h in teacher]
    if not kd_heads:
        raise ValueError(f"no head shared with the teacher: student heads {sorted(logits)}, "
                         f"teacher heads {sorted(teacher)}")
    kd = _mean([kd_loss(logits[h], teacher[h], cfg.tau, tau_squared=cfg.kd_tau_squared)
                for h in kd_heads])
    target = feature_target(batch, cfg)
    l1 = feature_l1(out["feature"], target) if target is not None else torch.zeros((), device=kd.device)
    loss = cfg.alpha * kd + (1.0 - cfg.alpha) * ce + cfg.beta * l1
    aux = {f"aux_{name}": aux_loss(out["aux"][name], batch["teachers"][t]["aux"][name], kind)
           for t, name, _, kind in cfg.aux}
    for (_, _, weight, _), term in zip(cfg.aux, aux.values()):
        loss = loss + weight * term
    parts = {"loss": loss, "kd": kd.detach(), "ce": ce.detach(), "l1": l1.detach(),
             **{k: v.detach() for k, v in aux.items()}}
    parts.update({f"w_{name}": _mean(ws) for name, ws in weights.items() if len(cfg.teachers) > 1})
    return parts


def pretrain_loss(out: dict, batch: dict, cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Self-supervised stage (§3.4): w·InfoNCE(h(z⁰,zᵀ), f_M(IMU)) + w'·L1(Π output, teacher feature).

    `out` is Student.pretrain_forward's {"pred_imu", "imu_feature", "feature"}; `batch` carries the
    teacher "feature". Returns "loss" and its detached parts "nce" and "l1".
    """
    nce = info_nce(out["pred_imu"], out["imu_feature"], cfg.nce_tau)
    target = feature_target(batch, cfg)
    l1 = feature_l1(out["feature"], target) if target is not None else torch.zeros((), device=nce.device)
    return {"loss": cfg.pretrain_nce * nce + cfg.pretrain_l1 * l1, "nce": nce.detach(), "l1": l1.detach()}
