"""The frame plan and the one decoder of clip frames (pipeline/frames.py) that extraction and
teacher fine-tuning share."""

from __future__ import annotations

import numpy as np
import pytest

from egocache.errors import DecodeError
from egocache.pipeline.frames import FramePlan, decode_clip_frames, resize_frames
from egocache.pipeline.sampling import (clip_span_frames, clip_start_frame, student_frame_indices,
                                        student_positions, teacher_frame_indices)
from egocache.synth import synthesize


def test_native_frames_decode_each_frame_once_and_map_back():
    positions, _, _ = student_positions((1, 2, 4), first_last=True)
    plan = FramePlan(8, 8, 32, tuple(positions), 64)
    union, t_pos, s_pos = plan.native_frames(5.0, 30.0)
    span = clip_span_frames(30.0, 8, 8)
    start = clip_start_frame(5.0, 30.0, span)
    assert span == 64 and plan.decode_size == 64
    assert np.array_equal(union, np.unique(union))
    assert np.array_equal(union[t_pos], teacher_frame_indices(start, span, 8))
    assert np.array_equal(union[s_pos], student_frame_indices(start, span, positions))
    assert len(union) < 8 + len(positions)          # teacher and student frames overlap


def test_resize_frames_keeps_shape_prefix_and_constant_images():
    frames = np.full((2, 3, 64, 64, 3), 77, np.uint8)
    out = resize_frames(frames, 32)
    assert out.shape == (2, 3, 32, 32, 3) and out.dtype == np.uint8 and (out == 77).all()
    assert resize_frames(frames, 64) is frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    ds = synthesize(str(tmp_path_factory.mktemp("frames")), videos=1, size=(96, 64), duration_s=8.0)
    return ds.videos[0].video_path


def test_decode_gives_each_size_and_reports_clips_outside_the_video(video):
    plan = FramePlan(8, 8, 32, (0.5,), 48)
    got, decoded, spanned = decode_clip_frames(video, [3.0, 60.0], plan)
    assert got[0].teacher.shape == (8, 32, 32, 3) and got[0].student.shape == (1, 48, 48, 3)
    assert isinstance(got[1], DecodeError) and "needs frames" in str(got[1])
    assert decoded >= spanned > 0
    teacher_only, _, _ = decode_clip_frames(video, [3.0], FramePlan(8, 8, 32))
    assert teacher_only[0].student.shape == (0, 0, 0, 3)
    # the teacher's frames depend on the decode size only through the plan: a plan with a larger
    # student size decodes larger frames and resizes the teacher's, the same way wherever it is used
    again, _, _ = decode_clip_frames(video, [3.0], plan)
    assert np.array_equal(again[0].teacher, got[0].teacher)
    missing, _, _ = decode_clip_frames(video + ".absent", [3.0], plan)
    assert isinstance(missing[0], DecodeError)
