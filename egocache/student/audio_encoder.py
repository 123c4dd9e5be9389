"""Audio encoder f_A of the ListenToLook student: a small 2-D CNN over the clip's log spectrogram.

The paper's ListenToLook baseline is EgoDistill with audio in place of the IMU; Gao et al.'s
ListenToLook ("Listen to Look", CVPR 2020) encodes audio with a 2-D CNN (ResNet-18) over the
spectrogram, and so does this encoder, at the size of our IMU encoder. Why 2-D rather than the IMU's
1-D dilated CNN with the 201 frequency bins as channels: kitchen sounds are bands and onsets (a
chop is a broadband burst, a pour a steady band, a click a short tone) that move in frequency from
one pan, tap or voice to the next. A 2-D convolution shares its filters over frequency and time, so
a band or an onset is recognised wherever it lies; a frequency-as-channels 1-D CNN gives every bin a
weight of its own in its first layer (201 x 16 x 7), must learn each band position separately and
has no notion of neighbouring frequencies. The cost stays small: four 3x3 convolutions with stride
2 (widths 16, 32, 64, 128) bring 201 x 211 down to 13 x 14 in 43 M multiply-adds a clip (the IMU
encoder: 47 M; ResNet-18 at 224 px: 1.8 G), so ListenToLook costs what EgoDistill costs.

Layers: per-bin standardisation by fixed buffers (`input_mean`, `input_std`, one value per frequency
bin, set from the training spectrograms by `set_input_stats` and kept in checkpoints, as the IMU
encoder's per-channel ones), then 4 x [Conv2d 3x3 stride 2 + BatchNorm + GELU + Dropout(0.1)], a 1x1
Conv2d to `out_channels` (128), and the concatenation of the mean and the max over frequency and time
(mean for steady sounds, max for short ones): a 2 * out_channels = 256-d clip vector, the IMU
encoder's size, so the fusion Π has the same shape in both students.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (16, 32, 64, 128)
KERNEL = 3


class AudioEncoder(nn.Module):
    """2-D CNN over a (B, F, T) log spectrogram -> (B, 2*out_channels) clip vector."""

    def __init__(self, *, freq_bins: int = 201, out_channels: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.freq_bins = freq_bins
        self.out_channels = out_channels
        self.out_dim = 2 * out_channels
        layers: list[nn.Module] = []
        width = 1
        for out in WIDTHS:
            layers += [nn.Conv2d(width, out, KERNEL, stride=2, padding=KERNEL // 2), nn.BatchNorm2d(out),
                       nn.GELU(), nn.Dropout(dropout)]
            width = out
        layers.append(nn.Conv2d(width, out_channels, 1))
        self.cnn = nn.Sequential(*layers)
        self.register_buffer("input_mean", torch.zeros(freq_bins))
        self.register_buffer("input_std", torch.ones(freq_bins))

    def set_input_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Set the fixed per-frequency-bin standardisation (e.g. the training spectrograms' mean/std)."""
        if mean.shape != (self.freq_bins,) or std.shape != (self.freq_bins,):
            raise ValueError(f"audio stats must have shape ({self.freq_bins},), "
                             f"got mean {tuple(mean.shape)} std {tuple(std.shape)}")
        if not bool((std > 0).all()):
            raise ValueError("audio std must be positive in every frequency bin")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, F, T) log spectrogram (any float dtype) -> (B, 2*out_channels): [mean, max] over F and T."""
        if audio.dim() != 3 or audio.shape[1] != self.freq_bins:
            raise ValueError(f"audio must be (B, {self.freq_bins}, T) log spectrograms, got {tuple(audio.shape)}")
        x = (audio.float() - self.input_mean[:, None]) / self.input_std[:, None]
        seq = self.cnn(x[:, None])
        return torch.cat([seq.mean(dim=(2, 3)), seq.amax(dim=(2, 3))], dim=1)
