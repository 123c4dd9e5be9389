"""objects-tiny: an image classifier of the clip's centre frame predicting the object (noun) classes, with
the Ego-Exo object-score target as a named auxiliary output (issue 13).

Input: the same uint8 RGB teacher frames every teacher takes (B, T, S, S, 3), so its clips line up with
the video teachers' (T frames at frame_stride, by default mformer-tiny's 8 at stride 8). `preprocess`
normalises like every teacher (resize/centre-crop to S, /255, mean = std = 0.5) and keeps frame T//2,
the centre frame for odd T and the one just after the centre for even T: (B, 3, 1, S, S).

Network: `depth` stages of two 3x3 Conv2d + BatchNorm + ReLU (the first halves the side; widths width,
2*width, ...), global average pool, feature = tanh(fc) (feature_dim), one Linear head per head
(convnet.py). Heads: it predicts `noun` only; `egocache train-teacher` trains just the dataset heads
its registration names (TRAIN_HEADS), so the verb labels are not used.

Auxiliary output (TeacherSpec.aux, Teacher.forward_aux): `object_score` = softmax over the noun head,
a (B, classes) distribution per clip, what Ego-Exo distils as the object-score target. Logits stay the
cached output; the softmax is this extra output only. Per video (TeacherSpec.aux_video, cache/videos.py):
`video_object_score` = the mean object_score over the video's clips, which objects the whole video
holds, a context target the same for every clip of a video.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from egocache.errors import EgocacheError
from egocache.pipeline.teachers import convnet
from egocache.pipeline.teachers.base import TeacherSpec

NOUN_HEAD = "noun"
SCORE = "object_score"
VIDEO_SCORE = "video_object_score"     # per-video output: the mean object_score of the video's clips
TRAIN_HEADS = (NOUN_HEAD,)


@dataclass(frozen=True)
class ObjectsConfig:
    """Architecture hyper-parameters of objects-tiny (every field a train-teacher --teacher-option)."""

    img_size: int = 64             # input side S
    num_frames: int = 8            # T frames of the clip it is given; the network sees frame T//2
    width: int = 16                # channels of the first stage, doubled at each next one
    depth: int = 4                 # stages (each halves the side)
    feature_dim: int = 128         # clip feature size
    head_drop_rate: float = 0.0    # dropout before the heads

    def check(self) -> None:
        """Raise EgocacheError naming each inconsistent setting."""
        problems = [f"{key}={getattr(self, key)} must be >= 1"
                    for key in ("img_size", "num_frames", "width", "depth", "feature_dim") if getattr(self, key) < 1]
        if self.img_size >= 1 and self.depth >= 1 and self.img_size < 2 ** self.depth:
            problems.append(f"img_size={self.img_size} is smaller than 2**depth={2 ** self.depth}")
        if not 0.0 <= self.head_drop_rate < 1.0:
            problems.append(f"head_drop_rate={self.head_drop_rate} is not in [0, 1)")
        if problems:
            raise EgocacheError("objects-tiny config: " + "; ".join(problems))


def aux_sizes(heads: dict[str, int]) -> dict[str, int]:
    """{object_score: noun classes}: the aux outputs for these heads (which must include noun)."""
    if NOUN_HEAD not in heads:
        raise EgocacheError(f"teacher objects-tiny predicts the {NOUN_HEAD!r} head; heads {dict(heads)} lack it")
    return {SCORE: heads[NOUN_HEAD]}


class ObjectsTeacher(convnet.ConvTeacher):
    """2-D CNN on the centre frame; feature tanh(fc(pool)), noun logits, object_score aux output."""

    def __init__(self, spec: TeacherSpec) -> None:
        super().__init__()
        cfg = ObjectsConfig(**spec.config)
        if spec.aux != aux_sizes(spec.heads):
            raise EgocacheError(f"{spec.name}: aux {spec.aux} should be {aux_sizes(spec.heads)} for heads "
                                f"{spec.heads}")
        self.build(spec, cfg, 2, 3)

    def input_shape(self) -> tuple[int, ...]:
        """(3, 1, S, S): the normalised centre frame."""
        return (3, 1, self.cfg.img_size, self.cfg.img_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 RGB (B,T,H,W,3) -> normalised frame T//2 (B,3,1,S,S)."""
        mid = self.cfg.num_frames // 2
        return super().preprocess(frames)[:, :, mid:mid + 1].contiguous()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,1,S,S) centre frames -> (B, feature_dim) tanh features."""
        expected = self.input_shape()
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{self.spec.name}: expected input (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")
        return self.feature(self.stages(x[:, :, 0]))

    def forward_aux(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """{object_score: softmax of the noun logits} (B, noun classes), float32."""
        return {SCORE: self.heads[NOUN_HEAD](feats).float().softmax(dim=-1)}


TINY_CONFIG = ObjectsConfig()
TINY_SPEC = TeacherSpec(name="objects-tiny", tag="scratch", num_frames=TINY_CONFIG.num_frames, frame_stride=8,
                        img_size=TINY_CONFIG.img_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), bgr=False,
                        feature_dim=TINY_CONFIG.feature_dim, heads={NOUN_HEAD: 300},
                        config=dataclasses.asdict(TINY_CONFIG), aux=aux_sizes({NOUN_HEAD: 300}),
                        aux_video={VIDEO_SCORE: SCORE})
