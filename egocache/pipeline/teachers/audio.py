"""audio-tiny: a small 2-D CNN over the clip's log spectrogram, the audio-modality teacher (issue 13).

Input (TeacherSpec.input "audio"): the clip's log-magnitude STFT as the cache stores it
(pipeline/audio.py: 16 kHz mono, Hann 400, hop 160, ln(|STFT| + 1e-6), float16), shape
(B, FREQ_BINS, M) with FREQ_BINS = 201 and M = the STFT frames of the clip's window: the clip spans
num_frames x frame_stride frames at 30 fps (8 x 8 = 2.133 s by default, mformer-tiny's clip, so
M = 211). Extraction feeds it the float16 spectrograms it writes, and train-teacher reads the same
windows from the videos, so the teacher is trained and run on the cached bits. `preprocess` makes
(x - log_mean) / log_std float32 (B, 1, 201, M).

Network: `depth` stages of two 3x3 Conv2d + BatchNorm + ReLU over (frequency, time) (the first of
each halves both; widths width, 2*width, ...), global average pool, feature = tanh(fc) (feature_dim),
one Linear head per dataset head (convnet.py), as flow-tiny over flow and objects-tiny over an image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from egocache.errors import EgocacheError
from egocache.pipeline.audio import FREQ_BINS, spectrogram_frames
from egocache.pipeline.sampling import clip_seconds
from egocache.pipeline.teachers import convnet
from egocache.pipeline.teachers.base import TeacherSpec


@dataclass(frozen=True)
class AudioConfig:
    """Architecture hyper-parameters of audio-tiny (every field a train-teacher --teacher-option)."""

    width: int = 16                # channels of the first stage, doubled at each next one
    depth: int = 4                 # stages (each halves frequency and time)
    feature_dim: int = 128         # clip feature size
    log_mean: float = -4.0         # input normalisation (x - log_mean) / log_std of ln|STFT|: roughly the
    log_std: float = 2.0           # centre and spread of kitchen audio's values; BatchNorm follows anyway
    head_drop_rate: float = 0.0    # dropout before the heads

    def check(self) -> None:
        """Raise EgocacheError naming each inconsistent setting."""
        problems = [f"{key}={getattr(self, key)} must be >= 1" for key in ("width", "depth", "feature_dim")
                    if getattr(self, key) < 1]
        if self.log_std <= 0:
            problems.append(f"log_std={self.log_std} must be > 0")
        if not 0.0 <= self.head_drop_rate < 1.0:
            problems.append(f"head_drop_rate={self.head_drop_rate} is not in [0, 1)")
        if problems:
            raise EgocacheError("audio-tiny config: " + "; ".join(problems))


class AudioTeacher(convnet.ConvTeacher):
    """2-D CNN over the log spectrogram; feature tanh(fc(pool)), logits per head."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        cfg = AudioConfig(**spec.config)
        cfg.check()
        self.frames = spectrogram_frames(clip_seconds(spec.num_frames, spec.frame_stride))
        if min(FREQ_BINS, self.frames) < 2 ** cfg.depth:
            raise EgocacheError(f"audio-tiny config: a {FREQ_BINS}x{self.frames} spectrogram is smaller than "
                                f"2**depth={2 ** cfg.depth}")
        self.build(spec, cfg, 2, 1)

    def input_shape(self) -> tuple[int, ...]:
        """(1, FREQ_BINS, M): one channel of frequency x STFT frames."""
        return (1, FREQ_BINS, self.frames)

    def preprocess(self, spectrograms: torch.Tensor) -> torch.Tensor:
        """float16/32 log spectrograms (B, FREQ_BINS, M) -> normalised float32 (B, 1, FREQ_BINS, M)."""
        expected = (FREQ_BINS, self.frames)
        if not spectrograms.is_floating_point() or spectrograms.ndim != 3 or tuple(spectrograms.shape[1:]) != expected:
            raise ValueError(f"{self.spec.name}: expected log spectrograms (B, {FREQ_BINS}, {self.frames}) float, "
                             f"got {spectrograms.dtype} {tuple(spectrograms.shape)}")
        x = (spectrograms.float() - self.cfg.log_mean) / self.cfg.log_std
        return x.unsqueeze(1).contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, FREQ_BINS, M) -> (B, feature_dim) tanh clip features."""
        expected = self.input_shape()
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.spec.name}: expected (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return self.feature(self.stages(x))


TINY_CONFIG = AudioConfig()
TINY_SPEC = TeacherSpec(name="audio-tiny", tag="scratch", num_frames=8, frame_stride=8, img_size=0,
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), bgr=False, feature_dim=TINY_CONFIG.feature_dim,
                        heads={"verb": 97, "noun": 300}, config=dataclasses.asdict(TINY_CONFIG), input="audio")
