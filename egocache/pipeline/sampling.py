"""Where a clip lies in a video and which native frames the teacher and the student see.

A clip is MotionFormer's 16x4 window: T=16 frames at stride 4 of 30 fps video, i.e. 64 native frames
(2.133 s). At another frame rate the clip spans 16*4*fps/30 native frames and the 16 teacher frames
are spread over it by linspace. Student frames sit at fixed fractions of the clip (the centre of N
equal parts for N frames, or another of the paper's frame selections; 0 and 1 for the first and last
frame of the self-supervised stage).
"""

from __future__ import annotations

import numpy as np

from egocache.cache.selections import selection_positions

TEACHER_T = 16
TEACHER_STRIDE = 4
REFERENCE_FPS = 30.0


def clip_span_frames(fps: float, t: int = TEACHER_T, stride: int = TEACHER_STRIDE) -> int:
    """Number of native frames a clip spans at `fps` (64 at 30 fps for 16x4)."""
    if fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return max(t, int(round(t * stride * fps / REFERENCE_FPS)))


def clip_seconds(t: int = TEACHER_T, stride: int = TEACHER_STRIDE) -> float:
    """Duration of a clip in seconds, independent of the video's frame rate (2.133 s for 16x4)."""
    return t * stride / REFERENCE_FPS


def clip_start_frame(centre_s: float, fps: float, span: int) -> int:
    """First native frame of the clip whose centre is `centre_s` seconds into the video."""
    return int(round(centre_s * fps - (span - 1) / 2.0))


def teacher_frame_indices(start: int, span: int, t: int = TEACHER_T) -> np.ndarray:
    """The `t` native frame indices the teacher sees: linspace over the clip's span, rounded."""
    return np.round(np.linspace(start, start + span - 1, t)).astype(np.int64)


def student_positions(frame_counts: tuple[int, ...] = (1, 2, 4), first_last: bool = True,
                      selections: tuple[str, ...] = ("uniform",)
                      ) -> tuple[list[float], dict[str, dict[int, list[int]]], list[int] | None]:
    """Union of student frame positions (fractions of the clip in [0, 1]) and which serve what.

    Returns (positions sorted, {selection: {N: stored indices}}, [first, last] stored indices or None).
    "uniform" is always there: N frames at the centres of N equal parts of the clip, (k + 0.5) / N.
    A "random" entry lists the indices a student draws its N frames from.
    """
    wanted = {sel: {n: selection_positions(sel, n) for n in frame_counts}
              for sel in dict.fromkeys(("uniform", *selections))}
    pool = {round(p, 12) for by_n in wanted.values() for ps in by_n.values() for p in ps}
    if first_last:
        pool |= {0.0, 1.0}
    positions = sorted(pool)
    sets = {sel: {n: [positions.index(round(p, 12)) for p in ps] for n, ps in by_n.items()}
            for sel, by_n in wanted.items()}
    fl = [positions.index(0.0), positions.index(1.0)] if first_last else None
    return positions, sets, fl


def student_frame_indices(start: int, span: int, positions: list[float]) -> np.ndarray:
    """Native frame indices of the student positions within the clip starting at `start`."""
    return np.array([start + int(round(p * (span - 1))) for p in positions], dtype=np.int64)


def segment_clip_centres(start_s: float, stop_s: float, n_clips: int) -> list[float]:
    """Centres (s) of `n_clips` clips evenly spaced over a segment; one clip sits at its centre.

    Dense evaluation clips are spread so the first and last clips just fit inside the segment;
    a segment shorter than a clip gets all its clips at its centre.
    """
    if n_clips < 1:
        raise ValueError(f"n_clips must be >= 1, got {n_clips}")
    mid = (start_s + stop_s) / 2.0
    half = clip_seconds() / 2.0
    lo, hi = start_s + half, stop_s - half
    if n_clips == 1 or hi <= lo:
        return [mid] * n_clips
    return [float(c) for c in np.linspace(lo, hi, n_clips)]
