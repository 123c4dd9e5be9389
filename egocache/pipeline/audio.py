"""A video's audio as the cache stores it: 16 kHz mono, a clip's window, a log-magnitude spectrogram.

`read_audio(path, start_s, end_s)` decodes the first audio track of a video with PyAV over a span (one
seek, one pass; `video_spectrograms` asks for fixed blocks of BLOCK_S seconds, so a clip's bits do not
depend on which clips were read with it, and each block once per shard, never once per clip) and
resamples it to 16 kHz mono with PyAV's AudioResampler (libswresample;
stereo and other layouts are down-mixed). `clip_spectrogram(track, start_s, seconds)` cuts a clip's
window (its start_s..end_s in the cache's clip table: centre ± clip_seconds / 2) and returns

    log(|STFT(x)| + LOG_EPS)      Hann window of N_FFT = 400 samples (25 ms), hop HOP = 160 (10 ms),
                                  no centring or padding of the window, natural log, x in [-1, 1]

as float32 (FREQ_BINS = 201, frames): frequency bins 0..8000 Hz by 40 Hz, frames = 1 + (W - 400) // 160
for a window of W = round(seconds * 16000) samples (211 for MotionFormer's 2.133-s clip). Samples of the
window outside the track (before its start, after its end) are zeros (silence: LOG_EPS after the log);
a window with less than MIN_COVERAGE of its samples inside the track fails with AudioError (the cache
then flags the clip audio_present 0). The window's first sample is the track's sample nearest start_s.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from egocache.errors import AudioError

AUDIO_MODES = ("required", "optional", "none")
AUDIO_DTYPE = "float16"     # see docs/cache-format.md: log magnitudes within about -14..+6, 0.008 steps at most
AUDIO_RATE_HZ = 16000
N_FFT = 400
HOP = 160
WINDOW = "hann"
FREQ_BINS = N_FFT // 2 + 1
LOG_EPS = 1e-6
MIN_COVERAGE = 0.5          # share of a clip's window that must lie inside the audio track
SEEK_MARGIN_S = 0.5         # decode from this much before the first window (seeks land on a packet)
BLOCK_S = 60.0              # a video's audio is decoded in blocks of this grid (video_spectrograms)
LOG_SCALE = f"ln(|STFT| + {LOG_EPS:g}), |STFT| of samples in [-1, 1], periodic Hann window, no centring"


@dataclass(frozen=True)
class AudioTrack:
    """Decoded mono samples at AUDIO_RATE_HZ of one video, samples[0] at `start_s` of the video's time."""

    path: str
    samples: np.ndarray
    start_s: float

    @property
    def end_s(self) -> float:
        """Time just after the last decoded sample."""
        return self.start_s + len(self.samples) / AUDIO_RATE_HZ


def window_samples(seconds: float) -> int:
    """Samples of a window of `seconds` at 16 kHz."""
    return int(round(seconds * AUDIO_RATE_HZ))


def spectrogram_frames(seconds: float) -> int:
    """STFT frames of a window of `seconds` (no centring): 211 for the 2.133-s clip of 16 frames x 4."""
    n = window_samples(seconds)
    if n < N_FFT:
        raise ValueError(f"an audio window of {seconds} s is shorter than one STFT window ({N_FFT} samples)")
    return 1 + (n - N_FFT) // HOP


def read_audio(path: str, start_s: float | None = None, end_s: float | None = None) -> AudioTrack:
    """The first audio track of the video at `path` over [start_s, end_s] (the whole track by default),
    resampled to 16 kHz mono; AudioError naming the file if it has none or it cannot be decoded."""
    import av

    if os.path.isdir(path):
        raise AudioError(f"{path}: an RGB-frame folder, which has no audio track")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no video file to read audio from")
    chunks: list[np.ndarray] = []
    first: float | None = None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio track")
            stream = container.streams.audio[0]
            begin = None if start_s is None else start_s - SEEK_MARGIN_S
            if begin is not None and begin > 0 and stream.time_base is not None:
                container.seek(int(begin / stream.time_base), stream=stream, backward=True)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
            for frame in container.decode(stream):
                t = None if frame.pts is None else float(frame.pts * frame.time_base)
                if t is not None and begin is not None and t + frame.samples / frame.sample_rate < begin:
                    continue                          # the seek landed early: not needed
                if t is not None and end_s is not None and t > end_s + SEEK_MARGIN_S:
                    break
                for out in resampler.resample(frame):
                    first = _first_time(first, out, t)
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                first = _first_time(first, out, None)
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioError(f"{path}: cannot decode its audio track ({type(exc).__name__}: {exc})") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not len(samples):
        raise AudioError(f"{path}: its audio track holds no samples"
                         + ("" if start_s is None else f" from {start_s:.2f} s to {end_s:.2f} s"))
    return AudioTrack(path, samples, first if first is not None else 0.0)


def _first_time(first: float | None, out: object, fallback: float | None) -> float | None:
    """Time of the first resampled sample: the resampler's output timestamp, else the input frame's."""
    if first is not None:
        return first
    pts, base = getattr(out, "pts", None), getattr(out, "time_base", None)
    if pts is not None and base is not None:
        return float(pts * base)
    return fallback


def clip_window(track: AudioTrack, start_s: float, seconds: float) -> tuple[np.ndarray, float]:
    """(the window's samples, zero outside the track; the share of them inside the track)."""
    n = window_samples(seconds)
    first = int(round((start_s - track.start_s) * AUDIO_RATE_HZ))
    out = np.zeros(n, np.float32)
    lo, hi = max(first, 0), min(first + n, len(track.samples))
    if hi > lo:
        out[lo - first:hi - first] = track.samples[lo:hi]
    return out, max(hi - lo, 0) / n


def log_spectrogram(samples: np.ndarray) -> np.ndarray:
    """(FREQ_BINS, frames) float32 ln(|STFT| + LOG_EPS) of 16-kHz samples (torch.stft, Hann 400, hop 160,
    center=False)."""
    import torch

    x = torch.as_tensor(np.asarray(samples, np.float32))
    if x.ndim != 1 or x.numel() < N_FFT:
        raise ValueError(f"samples must be 1-D with at least {N_FFT} values, got shape {tuple(x.shape)}")
    spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window=torch.hann_window(N_FFT),
                      center=False, return_complex=True)
    return torch.log(spec.abs() + LOG_EPS).numpy().astype(np.float32)


def clip_spectrogram(track: AudioTrack, start_s: float, seconds: float) -> np.ndarray:
    """The log spectrogram (FREQ_BINS, spectrogram_frames(seconds)) of the clip window starting at
    `start_s`; AudioError when less than MIN_COVERAGE of it lies inside the track."""
    samples, covered = clip_window(track, start_s, seconds)
    if covered < MIN_COVERAGE:
        where = "before the start" if start_s < track.start_s else "past the end"
        raise AudioError(f"{track.path}: the audio window {start_s:.2f}-{start_s + seconds:.2f} s lies {where} "
                         f"of its audio track ({track.start_s:.2f}-{track.end_s:.2f} s; "
                         f"{100 * covered:.0f} % covered, {100 * MIN_COVERAGE:.0f} % needed)")
    spec = log_spectrogram(samples)
    assert spec.shape == (FREQ_BINS, spectrogram_frames(seconds)) and math.isfinite(float(spec.min()))
    return spec


def video_spectrograms(path: str, starts: list[float], seconds: float) -> list[np.ndarray | AudioError]:
    """The clip_spectrogram of each window of one video (`starts` in any order) in AUDIO_DTYPE, the bits the
    cache stores; an AudioError in place of each window that cannot be cut. Extraction, train-teacher, test-teacher and predict read a clip's
    audio with it.

    A window starting in block k of a fixed BLOCK_S grid is cut from one decode of [k * BLOCK_S,
    (k + 1) * BLOCK_S + seconds], whichever other windows are asked for with it: after a seek the AAC
    decoder's first frame and the resampler's phase depend on where decoding began, so a decode span
    that followed the request (a shard's clips, a predict chunk) would give a clip other bits in another
    shard layout. Each block is decoded once per call, and a long video's audio is never held whole.
    """
    blocks: dict[int, list[int]] = {}
    for i, start in enumerate(starts):
        blocks.setdefault(max(0, math.floor(start / BLOCK_S)), []).append(i)
    out: list[np.ndarray | AudioError] = [AudioError("not read")] * len(starts)
    for k, rows in sorted(blocks.items()):
        try:
            track = read_audio(path, k * BLOCK_S, (k + 1) * BLOCK_S + seconds)
        except AudioError as exc:
            for i in rows:
                out[i] = exc
            continue
        for i in rows:
            try:
                out[i] = clip_spectrogram(track, starts[i], seconds).astype(AUDIO_DTYPE)
            except AudioError as exc:
                out[i] = exc
    return out


def audio_attrs(clip_seconds: float, mode: str, dtype: str) -> dict[str, object]:
    """The cache's root attribute section `audio`: how the `audio` array was made."""
    return {"mode": mode, "rate_hz": AUDIO_RATE_HZ, "n_fft": N_FFT, "hop": HOP, "win_length": N_FFT,
            "window": WINDOW, "center": False, "freq_bins": FREQ_BINS, "frames": spectrogram_frames(clip_seconds),
            "window_seconds": clip_seconds, "window_samples": window_samples(clip_seconds),
            "channels": "mono (down-mixed)", "log": LOG_SCALE, "log_eps": LOG_EPS, "dtype": dtype,
            "min_coverage": MIN_COVERAGE}
