"""Small media files the tests make: videos (optionally with an audio track), colour-band videos,
EPIC/Ego4D IMU tables."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from files import write_csv


def encode_frames(out: Any, video: Any, images: Iterable[np.ndarray]) -> None:
    """Encode rgb24 `images` as consecutive frames of PyAV stream `video` into container `out`, then flush."""
    import av

    for k, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = k
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode():
        out.mux(packet)


def write_video(path: str | Path, *, seconds: float, fps: float, size: tuple[int, int] = (64, 48),
                audio: bool = True) -> str:
    """An H.264 .mp4 of moving stripes (frame k shows k), with a 16 kHz AAC tone track if `audio`."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    n = int(round(seconds * fps))
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        x = np.arange(w)[None, :, None]
        encode_frames(out, video, (np.broadcast_to(((x * 4 + k * 3) % 256).astype(np.uint8), (h, w, 3)).copy()
                                   for k in range(n)))
        if sound is not None:
            t = np.arange(int(seconds * 16000)) / 16000.0
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    return str(path)


def write_band_video(path: str | Path, *, seconds: float, fps: float, size: tuple[int, int],
                     colours: tuple[tuple[int, int, int], ...] = ((230, 20, 20), (20, 230, 20), (20, 20, 230))
                     ) -> str:
    """An H.264 .mp4 cut into equal bands of `colours` along its long side (left to right, or top to
    bottom when it is taller than wide), the same in every frame; no audio."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    along = np.arange(max(w, h)) * len(colours) // max(w, h)
    band = np.asarray(colours, np.uint8)[along]                      # (long side, 3)
    img = np.ascontiguousarray(np.broadcast_to(band[None], (h, w, 3)) if w >= h
                               else np.broadcast_to(band[:, None], (h, w, 3)))
    with av.open(str(path), mode="w", format="mp4") as out:
        video = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        encode_frames(out, video, (img for _ in range(int(round(seconds * fps)))))
    return str(path)


def write_epic_imu(meta_dir: str | Path, video_id: str, seconds: float, *, rate: int = 200,
                   dropped_payloads: int = 2) -> tuple[str, str]:
    """gpmd2csv-style accl/gyro CSVs for `video_id`: 1-s payloads, the last `dropped_payloads` missing."""
    meta_dir = Path(meta_dir)
    meta_dir.mkdir(parents=True, exist_ok=True)
    stamps = np.concatenate([p + np.arange(rate) / rate for p in range(int(seconds) - dropped_payloads)])
    paths = []
    for sensor, axis in (("accl", "Accl"), ("gyro", "Gyro")):
        values = np.c_[np.sin(stamps), np.cos(stamps), stamps * 0.01]
        rows = [[f"{t * 1000:.3f}", *(f"{v:.6f}" for v in row)] for t, row in zip(stamps, values)]
        paths.append(write_csv(meta_dir / f"{video_id}-{sensor}.csv", ["Milliseconds", *(axis + a for a in "XYZ")],
                               rows))
    return paths[0], paths[1]
