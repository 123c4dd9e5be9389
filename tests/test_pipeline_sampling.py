"""Clip span, teacher and student frame positions, dense evaluation clip centres."""

import numpy as np
import pytest

from egocache.pipeline.sampling import (clip_seconds, clip_span_frames, clip_start_frame, segment_clip_centres,
                                        student_frame_indices, student_positions, teacher_frame_indices)
from egocache.cache.selections import draw_frames, selection_positions


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
    positions, sets, first_last = student_positions((1, 2, 4), first_last=True)
    for_n = sets["uniform"]
    assert list(sets) == ["uniform"]
    assert positions == [0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert [positions[i] for i in for_n[1]] == [0.5]
    assert [positions[i] for i in for_n[2]] == [0.25, 0.75]
    assert [positions[i] for i in for_n[4]] == [0.125, 0.375, 0.625, 0.875]
    assert [positions[i] for i in first_last] == [0.0, 1.0]
    positions, sets, first_last = student_positions((1,), first_last=False)
    assert positions == [0.5] and sets == {"uniform": {1: [0]}} and first_last is None


def test_frame_selections_of_table_4_on_the_16_frame_grid():
    grid = [k / 15 for k in range(16)]
    assert selection_positions("uniform", 4) == [0.125, 0.375, 0.625, 0.875]
    assert selection_positions("first", 4) == grid[:4]
    assert selection_positions("last", 4) == grid[12:]
    assert selection_positions("center", 4) == grid[6:10]
    assert selection_positions("random", 4) == grid
    positions, sets, fl = student_positions((1, 4), True, ("first", "last", "center", "random"))
    assert list(sets) == ["uniform", "first", "last", "center", "random"]
    for sel, by_n in sets.items():
        for n, idx in by_n.items():
            assert [positions[i] for i in idx] == pytest.approx(selection_positions(sel, n))
    assert len(positions) == len(set(positions)) == 16 + 5      # the grid, uniform N=1 and N=4 (0, 1 shared)
    with pytest.raises(ValueError, match="unknown frame selection 'best'"):
        selection_positions("best", 4)
    with pytest.raises(ValueError, match="1 <= N <= 16"):
        selection_positions("first", 17)


def test_a_random_selection_draws_n_distinct_frames_fixed_by_seed_and_row():
    rows = np.arange(2000)
    a, b, c = draw_frames(rows, 16, 4, 0), draw_frames(rows, 16, 4, 0), draw_frames(rows, 16, 4, 1)
    assert a.shape == (2000, 4) and (a == b).all() and (a != c).any(axis=1).mean() > 0.9
    assert (np.diff(a, axis=1) > 0).all() and a.min() >= 0 and a.max() <= 15
    assert (draw_frames(rows[500:510], 16, 4, 0) == a[500:510]).all()      # a row's draw ignores the batch
    counts = np.bincount(a.ravel(), minlength=16) / a.size
    assert np.abs(counts - 1 / 16).max() < 0.01                           # every grid frame equally often


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
