"""Clip span, teacher and student frame positions, dense evaluation clip centres."""

import numpy as np
import pytest

from egocache.pipeline.sampling import (clip_seconds, clip_span_frames, clip_start_frame, segment_clip_centres,
                                        student_frame_indices, student_positions, teacher_frame_indices)


@pytest.mark.parametrize("fps, span", [(30.0, 64), (60.0, 128), (25.0, 53), (29.97, 64), (1.0, 16)])
def test_clip_spans_16x4_at_30fps_whatever_the_rate(fps, span):
    assert clip_span_frames(fps) == span


def test_clip_is_2133_ms_and_rejects_bad_rates():
    assert clip_seconds() == pytest.approx(64 / 30)
    with pytest.raises(ValueError, match="positive"):
        clip_span_frames(0)


def test_teacher_frames_spread_over_the_span_by_linspace():
    idx = teacher_frame_indices(100, 64)
    assert len(idx) == 16 and idx[0] == 100 and idx[-1] == 163
    assert np.all(np.diff(idx) >= 4) and np.all(np.diff(idx) <= 5)
    assert list(teacher_frame_indices(0, 128, t=8)) == list(np.round(np.linspace(0, 127, 8)).astype(int))


def test_clip_centre_maps_to_a_centred_start():
    start = clip_start_frame(10.0, 30.0, 64)        # frames start..start+63 centred on frame 300
    assert abs(start + 31.5 - 300.0) <= 0.5          # within half a frame (an even span has no middle frame)
    assert clip_start_frame(10.0, 30.0, 65) == 268    # odd span: frame 300 is exactly in the middle


def test_student_positions_union_and_which_serve_what():
    positions, for_n, first_last = student_positions((1, 2, 4), first_last=True)
    assert positions == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert [positions[i] for i in for_n[1]] == [0.5]
    assert [positions[i] for i in for_n[2]] == [0.25, 0.75]
    assert [positions[i] for i in for_n[4]] == [0.125, 0.375, 0.625, 0.875]
    assert [positions[i] for i in first_last] == [0.0, 1.0]
    positions, for_n, first_last = student_positions((1,), first_last=False)
    assert positions == [0.5] and for_n == {1: [0]} and first_last is None


def test_student_frames_lie_inside_the_clip():
    idx = student_frame_indices(100, 64, [0.0, 0.5, 1.0])
    assert list(idx) == [100, 132, 163]


def test_dense_clips_fit_inside_the_segment_and_short_segments_use_the_centre():
    centres = segment_clip_centres(10.0, 14.0, 3)
    half = clip_seconds() / 2
    assert centres[0] == pytest.approx(10.0 + half) and centres[-1] == pytest.approx(14.0 - half)
    assert centres[1] == pytest.approx(12.0)
    assert segment_clip_centres(10.0, 11.0, 3) == [10.5, 10.5, 10.5]
    assert segment_clip_centres(10.0, 14.0, 1) == [12.0]
    with pytest.raises(ValueError):
        segment_clip_centres(0.0, 1.0, 0)
