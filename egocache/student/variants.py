"""The student variants, declared once (no torch here, so the CLI lists them instantly).

- "egodistill": frames + IMU -> fusion Π -> feature; trained with KD + CE + L1 (paper §3.3).
- "visonly-distill": frames only, same loss (no IMU branch).
- "visimu": the egodistill architecture trained with CE only.
- "visonly": the visonly-distill architecture trained with CE only.
Variants with an IMU branch also have the self-supervised IMU pretrain stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from egocache.errors import ConfigError


@dataclass(frozen=True)
class VariantSpec:
    """What a student variant is: whether it has the IMU branch (and Π, and a pretrain stage), whether it distils."""

    name: str
    imu: bool
    distill: bool


_VARIANTS = {v.name: v for v in (
    VariantSpec("egodistill", imu=True, distill=True),
    VariantSpec("visonly-distill", imu=False, distill=True),
    VariantSpec("visimu", imu=True, distill=False),
    VariantSpec("visonly", imu=False, distill=False),
)}


def list_variants() -> list[str]:
    """Variant names, in the paper's order."""
    return list(_VARIANTS)


def variant_spec(name: str) -> VariantSpec:
    """The VariantSpec of `name`; ConfigError naming the known variants otherwise."""
    if name not in _VARIANTS:
        raise ConfigError(f"--variant: unknown student variant {name!r}; known: {', '.join(_VARIANTS)}")
    return _VARIANTS[name]
