"""Dense optical flow between consecutive teacher frames (OpenCV's Farneback), the flow teacher's input.

Gunnar Farneback, "Two-Frame Motion Estimation Based on Polynomial Expansion" (SCIA 2003), as
`cv2.calcOpticalFlowFarneback`. Each frame is converted to grayscale (cv2 RGB2GRAY, BT.601 weights,
uint8), and the flow of every consecutive pair (t, t+1) is computed with the parameters of OpenCV's
own tutorial, which suit small frames as well as large ones:

    pyr_scale 0.5   each pyramid level halves the image
    levels 3        the frame plus 2 coarser levels (motions of a few pixels at the coarsest one)
    winsize 15      averaging window (px): larger is smoother and more robust to noise
    iterations 3    refinement iterations per level
    poly_n 5        neighbourhood (px) of the per-pixel polynomial expansion
    poly_sigma 1.2  Gaussian sigma of that expansion (OpenCV's advice for poly_n 5)
    flags 0         no initial flow, box window (not OPTFLOW_FARNEBACK_GAUSSIAN)

Sign: flow[y, x] = (dx, dy) such that frame_t[y, x] ~ frame_{t+1}[y + dy, x + dx] (pixels), so
content moving right/down gives positive dx/dy. Normalisation: every component is clipped to
+-clip_px pixels (20 by default) and divided by clip_px, giving float32 in [-1, 1]. A clip of T
frames gives T-1 fields, laid out (B, 2, T-1, H, W) with channel 0 = dx, 1 = dy (the layout of the
teachers' preprocessed input, (B, C, T, S, S)).

CPU only and deterministic (the same frames give the same bits): OpenCV runs it row-parallel on its
own threads, each row computed alone. The flow teacher calls it in `preprocess`, so it runs where the
frames are decoded and the model may run on a GPU after.
"""

from __future__ import annotations

import numpy as np

FLOW_CLIP_PX = 20.0
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}


def to_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) -> uint8 grayscale (..., H, W) (cv2 RGB2GRAY: 0.299 R + 0.587 G + 0.114 B)."""
    import cv2

    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB frames (..., H, W, 3), got {frames.dtype} {frames.shape}")
    h, w = frames.shape[-3:-1]
    flat = np.ascontiguousarray(frames.reshape(-1, h, w, 3))
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in flat]).reshape(frames.shape[:-1])


def pair_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Farneback flow (H, W, 2) float32 in pixels, (dx, dy), from grayscale uint8 `prev` to `nxt`."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev, nxt, None, **FARNEBACK)


def clip_flow(frames: np.ndarray, clip_px: float = FLOW_CLIP_PX) -> np.ndarray:
    """uint8 RGB clips (B, T, H, W, 3), T >= 2 -> normalised flow float32 (B, 2, T-1, H, W) in [-1, 1]."""
    if frames.ndim != 5:
        raise ValueError(f"expected uint8 RGB clips (B, T, H, W, 3), got shape {frames.shape}")
    b, t, h, w, _ = frames.shape
    if t < 2:
        raise ValueError(f"optical flow needs at least 2 frames per clip, got {t}")
    if clip_px <= 0:
        raise ValueError(f"clip_px must be positive, got {clip_px}")
    gray = to_gray(frames)
    out = np.empty((b, t - 1, h, w, 2), np.float32)
    for i in range(b):
        for j in range(t - 1):
            out[i, j] = pair_flow(gray[i, j], gray[i, j + 1])
    np.clip(out, -clip_px, clip_px, out=out)
    out /= np.float32(clip_px)
    return np.ascontiguousarray(out.transpose(0, 4, 1, 2, 3))
