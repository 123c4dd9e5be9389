"""IMU encoder f_M: the 5-layer dilated 1-D CNN of Brossard et al. 2020 ("Denoising IMU gyroscopes
with deep learning"), as EgoDistill uses it (paper App. C: same kernel, dilation and channel sizes).

Brossard's network (their EuRoC settings): four Conv1d layers with kernel 7, dilations 1, 4, 16, 64
and widths 16, 32, 64, 128, each followed by BatchNorm + GELU + Dropout(0.1), then a 1x1 Conv1d; the
sequence is replicate-padded at its start by the total receptive field minus one (6+24+96+384 = 510
samples), so the convolutions are causal and the output has as many time steps as the input.
Their last layer outputs 3 channels (a gyro correction); EgoDistill needs a clip feature, so here the
1x1 conv keeps `out_channels` (default 128) channels and the sequence is pooled over time by the
concatenation of its mean and its max (mean summarises steady motion, max keeps short head turns that
a mean would wash out): the clip vector has 2 * out_channels = 256 dimensions by default.
Like Brossard, inputs are standardised per channel by fixed buffers (`input_mean`, `input_std`,
identity by default; `set_input_stats` sets them from training data and checkpoints keep them).
"""

from __future__ import annotations

import torch
from torch import nn

IMU_CHANNELS = 6
KERNEL = 7
DILATIONS = (1, 4, 16, 64)
WIDTHS = (16, 32, 64, 128)


class ImuEncoder(nn.Module):
    """Dilated causal 1-D CNN over a (B,T,6) IMU window -> (B, 2*out_channels) clip vector."""

    def __init__(self, *, in_channels: int = IMU_CHANNELS, out_channels: int = 128,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.out_dim = 2 * out_channels
        self.receptive_field = 1 + sum((KERNEL - 1) * d for d in DILATIONS)
        layers: list[nn.Module] = [nn.ReplicationPad1d((self.receptive_field - 1, 0))]
        width = in_channels
        for dilation, out in zip(DILATIONS, WIDTHS):
            layers += [nn.Conv1d(width, out, KERNEL, dilation=dilation), nn.BatchNorm1d(out),
                       nn.GELU(), nn.Dropout(dropout)]
            width = out
        layers.append(nn.Conv1d(width, out_channels, 1))
        self.cnn = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the fixed per-channel standardisation (e.g. training-set mean/std of the IMU windows)."""
        if mean.shape != (self.in_channels,) or std.shape != (self.in_channels,):
            raise ValueError(f"IMU stats must have shape ({self.in_channels},), "
                             f"got mean {tuple(mean.shape)} std {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError(f"IMU std must be positive, got {std.tolist()}")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def sequence(self, imu: torch.Tensor) -> torch.Tensor:
        """(B,T,C) float IMU -> (B,out_channels,T) causal per-time-step features."""
        if imu.dim() != 3 or imu.shape[-1] != self.in_channels:
            raise ValueError(f"IMU must be (B, T, {self.in_channels}), got {tuple(imu.shape)}")
        x = (imu.float() - self.input_mean) / self.input_std
        return self.cnn(x.transpose(1, 2))

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        """(B,T,C) float IMU -> (B, 2*out_channels): [mean over time, max over time]."""
        seq = self.sequence(imu)
        return torch.cat([seq.mean(dim=2), seq.amax(dim=2)], dim=1)
