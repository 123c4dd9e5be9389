"""The frame plan and the one decoder of clip frames (pipeline/frames.py) that extraction, teacher
fine-tuning and test-teacher share; the three spatial crops of the multi-view test."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from egocache.errors import DecodeError
from egocache.pipeline.frames import FramePlan, decode_clip_frames, resize_frames, square_crops
from egocache.pipeline.rgb_frames import FRAME_NAME, scale_crop
from egocache.pipeline.sampling import (clip_span_frames, clip_start_frame, student_frame_indices,
                                        student_positions, teacher_frame_indices)
from egocache.synth import synthesize
from media import write_band_video


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


RED, GREEN, BLUE = 0, 1, 2


def dominant(views: np.ndarray) -> list[int]:
    """The strongest colour channel of each crop of (C, ..., 3) frames."""
    return [int(v.reshape(-1, 3).mean(axis=0).argmax()) for v in views]


@pytest.mark.parametrize("size, order", [((96, 32), "left, centre, right"), ((32, 96), "top, centre, bottom")])
def test_three_crops_sit_along_the_long_side_and_the_centre_one_is_the_single_crop(tmp_path, size, order):
    video = write_band_video(tmp_path / "bands.mp4", seconds=4.0, fps=30.0, size=size)
    for teacher_size in (32, 16):                # decoded at the teacher's size, or larger and resized
        plan = FramePlan(8, 8, teacher_size, (0.5,), 32, spatial_crops=3)
        views = decode_clip_frames(video, [2.0], plan)[0][0]
        single = decode_clip_frames(video, [2.0], FramePlan(8, 8, teacher_size, (0.5,), 32))[0][0]
        assert views.teacher.shape == (3, 8, teacher_size, teacher_size, 3)
        assert dominant(views.teacher) == [RED, GREEN, BLUE], order
        assert np.array_equal(views.teacher[1], single.teacher)
        assert np.array_equal(views.student, single.student)


def test_three_crops_from_an_rgb_frame_folder(tmp_path):
    band = np.repeat(np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230]], np.uint8), 32, axis=0)
    img = np.ascontiguousarray(np.broadcast_to(band[None], (32, 96, 3)))
    folder = tmp_path / "rgb_frames" / "P01_01"
    folder.mkdir(parents=True)
    for k in range(80):
        (folder / FRAME_NAME.format(k + 1)).write_bytes(simplejpeg.encode_jpeg(img, quality=95, colorspace="RGB"))
    views = decode_clip_frames(str(folder), [1.3], FramePlan(8, 8, 16, (), 32, spatial_crops=3), fps=30.0)[0][0]
    single = decode_clip_frames(str(folder), [1.3], FramePlan(8, 8, 16, (), 32), fps=30.0)[0][0]
    assert dominant(views.teacher) == [RED, GREEN, BLUE]
    assert np.array_equal(views.teacher[1], single.teacher)
    whole = scale_crop(img, 16, crop=False)
    assert whole.shape == (16, 48, 3) and np.array_equal(square_crops(whole, 16, 1)[0], scale_crop(img, 16))


def test_frame_plan_refuses_other_crop_counts():
    with pytest.raises(ValueError, match="spatial_crops"):
        FramePlan(8, 8, 32, (), 32, spatial_crops=2)
    with pytest.raises(ValueError, match="spatial_crops"):
        FramePlan(8, 8, 32, (0.5,), 32, teacher_frames=False, spatial_crops=3)
