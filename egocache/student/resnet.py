"""ResNet-18 image encoder (He et al. 2016) whose state_dict matches torchvision's `resnet18` exactly.

torchvision cannot be imported everywhere egocache runs, so the architecture is written here with the
same module names, so that an ImageNet file saved by torchvision (e.g. `resnet18-f37072fd.pth`, a plain
state_dict) loads strictly: conv1, bn1, layer1..layer4 of two BasicBlocks each (conv1, bn1, conv2, bn2,
and downsample.0/.1 where stride or width changes), fc (512 -> 1000). `forward` returns the 512-d
globally pooled feature; `fc` is kept only so ImageNet files load strictly (`forward_head` uses it).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from egocache.errors import CheckpointError

FEATURE_DIM = 512
IMAGENET_CLASSES = 1000
_MAX_LISTED = 10


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN downsample) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output relu(F(x) + shortcut(x))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 trunk: normalised (B,3,H,W) float -> (B,512) pooled feature."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(FEATURE_DIM, IMAGENET_CLASSES)
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-out) init for convs, unit/zero BN affine: the usual from-scratch ResNet init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) normalised images -> (B,512) globally average-pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        """(B,512) features -> (B,1000) ImageNet logits (a sanity check of loaded weights)."""
        return self.fc(feats)


def _listed(keys: list[str]) -> str:
    """At most _MAX_LISTED keys joined, with a count of the rest."""
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def load_image_weights(encoder: ResNet18, path: str | os.PathLike) -> None:
    """Load a torchvision-format ResNet-18 state_dict file into `encoder`, strictly.

    The file is read with `torch.load(weights_only=True)` (no pickled code runs). Every key and shape
    must match; the only tolerance is for files that lack all BatchNorm `num_batches_tracked` counters
    (older torchvision files), which are then set to 0 as torch does for legacy state_dicts.
    Raises CheckpointError naming the file and listing missing, unexpected and mis-shaped keys.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: image encoder weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a plain state_dict (dict of tensors), "
                              f"got {type(state).__name__}")
    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing and all(k.endswith("num_batches_tracked") for k in missing):
        state = {**state, **{k: torch.zeros_like(own[k]) for k in missing}}
        missing = []
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or misshaped:
        parts = [f"{name} ({len(keys)}): {_listed(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if keys]
        raise CheckpointError(f"{path}: not a torchvision resnet18 state_dict; " + "; ".join(parts))
    encoder.load_state_dict(state, strict=True)
