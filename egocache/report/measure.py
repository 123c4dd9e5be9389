"""Measure a model's cost: GFLOPs and parameters (flops.py) and per-clip latency at a batch size."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from egocache.core.flops import count_flops, count_params
from egocache.pipeline.imu import IMU_WINDOW
from egocache.student.models import Student

IMU_CHANNELS = 6


def student_inputs(frames: int, frame_size: int, batch: int, device: torch.device | str = "cpu",
                   audio_shape: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """A batch of the inputs a student sees: uint8 frames (B,N,S,S,3) and IMU (B,422,6), and with
    `audio_shape` (F, T) float16 log spectrograms (B,F,T) as the cache stores them (listentolook)."""
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (batch, frames, frame_size, frame_size, 3), dtype=torch.uint8, generator=gen)
    imu = torch.randn(batch, IMU_WINDOW, IMU_CHANNELS, generator=gen)
    out = {"frames": frames.to(device), "imu": imu.to(device)}
    if audio_shape is not None:
        out["audio"] = (torch.randn(batch, *audio_shape, generator=gen) - 8.0).half().to(device)
    return out


def teacher_inputs(teacher: nn.Module, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch of normalised teacher input (B, *teacher.input_shape()), what `Teacher.forward` takes after
    preprocess ((B,3,T,S,S) for an RGB video teacher; flow-tiny's is 2 channels, T-1 fields)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, *teacher.input_shape(), generator=gen).to(device)


def student_cost(student: Student, frame_size: int) -> tuple[float, float]:
    """(GFLOPs per clip, parameters in millions) of a student at `frame_size` pixels.

    Parameters that inference never uses are not counted: the pretrain-only predictor h and the
    ResNet's ImageNet classifier (kept only so torchvision weight files load strictly). A listentolook
    student is counted on its spectrograms (the STFT itself, done at extraction, is not counted).
    """
    flops = count_flops(student, (student_inputs(student.frames, frame_size, 1,
                                                 audio_shape=getattr(student, "audio_shape", None)),))
    unused = [student.image_encoder.backbone.fc] + ([student.predictor] if student.predictor is not None else [])
    params = count_params(student) - sum(count_params(m) for m in unused)
    return flops / 1e9, params / 1e6


def teacher_cost(teacher: nn.Module) -> tuple[float, float]:
    """(GFLOPs per clip view, parameters in millions) of a teacher; works on the meta device."""
    device = next(teacher.parameters()).device
    flops = count_flops(teacher, (teacher_inputs(teacher, 1, device),))
    return flops / 1e9, count_params(teacher) / 1e6


def latency_ms(run: Callable[[], Any], *, batch: int, device: torch.device, warmup: int = 2,
               repeats: int = 5) -> float:
    """Median wall time per clip (ms) of `run()` processing one batch of `batch` clips, after warm-up.

    CUDA work is synchronised before each clock read so the figure is the kernel time, not the launch.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            run()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / batch
