"""Tests of egocache.pipeline.decode on tiny H.264 videos whose frames encode their own index."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

from egocache.errors import DecodeError
from egocache.pipeline import decode
from egocache.pipeline.decode import decode_clips, reader_size, video_info

N_FRAMES = 300
GOP = 30


def _index_frame(i: int, h: int, w: int) -> np.ndarray:
    """Frame i: the centre square has R = 8*(i%32), G = 8*(i//32), B = 0; the long side's outer
    strips (cut away by a centre crop) have B = 255."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 8 * (i % 32)
    img[..., 1] = 8 * (i // 32)
    if w > h:
        img[:, : (w - h) // 2, 2] = img[:, w - (w - h) // 2:, 2] = 255
    elif h > w:
        img[: (h - w) // 2, :, 2] = img[h - (h - w) // 2:, :, 2] = 255
    return img


def _write_video(path: Path, w: int, h: int, n: int = N_FRAMES, faststart: bool = False) -> str:
    """Near-lossless 30 fps H.264 (qp 0) with a keyframe every GOP frames."""
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0",
                          "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_index_frame(i, h, w), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return str(path)


def _indices_of(frames: np.ndarray) -> np.ndarray:
    """Frame indices read back from the centre pixel of each decoded frame."""
    s = frames.shape[1] // 2
    rg = frames[:, s, s, :2].astype(np.float64) / 8.0
    return (np.round(rg[:, 0]) + 32 * np.round(rg[:, 1])).astype(np.int64)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Landscape, portrait, square, a copy to corrupt, and broken files."""
    d = tmp_path_factory.mktemp("videos")
    v = {
        "landscape": _write_video(d / "landscape.mp4", 96, 72),
        "portrait": _write_video(d / "portrait.mp4", 72, 96),
        "square": _write_video(d / "square.mp4", 64, 64, n=40),
    }
    good = Path(_write_video(d / "faststart.mp4", 96, 72, faststart=True)).read_bytes()
    corrupt = bytearray(good)
    half = len(good) // 2
    corrupt[half:] = np.random.default_rng(0).integers(0, 256, len(good) - half, np.uint8).tobytes()
    (d / "corrupt.mp4").write_bytes(bytes(corrupt))
    v["corrupt"] = str(d / "corrupt.mp4")
    plain = Path(v["landscape"]).read_bytes()
    (d / "truncated.mp4").write_bytes(plain[: len(plain) // 2])
    v["truncated"] = str(d / "truncated.mp4")
    (d / "truncated_faststart.mp4").write_bytes(good[: len(good) // 2])
    v["truncated_faststart"] = str(d / "truncated_faststart.mp4")
    (d / "empty.mp4").write_bytes(b"")
    v["empty"] = str(d / "empty.mp4")
    (d / "text.mp4").write_text("not a video\n" * 50)
    v["text"] = str(d / "text.mp4")
    with av.open(str(d / "audio.mp4"), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                           layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    v["audio"] = str(d / "audio.mp4")
    v["missing"] = str(d / "missing.mp4")
    return v


def test_video_info(videos):
    assert video_info(videos["landscape"]) == (N_FRAMES, 30.0)
    assert video_info(videos["square"]) == (40, 30.0)


def test_overlapping_and_disjoint_clips_get_their_frames(videos):
    clips = [np.arange(10, 74, 4), np.arange(30, 94, 4),       # overlapping (one merged span)
             np.array([200, 215, 231]), np.array([290, 299])]  # disjoint, other keyframe intervals
    frames, stats = decode_clips(videos["landscape"], clips, size=32)
    for ix, got in zip(clips, frames):
        assert isinstance(got, np.ndarray) and got.dtype == np.uint8
        assert got.shape == (len(ix), 32, 32, 3)
        np.testing.assert_array_equal(_indices_of(got), ix)
    assert stats.frames_spanned == (90 - 10 + 1) + (231 - 200 + 1) + (299 - 290 + 1)
    assert stats.seconds > 0


def test_order_and_duplicates_preserved(videos):
    clips = [np.array([50, 12, 12, 49, 3, 50]), np.array([7])]
    frames, _ = decode_clips(videos["portrait"], clips, size=24)
    for ix, got in zip(clips, frames):
        np.testing.assert_array_equal(_indices_of(got), ix)


def test_empty_clip_gives_empty_array(videos):
    clips = [np.array([], np.int64), np.array([5])]
    frames, stats = decode_clips(videos["landscape"], clips, size=16)
    assert frames[0].shape == (0, 16, 16, 3)
    np.testing.assert_array_equal(_indices_of(frames[1]), [5])
    assert stats.frames_spanned == 1


def test_each_frame_decoded_once(videos):
    decode.clear_reader_cache()                    # a fresh reader starts at frame 0
    a, b = np.arange(10, 74, 4), np.arange(30, 94, 4)
    _, both = decode_clips(videos["landscape"], [a, b, a.copy()], size=16)
    # decoding 10..90 in one forward pass: frames 0..90 once, minus the frames a seek to the
    # keyframes 30 (skips 27-29), 60 (skips 59) and 90 (skips 87-89) jumps over
    assert both.frames_decoded == 91 - 3 - 1 - 3
    assert both.frames_spanned == 90 - 10 + 1
    _, only_a = decode_clips(videos["landscape"], [a], size=16)
    _, only_b = decode_clips(videos["landscape"], [b], size=16)
    assert both.frames_decoded < only_a.frames_decoded + only_b.frames_decoded
    # never more than the union of the spans, each extended back to its keyframe
    _, far = decode_clips(videos["landscape"], [np.array([95, 100]), np.array([250, 262])], size=16)
    assert far.frames_decoded <= (100 - 90 + 1) + (262 - 240 + 1)


@pytest.mark.parametrize("name, native_hw", [("landscape", (72, 96)), ("portrait", (96, 72)),
                                             ("square", (64, 64))])
@pytest.mark.parametrize("size", [16, 32, 36, 48, 50, 64])
def test_geometry_short_side_and_centre_crop(videos, name, native_hw, size):
    frames, _ = decode_clips(videos[name], [np.array([0, 33])], size=size)
    got = frames[0]
    assert got.shape == (2, size, size, 3)
    np.testing.assert_array_equal(_indices_of(got), [0, 33])
    # the blue outer strips lie outside the centred crop (allow 2 px of scaling blur at the edges)
    assert got[:, 2:-2, 2:-2, 2].max() < 40
    out_h, out_w = reader_size(native_hw, size)
    assert min(out_h, out_w) in (size, size + 1)
    assert not decode._unsafe_width(out_w)


def test_reader_size_keeps_aspect():
    assert reader_size((256, 456), 224) == (224, 399)
    assert reader_size((1920, 1080), 224) == (398, 224)
    assert reader_size((1080, 1920), 112) == (112, 199)
    assert reader_size((72, 96), 36) == (36, 49)   # 48 px rows are misread by decord: widened
    assert reader_size((96, 72), 32) == (44, 33)


def test_clip_outside_video_fails_alone(videos):
    path = videos["landscape"]
    clips = [np.array([0, 1]), np.array([298, 300]), np.array([-1, 4]), np.array([299])]
    frames, stats = decode_clips(path, clips, size=16)
    for c in (1, 2):
        assert isinstance(frames[c], DecodeError)
        assert path in str(frames[c]) and f"clip {c}" in str(frames[c])
        assert f"{N_FRAMES} frames" in str(frames[c])
    assert "298..300" in str(frames[1]) and "-1..4" in str(frames[2])
    np.testing.assert_array_equal(_indices_of(frames[0]), [0, 1])
    np.testing.assert_array_equal(_indices_of(frames[3]), [299])
    assert stats.frames_spanned == 3


@pytest.mark.parametrize("name, reason", [
    ("missing", "No such file"), ("empty", "empty file"), ("text", "cannot open video"),
    ("truncated", "cannot open video"), ("truncated_faststart", "cannot open video"),
    ("audio", "cannot open video")])
def test_unreadable_files_raise(videos, name, reason):
    path = videos[name]
    for call in (lambda: video_info(path), lambda: decode_clips(path, [np.array([0])], size=16)):
        with pytest.raises(DecodeError, match=reason) as info:
            call()
        assert path in str(info.value)
    if name not in ("missing", "empty"):
        assert isinstance(info.value.__cause__, (RuntimeError, decode.decord.DECORDError))


def test_undecodable_frames_fail_per_clip(videos):
    """Clips in the damaged half fail one by one, each with its one-line reason. Clips of the intact half
    decode to the right frames, or fail the same way: decord's decoding thread can run ahead into the
    damaged half when the CPU is busy (seen with both cores loaded, never idle), which this
    test cannot rule out on a shared machine; what it rules out is a wrong frame."""
    path = videos["corrupt"]
    assert video_info(path)[0] == N_FRAMES       # the index is intact, the second half is garbage
    clips = [np.arange(0, 20), np.arange(10, 221, 10), np.arange(230, 240), np.array([5, 6])]
    for _ in range(2):                           # a broken reader is not reused by the next call
        frames, _ = decode_clips(path, clips, size=16)
        for c, want in ((0, clips[0]), (3, [5, 6])):
            if isinstance(frames[c], DecodeError):
                assert f"{path}: clip {c} frames" in str(frames[c]) and "cannot be decoded" in str(frames[c])
            else:
                np.testing.assert_array_equal(_indices_of(frames[c]), want)
        for c in (1, 2):
            assert isinstance(frames[c], DecodeError)
            assert path in str(frames[c]) and f"clip {c}" in str(frames[c])
            assert "cannot be decoded" in str(frames[c])
            assert frames[c].__cause__ is not None
    good, _ = decode_clips(videos["landscape"], [np.array([100])], size=16)
    np.testing.assert_array_equal(_indices_of(good[0]), [100])


def test_cached_reader_follows_file_changes(tmp_path, videos):
    path = tmp_path / "v.mp4"
    _write_video(path, 64, 48, n=40)
    assert video_info(str(path)) == (40, 30.0)
    frames, _ = decode_clips(str(path), [np.array([39])], size=16)
    np.testing.assert_array_equal(_indices_of(frames[0]), [39])
    _write_video(tmp_path / "w.mp4", 64, 48, n=70)
    os.replace(tmp_path / "w.mp4", path)
    assert video_info(str(path)) == (70, 30.0)
    frames, _ = decode_clips(str(path), [np.array([69])], size=24)
    np.testing.assert_array_equal(_indices_of(frames[0]), [69])


def test_bad_size_rejected(videos):
    with pytest.raises(ValueError, match="size"):
        decode_clips(videos["landscape"], [np.array([0])], size=0)


def test_next_call_continues_where_the_reader_stopped(videos):
    decode.clear_reader_cache()
    _, first = decode_clips(videos["landscape"], [np.arange(0, 10)], size=16)
    _, second = decode_clips(videos["landscape"], [np.arange(10, 20)], size=16)
    assert first.frames_decoded == second.frames_decoded == 10
