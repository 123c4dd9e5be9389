"""The optional dataset metadata file: facts about a dataset that its annotations do not say.

`<root>/egocache-dataset.json` (or the file given with `--dataset-meta`) is a JSON object:

    {"motion_pairs": [["take", "put"], ["open", "close"]],   # verbs one frame cannot tell apart
     "imu_units": {"accl": "m/s^2", "gyro": "rad/s"},         # when the IMU format does not say
     "description": "free text"}

The synthetic generator writes one; a user may write one for EPIC-KITCHENS-100 or their own data.
Every key is optional and unknown keys are refused (a typo must not be ignored). The facts travel
with the manifest into the cache's attributes (`source.motion_pair_verbs`), so evaluation reports
accuracy on the motion-pair verbs without knowing where the data came from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from egocache.errors import ManifestError

DATASET_META_FILE = "egocache-dataset.json"
_KEYS = ("motion_pairs", "imu_units", "description")


@dataclass(frozen=True)
class DatasetMeta:
    """What a dataset metadata file says; `path` is the file it came from ("" when there is none)."""

    motion_pairs: tuple[tuple[str, str], ...] = ()
    description: str = ""
    imu_units: dict[str, str] | None = None
    path: str = field(default="", compare=False)


def read_dataset_meta(root: str, path: str | None = None) -> DatasetMeta:
    """The metadata at `path`, else `<root>/egocache-dataset.json` if present, else empty metadata."""
    if path is None:
        path = os.path.join(root, DATASET_META_FILE)
        if not os.path.isfile(path):
            return DatasetMeta()
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: dataset metadata file not found") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable dataset metadata ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: dataset metadata must be a JSON object")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    pairs = data.get("motion_pairs", [])
    if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2
                                            and all(isinstance(v, str) and v for v in p) for p in pairs)):
        raise ManifestError(f"{path}: motion_pairs must be a list of [verb, verb] name pairs")
    verbs = [v for p in pairs for v in p]
    if len(set(verbs)) != len(verbs):
        raise ManifestError(f"{path}: a verb appears in more than one motion pair")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ManifestError(f"{path}: description must be a string")
    units = data.get("imu_units")
    if units is not None and not (isinstance(units, dict) and set(units) <= {"accl", "gyro"}
                                  and all(isinstance(u, str) and u for u in units.values())):
        raise ManifestError(f"{path}: imu_units must map accl and/or gyro to a unit name")
    return DatasetMeta(tuple((a, b) for a, b in pairs), description, units, path)


def dataset_meta_json(motion_pairs: list[tuple[str, str]], description: str,
                      imu_units: dict[str, str] | None = None) -> dict:
    """The JSON object of a dataset metadata file (what a generator writes)."""
    out: dict = {"motion_pairs": [list(p) for p in motion_pairs], "description": description}
    if imu_units:
        out["imu_units"] = dict(imu_units)
    return out
