"""`egocache export RUN --onnx OUT.onnx / --torchscript OUT.pt`: a student as one self-describing file, checked.

The exported model is `runner.DeployModel`: uint8 frames (B,N,S,S,3) and the raw IMU window (B,T,6) in
(an audio student: input "audio", the clip's log spectrogram (B,F,M) float32), logits per head out (`logits_<head>`), normalisation inside, any batch size. Its `StudentInputs` (clip
geometry, frame size, IMU window, class names) travel inside the file: ONNX metadata `egocache.inputs`,
TorchScript extra file `egocache.inputs.json`. Before the file is moved into place it is run on clips of
a cache (the run's own by default) next to the torch student, and the largest absolute difference of
their logits must stay within TOLERANCE; the command prints it. The ONNX check runs in onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from egocache.core.files import write_atomic
from egocache.deploy.options import ExportOptions, source_kind
from egocache.deploy.runner import ONNX_METADATA_KEY, OnnxRunner, StudentRunner, require
from egocache.errors import CacheError, ConfigError, EgocacheError

TOLERANCE = 1e-4                         # max abs logit difference an export may show against torch
TORCHSCRIPT_INPUTS_FILE = "egocache.inputs.json"
CHECK_BATCH = 16
EXAMPLE_BATCH = 2                        # export example batch (not 1: the batch axis must stay symbolic)


@dataclass
class ExportResult:
    """One written model file and how it compared with the torch student."""

    kind: str                            # "onnx" or "torchscript"
    path: str
    max_abs_diff: float
    clips: int
    cache: str
    split: str
    seconds: float

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (f"wrote {self.path} ({self.kind}); max abs logit difference against the torch student on "
                f"{self.clips} {self.split} clips of {self.cache}: {self.max_abs_diff:.3g}")


def check_batches(cache: str, runner: StudentRunner, clips: int) -> tuple[str, list[tuple[np.ndarray, np.ndarray]]]:
    """(split, [(frames, sensor)] batches of up to CHECK_BATCH of the first `clips` ok clips of `cache`; the
    sensor is the IMU window, or an audio student's cached spectrogram)."""
    from egocache.cache import CacheDataset, open_cache

    if not (Path(cache) / "zarr.json").is_file():
        raise CacheError(f"{cache}: no cache here to check the export on; pass --cache with a cache holding "
                         f"N={runner.inputs.frames} frames")
    splits = open_cache(cache).splits
    split = "validation" if "validation" in splits else sorted(splits)[0]
    audio = runner.inputs.needs_audio
    ds = CacheDataset(cache, split=split, frames=runner.inputs.frames, read_audio=audio, require_audio=audio)
    n = min(clips, len(ds))
    if n == 0:
        raise CacheError(f"{cache}: split {split!r} has no ok clip to check the export on")
    out = []
    for lo in range(0, n, CHECK_BATCH):
        b = ds[list(range(lo, min(lo + CHECK_BATCH, n)))]
        out.append(runner.check(b["frames"].numpy(), audio=b["audio"].numpy()) if audio else
                   runner.check(b["frames"].numpy(), b["imu"].numpy()))
    return split, out


def max_abs_diff(runner: StudentRunner, run: Callable[[np.ndarray, np.ndarray], list[np.ndarray]],
                 batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest |logit difference| between `run` and the torch student over `batches`, all heads."""
    worst = 0.0
    for frames, sensor in batches:
        for ref, got in zip(runner._logits(frames, sensor), run(frames, sensor)):
            diff = np.abs(np.asarray(got, np.float64) - ref)
            worst = max(worst, float(diff.max()) if np.isfinite(diff).all() else float("inf"))
    return worst


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' progress prints, deprecation and tracer warnings (the check below is the verdict)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _example(runner: StudentRunner) -> tuple[torch.Tensor, torch.Tensor]:
    """An example input batch of EXAMPLE_BATCH clips on the runner's device."""
    inp = runner.inputs
    s, dev = inp.frame_size, runner.device
    return (torch.zeros(EXAMPLE_BATCH, inp.frames, s, s, 3, dtype=torch.uint8, device=dev),
            torch.zeros(EXAMPLE_BATCH, *inp.sensor_shape, device=dev))


def write_onnx(runner: StudentRunner, tmp: str) -> None:
    """Export the runner's DeployModel to ONNX at `tmp` (dynamic batch, inputs in the metadata)."""
    for module in ("onnxruntime", "onnxscript", "onnx"):     # all three before a minute of exporting
        require(module, "--onnx")
    batch = torch.export.Dim("batch", min=1)
    with _quiet_exporter():
        program = torch.onnx.export(runner.model, _example(runner), dynamo=True,
                                    input_names=["frames", runner.inputs.sensor],
                                    output_names=[f"logits_{h}" for h in runner.inputs.heads],
                                    dynamic_shapes={"frames": {0: batch}, "sensor": {0: batch}}, verbose=False)
        program.model.metadata_props[ONNX_METADATA_KEY] = json.dumps(runner.inputs.to_dict())
        program.save(tmp)


def write_torchscript(runner: StudentRunner, tmp: str) -> None:
    """Trace the runner's DeployModel to TorchScript at `tmp` (inputs as an extra file)."""
    with _quiet_exporter():
        traced = torch.jit.trace(runner.model, _example(runner), check_trace=False)
    traced.save(tmp, _extra_files={TORCHSCRIPT_INPUTS_FILE: json.dumps(runner.inputs.to_dict())})


def _torchscript_run(path: str, device: torch.device) -> Callable[[np.ndarray, np.ndarray], list[np.ndarray]]:
    """A function running the TorchScript file at `path` like Runner._logits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # torch 2.9+ deprecates TorchScript; it still loads
        model = torch.jit.load(path, map_location=device)

    def run(frames: np.ndarray, sensor: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = model(torch.from_numpy(frames).to(device), torch.from_numpy(sensor).to(device))
        return [o.float().cpu().numpy() for o in out]

    return run


def export_student(opts: ExportOptions, *, log: Callable[[str], None] = print) -> list[ExportResult]:
    """Write the ONNX and/or TorchScript file of the run `opts.source`, each checked against the torch student."""
    if source_kind(opts.source) == "cache":
        raise ConfigError(f"SOURCE {opts.source}: a cache; --onnx / --torchscript export a student run folder "
                          "(use --hdf5 for a cache)")
    runner = StudentRunner.from_run(opts.source, weights=opts.weights, device="cpu")
    cache = opts.cache or str(runner.inputs.source.get("cache") or "")
    split, batches = check_batches(cache, runner, opts.check_clips)
    clips = sum(len(f) for f, _ in batches)
    results = []
    for kind, out in (("onnx", opts.onnx), ("torchscript", opts.torchscript)):
        if out is None:
            continue
        start = time.perf_counter()
        diff: list[float] = []

        def write(tmp: str, kind: str = kind) -> None:
            if kind == "onnx":
                write_onnx(runner, tmp)
                candidate = OnnxRunner(tmp)._logits
            else:
                write_torchscript(runner, tmp)
                candidate = _torchscript_run(tmp, runner.device)
            diff.append(max_abs_diff(runner, candidate, batches))
            if not diff[-1] <= TOLERANCE:
                raise EgocacheError(f"{out}: the {kind} model's logits differ from the torch student's by up to "
                                    f"{diff[-1]:.3g} on {clips} clips of {cache} (tolerance {TOLERANCE:g}); "
                                    "not written")

        write_atomic(out, write)
        results.append(ExportResult(kind, str(out), diff[-1], clips, cache, split, time.perf_counter() - start))
        log(results[-1].line())
    return results
