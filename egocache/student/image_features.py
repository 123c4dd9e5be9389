"""Per-frame image features of a frozen encoder, computed once over the cache and stored in the run.

When f_I is frozen (always in the self-supervised stage; in distillation with --freeze-image-encoder)
its output for a clip never changes, so running ResNet-18 every epoch is waste: one pass over the
split writes `<features dir>/<split>-<digest>.npy` (float32, (clips, K, 512): the frames the
selection reads, then first and last frame when the stage needs them) next to its `.json`, the key it
was made for (cache identity, split rows, frames, selection, encoder weights digest), named by the
key's digest, so runs that share a features dir (the ablations' runs) share the files they agree on.
Training then reads features instead of frames (`WithImageFeatures`), with the same losses as the
frame path with a frozen encoder (BatchNorm in eval mode, no dropout in the image path).
Under DDP each rank computes a contiguous share of the clips into the same file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from egocache.core.files import write_json_atomic


def encoder_digest(module: torch.nn.Module) -> str:
    """sha256 over the names and bytes of a module's state (weights and BN statistics)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def feature_key(*, cache_id: str, rows: np.ndarray, frames: int, first_last: bool, encoder: str,
                selection: str = "uniform") -> dict[str, Any]:
    """What a stored feature file was computed from; any change means it must be recomputed."""
    return {"cache_id": cache_id, "rows_sha256": hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest(),
            "clips": int(len(rows)), "frames": int(frames), "first_last": bool(first_last),
            "selection": selection, "encoder_sha256": encoder}


class WithImageFeatures(Dataset):
    """A cache dataset (opened without frames) plus the stored per-frame features as "image_features"."""

    def __init__(self, base: Dataset, path: Path) -> None:
        self.base = base
        self.path = Path(path)
        self._feats: np.ndarray | None = None  # memory-mapped lazily in each worker process

    def __len__(self) -> int:
        """Number of clips, as the wrapped dataset."""
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int | list[int]) -> dict[str, Any]:
        """The wrapped item (or batch) with "image_features" float32 (K,512) (or (B,K,512)) added.

        K is N (+2 first/last); where the stored file holds a random selection's whole pool, each clip's
        N are picked by the base dataset's `frame_choice`.
        """
        if self._feats is None:
            self._feats = np.load(self.path, mmap_mode="r")
        item = self.base[index]
        feats = np.asarray(self._feats[index])
        choice = self.base.frame_choice(np.atleast_1d(item["row"].numpy()))
        if choice is not None:
            batch = feats.ndim == 3
            feats = feats if batch else feats[None]
            pool = self.base.stored_frames
            picked = np.take_along_axis(feats[:, :pool], choice[:, :, None], axis=1)
            feats = np.concatenate([picked, feats[:, pool:]], axis=1)
            feats = feats if batch else feats[0]
        item["image_features"] = torch.from_numpy(np.ascontiguousarray(feats))
        return item


@torch.no_grad()
def compute_features(encode: Callable[[dict[str, torch.Tensor]], torch.Tensor], loader: Any,
                     out: np.ndarray, start: int, *, device: torch.device, progress: bool) -> None:
    """Run `encode` over `loader`'s batches (in order) and write the results into out[start:]."""
    pos = start
    for batch in tqdm(loader, desc="image features", unit="batch", disable=not progress, leave=False):
        feats = encode({k: v.to(device, non_blocking=True) for k, v in batch.items()
                        if k in ("frames", "first_last")})
        out[pos:pos + len(feats)] = feats.float().cpu().numpy()
        pos += len(feats)


def ensure_image_features(folder: Path, split: str, key: dict[str, Any],
                          encode: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                          make_loader: Callable[[range], Any], *, width: int, device: torch.device,
                          rank: int = 0, world: int = 1, barrier: Callable[[], None] = lambda: None,
                          progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Path of `folder/<split>-<key digest>.npy` made for `key`, computing it first if missing or stale.

    `encode(batch)` maps a batch with "frames" (and "first_last") to (B, K, 512) features; `make_loader`
    gives a DataLoader over the dataset positions in the range it is passed, in order; `width` is K.
    Rank 0 creates the file, each rank fills its contiguous share, rank 0 writes the key last. Runs
    may share `folder` (--features-dir): rank 0 holds an exclusive lock on the file while it is made,
    so a second run waits for it and then reads it.
    """
    import fcntl

    folder = Path(folder)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    npy, meta = folder / f"{split}-{digest}.npy", folder / f"{split}-{digest}.json"
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / f"{split}-{digest}.lock", "a") if rank == 0 else None
    try:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        ready = meta.exists() and npy.exists() and json.loads(meta.read_text()) == key
        flags = [ready]
        if world > 1:
            import torch.distributed as dist
            dist.broadcast_object_list(flags, src=0)
        if flags[0]:
            return npy
        n = key["clips"]
        if rank == 0:
            log(f"computing frozen image features for {n} {split} clips -> {npy}")
            meta.unlink(missing_ok=True)
            np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(n, width, 512)).flush()
        barrier()
        share = np.array_split(np.arange(n), world)[rank]
        if len(share):
            out = np.load(npy, mmap_mode="r+")
            compute_features(encode, make_loader(range(int(share[0]), int(share[-1]) + 1)), out,
                             int(share[0]), device=device, progress=progress and rank == 0)
            out.flush()
            del out
        barrier()
        if rank == 0:
            write_json_atomic(meta, key)
        barrier()
        return npy
    finally:
        if lock is not None:
            lock.close()
