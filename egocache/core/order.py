"""Data order as a pure function of (seed, epoch): a resumed run visits the clips a fresh one would."""

from __future__ import annotations


def epoch_permutation(n: int, seed: int, epoch: int) -> "torch.Tensor":  # noqa: F821
    """A permutation of range(n) determined by (seed, epoch) only (the same on every machine)."""
    import torch

    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def step_generator(seed: int, epoch: int, batch: int) -> "torch.Generator":  # noqa: F821
    """A torch generator for one batch's random augmentation, determined by (seed, epoch, batch)."""
    import torch

    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + batch)
