"""The student variants, declared once (no torch here, so the CLI lists them instantly).

- "egodistill": frames + IMU -> fusion Π -> feature; trained with KD + CE + L1 (paper §3.3).
- "visonly-distill": frames only, same loss (no IMU branch).
- "visimu": the egodistill architecture trained with CE only.
- "visonly": the visonly-distill architecture trained with CE only.
- "listentolook": the paper's ListenToLook baseline: egodistill with the clip's audio (log spectrogram,
  student/audio_encoder.py) in place of the IMU; same fusion Π, same KD + CE + L1 loss.
Variants with a sensor branch (IMU or audio) also have the self-supervised pretrain stage: h(z⁰, zᵀ)
predicts the sensor's clip feature from the first and last frames (InfoNCE) plus the L1 of Π to the
teacher; with audio it is an audio-visual correspondence task.
"""

from __future__ import annotations

from dataclasses import dataclass

from egocache.errors import ConfigError


@dataclass(frozen=True)
class VariantSpec:
    """What a student variant is: whether it has the IMU or the audio branch (and Π, and a pretrain stage),
    whether it distils."""

    name: str
    imu: bool
    distill: bool
    audio: bool = False

    @property
    def sensor(self) -> str | None:
        """The batch key of the non-visual input Π fuses with the frames ("imu", "audio"), None if none."""
        return "imu" if self.imu else "audio" if self.audio else None


_VARIANTS = {v.name: v for v in (
    VariantSpec("egodistill", imu=True, distill=True),
    VariantSpec("visonly-distill", imu=False, distill=True),
    VariantSpec("visimu", imu=True, distill=False),
    VariantSpec("visonly", imu=False, distill=False),
    VariantSpec("listentolook", imu=False, distill=True, audio=True),
)}


def list_variants() -> list[str]:
    """Variant names, in the paper's order (the ListenToLook baseline last)."""
    return list(_VARIANTS)


def variant_spec(name: str) -> VariantSpec:
    """The VariantSpec of `name`; ConfigError naming the known variants otherwise."""
    if name not in _VARIANTS:
        raise ConfigError(f"--variant: unknown student variant {name!r}; known: {', '.join(_VARIANTS)}")
    return _VARIANTS[name]
