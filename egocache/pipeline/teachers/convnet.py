"""What the small convolutional teachers (flow-tiny, objects-tiny, audio-tiny) share: the ConvTeacher
network (conv stages, pooled feature, named heads) and the checkpoint readers of their state dicts.

A stage halves the spatial size: conv 3x3 (stride 2 in space) -> BatchNorm -> ReLU -> conv 3x3 ->
BatchNorm -> ReLU, without conv biases; `dims=3` uses 3x3x3 Conv3d kernels that keep the time axis.
The clip feature is tanh(fc(global average pool)), as MotionFormer's pre_logits is tanh(fc(.)).
Classifier heads live in an nn.ModuleDict `heads` keyed by head name (state keys heads.<name>.weight),
so a checkpoint names its own heads (read back with tvvideo's heads_from_state, the same layout).
These teachers have no official checkpoints: only ours load.
"""

from __future__ import annotations

import torch
from torch import nn

from typing import Any

from egocache.pipeline.teachers.base import Teacher, TeacherSpec
from egocache.pipeline.teachers.tvvideo import heads_from_state, no_official_overrides

__all__ = ["ConvTeacher", "PooledFeature", "conv_stages", "heads_from_state", "init_weights", "make_heads",
           "no_official_overrides"]


class ConvTeacher(Teacher):
    """The network flow-tiny, objects-tiny and audio-tiny share: conv stages, pooled tanh feature, dropout,
    one Linear per head. Subclasses give their input (preprocess, input_shape, forward_features)."""

    def build(self, spec: TeacherSpec, cfg: Any, dims: int, in_channels: int) -> None:
        """Check `cfg` (width, depth, feature_dim, head_drop_rate and the subclass's own fields) and build
        the layers, initialised by init_weights (seeded runs give the same weights in this order)."""
        cfg.check()
        self.spec, self.cfg = spec, cfg
        self.stages, channels = conv_stages(dims, in_channels, cfg.width, cfg.depth)
        self.feature = PooledFeature(channels, cfg.feature_dim)
        self.head_drop = nn.Dropout(cfg.head_drop_rate)
        self.heads = make_heads(cfg.feature_dim, spec.heads)
        init_weights(self)

    def forward_head(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, D) features -> {head name: logits}."""
        feats = self.head_drop(feats)
        return {name: head(feats) for name, head in self.heads.items()}


def conv_stages(dims: int, in_channels: int, width: int, depth: int) -> tuple[nn.Sequential, int]:
    """(`depth` stages of widths width, 2*width, ..., output channels) for 2-D or 3-D (time-keeping) input."""
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    down = 2 if dims == 2 else (1, 2, 2)
    layers: list[nn.Module] = []
    cin = in_channels
    for i in range(depth):
        cout = width * 2 ** i
        layers += [conv(cin, cout, 3, stride=down, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True),
                   conv(cout, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers), cin


class PooledFeature(nn.Module):
    """(B, C, ...) -> (B, D): global average pool, then tanh(fc)."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average over every axis after the channels, project, squash."""
        return torch.tanh(self.fc(x.flatten(2).mean(-1)))


def make_heads(dim: int, heads: dict[str, int]) -> nn.ModuleDict:
    """One Linear(dim, classes) per head, keyed by head name, in the spec's order."""
    return nn.ModuleDict({name: nn.Linear(dim, classes) for name, classes in heads.items()})


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convolutions, unit/zero norms, trunc-normal(0.02) Linear, zero biases."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
