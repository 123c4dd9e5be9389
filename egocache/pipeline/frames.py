"""A clip's frames: which native frames the teacher and the student see, decoded once, at which size.

`FramePlan` fixes the geometry (teacher T, stride and input size; student positions and size) and
`decode_clip_frames` decodes the clips of one video under it. Extraction (`extract`) and teacher
fine-tuning (`train-teacher`) both call it, so the teacher is trained on exactly the pixels that
extraction later feeds it: frames are decoded once at the larger of the two sizes (short side scaled
by the decoder, centre crop), then resized to each size that is smaller (bilinear, antialiased,
rounded to uint8), the teacher's included, so `Teacher.preprocess` receives frames at its own size.
With `spatial_crops=3` (the official multi-view test, `egocache test-teacher`) the frames are decoded
whole at the same short side and the teacher gets three square crops across the long side (left/top,
centre, right/bottom, as MotionFormer's test loader takes them), each resized the same way; the centre
crop is the single-crop path's crop, byte for byte.
A deployed student (`egocache predict`) decodes under the plan of its training clips with
`teacher_frames=False`: the same span, positions and decode size, without the teacher's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egocache.errors import ClipError, DecodeError
from egocache.pipeline.sampling import (clip_span_frames, clip_start_frame, student_frame_indices,
                                        teacher_frame_indices)

SPATIAL_CROPS = (1, 3)


@dataclass(frozen=True)
class FramePlan:
    """Geometry of a clip's frames: teacher (T, stride, size) and student (positions, size)."""

    num_frames: int                        # teacher frames T per clip
    frame_stride: int                      # native frames between teacher frames at 30 fps
    teacher_size: int                      # teacher input side S
    positions: tuple[float, ...] = ()      # student frame positions (fractions of the clip)
    student_size: int = 0                  # stored student frame side (also sets the decode size)
    teacher_frames: bool = True            # False: decode the student frames only (a deployed student)
    spatial_crops: int = 1                 # teacher crops per frame: 1 (centre) or 3 (left/top, centre,
                                           # right/bottom along the long side)

    def __post_init__(self) -> None:
        """Refuse crop counts other than 1 and 3, and spatial crops without teacher frames."""
        if self.spatial_crops not in SPATIAL_CROPS or (self.spatial_crops > 1 and not self.teacher_frames):
            raise ValueError(f"spatial_crops must be one of {SPATIAL_CROPS} (3 needs teacher frames), "
                             f"got {self.spatial_crops}")

    @property
    def decode_size(self) -> int:
        """The side frames are decoded at: the larger of the teacher's and the student's."""
        return max(self.teacher_size, self.student_size)

    def native_frames(self, centre_s: float, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Native frames to decode for one clip (sorted unique) and where the teacher/student frames sit in them.

        The clip spans `num_frames` x `frame_stride` frames of 30 fps video (64 for 16x4 and 8x8),
        rescaled to `fps`.
        """
        span = clip_span_frames(fps, self.num_frames, self.frame_stride)
        start = clip_start_frame(centre_s, fps, span)
        t_idx = teacher_frame_indices(start, span, self.num_frames) if self.teacher_frames \
            else np.zeros(0, np.int64)
        s_idx = student_frame_indices(start, span, list(self.positions))
        union = np.unique(np.concatenate([t_idx, s_idx]))
        return union, np.searchsorted(union, t_idx), np.searchsorted(union, s_idx)


@dataclass
class ClipFrames:
    """One clip's decoded frames: teacher (T, S, S, 3), or (C, T, S, S, 3) for a plan's C = 3 spatial
    crops (left/top, centre, right/bottom), and student (K, s, s, 3), uint8 RGB."""

    teacher: np.ndarray
    student: np.ndarray


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize square uint8 (..., S, S, 3) frames to (..., size, size, 3): bilinear, antialiased, rounded."""
    if frames.shape[-2] == size:
        return frames
    import torch
    import torch.nn.functional as F

    lead = frames.shape[:-3]
    x = torch.from_numpy(np.ascontiguousarray(frames)).reshape(-1, *frames.shape[-3:])
    x = x.permute(0, 3, 1, 2).float()
    y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    y = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return y.reshape(*lead, size, size, 3).numpy()


def square_crops(frames: np.ndarray, size: int, count: int) -> np.ndarray:
    """(..., H, W, 3) frames whose short side is about `size` -> (count, ..., size, size, 3) square crops.

    count 1: the centre crop (offsets (H - size) // 2, (W - size) // 2, the decoders' own); count 3:
    the first (left/top), centre and last (right/bottom) crop along the long side, centred across the
    short one (MotionFormer's uniform_crop, whose centre offset rounds up where ours rounds down).
    """
    h, w = frames.shape[-3:-1]
    y0, x0 = (h - size) // 2, (w - size) // 2
    if count == 1:
        offsets = [(y0, x0)]
    elif h > w:
        offsets = [(0, x0), (y0, x0), (h - size, x0)]
    else:
        offsets = [(y0, 0), (y0, x0), (y0, w - size)]
    return np.stack([frames[..., y:y + size, x:x + size, :] for y, x in offsets])


Planned = tuple[np.ndarray, np.ndarray, np.ndarray]   # FramePlan.native_frames of one clip


def source_info(path: str, fps: float | None = None) -> tuple[int, float]:
    """(frame count, frames per second) of a video file or an RGB-frame folder (whose rate `fps` the
    caller knows); DecodeError if it is unusable. Reads no pixels."""
    from egocache.pipeline.decode import video_info
    from egocache.pipeline.rgb_frames import folder_info, is_frame_folder

    return folder_info(path, fps) if is_frame_folder(path) else video_info(path)


def plan_video_clips(path: str, centres: list[float], plan: FramePlan, *, fps: float | None = None
                     ) -> list[Planned | ClipError]:
    """Each clip's native frames (FramePlan.native_frames) in the video (or RGB-frame folder, at `fps`)
    at `path`, or why it cannot be decoded (unusable source, clip outside it). Decodes nothing."""
    try:
        n, fps = source_info(path, fps)
    except DecodeError as exc:
        return [exc] * len(centres)
    out: list[Planned | ClipError] = []
    for centre in centres:
        planned = plan.native_frames(centre, fps)
        lo, hi = int(planned[0][0]), int(planned[0][-1])
        out.append(planned if 0 <= lo and hi < n else DecodeError(
            f"{path}: the clip at {centre:.3f} s needs frames {lo}..{hi} but the video has {n} frames "
            f"({n / fps:.3f} s)"))
    return out


def decode_planned(path: str, planned: list[Planned], plan: FramePlan, *, num_threads: int = 1,
                   fps: float | None = None) -> tuple[list[ClipFrames | ClipError], int, int]:
    """Decode planned clips of one video (or RGB-frame folder, at `fps`) in one pass, each frame once.

    Returns per clip its ClipFrames or the ClipError saying why it failed, then the native frames
    decoded and spanned (decode work; see decode.DecodeStats).
    """
    from egocache.pipeline.decode import decode_clips
    from egocache.pipeline.rgb_frames import decode_folder_clips, is_frame_folder

    if not planned:
        return [], 0, 0
    d, whole = plan.decode_size, plan.spatial_crops > 1
    try:
        if is_frame_folder(path):
            decoded, stats = decode_folder_clips(path, [p[0] for p in planned], size=d, fps=fps, crop=not whole)
        else:
            decoded, stats = decode_clips(path, [p[0] for p in planned], size=d, num_threads=num_threads,
                                          crop=not whole)
    except DecodeError as exc:
        return [exc] * len(planned), 0, 0
    out: list[ClipFrames | ClipError] = []
    for (_, t_pos, s_pos), frames in zip(planned, decoded):
        if isinstance(frames, ClipError):
            out.append(frames)
            continue
        s, t = plan.student_size, plan.teacher_size
        square = square_crops(frames[s_pos], d, 1)[0] if whole else frames[s_pos]
        student = resize_frames(square, s) if plan.positions else np.zeros((0, s, s, 3), np.uint8)
        views = square_crops(frames[t_pos], d, plan.spatial_crops) if whole else frames[t_pos]
        teacher = resize_frames(views, t) if plan.teacher_frames else np.zeros((0, t, t, 3), np.uint8)
        out.append(ClipFrames(teacher, student))
    return out, stats.frames_decoded, stats.frames_spanned


def decode_clip_frames(path: str, centres: list[float], plan: FramePlan, *, num_threads: int = 1,
                       fps: float | None = None) -> tuple[list[ClipFrames | ClipError], int, int]:
    """plan_video_clips then decode_planned: every clip's frames or the reason it failed, and the work."""
    planned = plan_video_clips(path, centres, plan, fps=fps)
    ok = [i for i, p in enumerate(planned) if not isinstance(p, ClipError)]
    decoded, frames_decoded, frames_spanned = decode_planned(path, [planned[i] for i in ok], plan,
                                                             num_threads=num_threads, fps=fps)
    out: list[ClipFrames | ClipError] = list(planned)  # type: ignore[arg-type]
    for i, frames in zip(ok, decoded):
        out[i] = frames
    return out, frames_decoded, frames_spanned
