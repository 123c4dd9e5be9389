"""Audio in the cache: reading a video's track (resampled to 16 kHz mono), a clip's log spectrogram, and
extraction writing the audio / audio_present arrays that verify checks and the reader returns."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from egocache.cache import CacheDataset, open_cache
from egocache.cache.verify import verify_cache
from egocache.errors import AudioError, CacheError
from egocache.pipeline.audio import (AUDIO_RATE_HZ, FREQ_BINS, LOG_EPS, clip_spectrogram, read_audio,
                                     spectrogram_frames)
from egocache.pipeline.extract import extract
from egocache.synth import synthesize
from extract_data import NUM_CLIPS, make_dataset, options, read_arrays
from media import encode_frames

CLIP_S = 64 / 30


def write_av(path: Path, *, seconds: float, rate: int, tones: tuple[float, ...], start_s: float = 0.0,
             video: bool = True) -> str:
    """An .mp4 (a few grey H.264 frames unless not `video`) with an AAC track at `rate` of one channel per
    tone in `tones` (Hz; 2 tones: stereo), silent before `start_s`."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    samples = np.stack([0.3 * np.sin(2 * np.pi * f * t) * (t >= start_s) for f in tones]).astype(np.float32)
    layout = "mono" if len(tones) == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(10)) if video else None
        sound = out.add_stream("aac", rate=rate)
        sound.layout = layout
        if stream is not None:
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            encode_frames(out, stream, (np.full((32, 32, 3), 128, np.uint8) for _ in range(int(seconds * 10))))
        for a in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, a:a + 1024].T.reshape(1, -1)),
                                               format="flt", layout=layout)
            frame.sample_rate, frame.pts = rate, a
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode():
            out.mux(packet)
    return str(path)


def peak_bins(spec: np.ndarray) -> np.ndarray:
    """The strongest frequency bin of each frame."""
    return spec.argmax(axis=0)


def test_a_tone_at_48khz_stereo_peaks_in_its_bin_at_16khz_mono(tmp_path):
    path = write_av(tmp_path / "a.mp4", seconds=4.0, rate=48000, tones=(1000.0, 1000.0))
    track = read_audio(path)
    assert track.samples.dtype == np.float32 and track.samples.ndim == 1
    assert abs(len(track.samples) - 4.0 * AUDIO_RATE_HZ) < 0.1 * AUDIO_RATE_HZ and abs(track.start_s) < 0.05
    spec = clip_spectrogram(track, 1.0, CLIP_S)
    assert spec.shape == (FREQ_BINS, spectrogram_frames(CLIP_S)) == (201, 211) and spec.dtype == np.float32
    assert (peak_bins(spec) == 25).all()                           # 1000 Hz / (16000 / 400) Hz per bin


def test_44k1_stereo_is_down_mixed_to_mono(tmp_path):
    path = write_av(tmp_path / "b.mp4", seconds=3.0, rate=44100, tones=(600.0, 2000.0))
    spec = clip_spectrogram(read_audio(path), 0.5, CLIP_S)
    mean = spec.mean(axis=1)
    assert set(np.argsort(mean)[-2:].tolist()) == {15, 50}          # both channels' tones: 600 Hz and 2 kHz
    assert abs(mean[15] - mean[50]) < 1.0


def test_a_span_read_gives_the_whole_read_and_times_line_up(tmp_path):
    path = write_av(tmp_path / "c.mp4", seconds=8.0, rate=48000, tones=(1000.0,), start_s=5.0)
    whole, span = read_audio(path), read_audio(path, 4.0, 4.0 + CLIP_S)
    assert span.start_s > 2.0 and span.end_s < 8.0                   # decoded from a seek, not from 0 s
    a, b = clip_spectrogram(whole, 4.0, CLIP_S), clip_spectrogram(span, 4.0, CLIP_S)
    strong = a > np.log(1e-2)                       # (silence's log magnitudes are the resampler's rounding)
    assert strong.sum() > 100 and np.abs(a - b)[strong].max() < 0.15
    loud = a[25] > 0.0                               # the tone starts 1 s (100 hops) into the window
    assert not loud[:97].any() and loud[100:].all()


def test_no_audio_track_and_windows_beyond_the_track(tmp_path):
    from media import write_video

    silent = write_video(tmp_path / "silent.mp4", seconds=2.0, fps=10, audio=False)
    with pytest.raises(AudioError, match="no audio track"):
        read_audio(silent)
    with pytest.raises(AudioError, match="RGB-frame folder"):
        read_audio(str(tmp_path))
    track = read_audio(write_av(tmp_path / "d.mp4", seconds=3.0, rate=16000, tones=(1000.0,)))
    with pytest.raises(AudioError, match="past the end .* 0 % covered"):
        clip_spectrogram(track, 3.5, CLIP_S)
    with pytest.raises(AudioError, match="before the start"):
        clip_spectrogram(track, -2.0, CLIP_S)
    partly = clip_spectrogram(track, 1.5, CLIP_S)                      # 1.5 of its 2.13 s inside the track
    assert (peak_bins(partly[:, :140]) == 25).all() and np.allclose(partly[:, -60:], np.log(LOG_EPS), atol=0.01)


# --- extraction -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("audio") / "ds")


@pytest.fixture(scope="module")
def with_audio(dataset, tmp_path_factory):
    cache = tmp_path_factory.mktemp("aud") / "c.zarr"
    return cache, extract(options(dataset, cache))


@pytest.fixture(scope="module")
def mute(tmp_path_factory):
    """The same dataset without sound tracks."""
    return synthesize(str(tmp_path_factory.mktemp("mute") / "ds"), videos=2, seed=0, size=(96, 64), duration_s=10.0,
                      audio=False)


@pytest.fixture(scope="module")
def no_audio_cache(mute, tmp_path_factory):
    """A cache extracted with --audio none."""
    cache = tmp_path_factory.mktemp("none") / "none.zarr"
    extract(options(mute, cache, audio="none"))
    return cache


def test_extraction_writes_audio_that_verify_checks(with_audio, tmp_path):
    import shutil

    cache, summary = with_audio
    assert summary.clips_ok == NUM_CLIPS and summary.clips_without_audio == 0 and "audio" in summary.stage_seconds
    arrays = read_arrays(cache)
    assert arrays["audio"].shape == (NUM_CLIPS, 201, 211) and arrays["audio"].dtype == np.float16
    assert (arrays["audio_present"] == 1).all() and np.isfinite(arrays["audio"]).all()
    info = open_cache(str(cache))
    assert info.audio is not None and info.audio["rate_hz"] == 16000 and info.audio["n_fft"] == 400
    assert (info.audio["hop"], info.audio["window"], info.audio["frames"], info.audio["mode"]) == (160, "hann", 211,
                                                                                                   "optional")
    assert "audio      201x211 log spectrogram" in info.summary()
    assert verify_cache(str(cache)).ok
    broken = tmp_path / "broken.zarr"
    shutil.copytree(cache, broken)
    shard = broken / "audio" / "c" / "3" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_cache(str(broken))
    assert not report.ok and any("shard 3" in p and "array audio" in p and "checksum" in p for p in report.problems)


def test_the_reader_returns_audio_and_filters_on_it(with_audio):
    cache, _ = with_audio
    ds = CacheDataset(str(cache), split="validation", read_frames=False, read_audio=True, require_audio=True)
    batch = ds[list(range(len(ds)))]
    want = read_arrays(cache)["audio"][ds.rows]
    assert batch["audio"].shape == (len(ds), 201, 211) and np.array_equal(batch["audio"].numpy(), want)
    assert ds.skipped_without_audio == 0 and "audio" not in CacheDataset(str(cache), read_frames=False)[0]


def test_videos_without_audio_are_flagged_or_fail_and_none_writes_no_audio(mute, no_audio_cache, tmp_path):
    ds = mute
    summary = extract(options(ds, tmp_path / "opt.zarr"))
    arrays = read_arrays(tmp_path / "opt.zarr")
    assert summary.clips_ok == NUM_CLIPS and summary.clips_without_audio == NUM_CLIPS
    assert (arrays["audio_present"] == 0).all() and not arrays["audio"].any()
    assert all("no audio track" in line for line in summary.without_audio)
    ds_audio = CacheDataset(str(tmp_path / "opt.zarr"), split="validation", read_frames=False, require_audio=True)
    assert len(ds_audio) == 0 and ds_audio.skipped_without_audio == 6
    failed = extract(options(ds, tmp_path / "req.zarr", audio="required"))
    assert failed.clips_failed == NUM_CLIPS and all("audio: " in f and "no audio track" in f for f in failed.failures)
    arrays = read_arrays(no_audio_cache)
    assert "audio" not in arrays and "audio_present" not in arrays
    info = open_cache(str(no_audio_cache))
    assert "audio" not in info.attrs and info.audio is None and verify_cache(str(no_audio_cache)).ok
    with pytest.raises(CacheError, match="has no audio"):
        CacheDataset(str(no_audio_cache), read_frames=False, read_audio=True)
    with pytest.raises(CacheError, match="begun without audio: resume it with --audio none"):
        extract(options(ds, no_audio_cache))                       # the default --audio optional


def test_listentolook_trains_from_an_extracted_cache_with_the_cli_and_refuses_one_without_audio(
        with_audio, no_audio_cache, tmp_path):
    import json

    from click.testing import CliRunner

    from egocache.cli import main

    cache, _ = with_audio
    args = ["train-student", "--variant", "listentolook", "--epochs", "1", "--pretrain-epochs", "1",
            "--batch-size", "1", "--num-workers", "0", "--freeze-image-encoder", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--cache", str(cache), "--out", str(tmp_path / "ltl")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ltl" / "metrics.json").read_text())
    assert metrics["variant"] == "listentolook" and metrics["top1_acc"] is not None
    assert (tmp_path / "ltl" / "pretrain" / "last.pt").is_file()
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["benchmark", "--cache", str(cache), "--runs", str(tmp_path / "ltl"), "--out",
                                       str(report), "--no-latency"])
    assert result.exit_code == 0, result.output
    models = json.loads((report / "report.json").read_text())["models"]
    assert [m["variant"] for m in models] == ["teacher", "listentolook"] and models[1]["gflops"] > 0
    assert "| listentolook | 1 |" in (report / "report.md").read_text()
    assert (report / "accuracy_vs_gflops.png").stat().st_size > 0
    result = CliRunner().invoke(main, [*args, "--cache", str(no_audio_cache), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "has no audio" in result.output and len(result.output.strip().splitlines()) == 1


def test_each_block_is_decoded_once_per_shard_and_a_clip_gets_the_same_bits_in_any_company(tmp_path, monkeypatch):
    import egocache.pipeline.audio as audio_mod
    from egocache.pipeline.datasets import Clip
    from egocache.pipeline.extract_worker import ShardJob, ShardResult, TeacherKey, _audio_windows, _ShardBuffers

    path = write_av(tmp_path / "long.mp4", seconds=100.0, rate=24000, tones=(1000.0, 3000.0), video=False)
    calls: list[tuple[float, float]] = []
    real = audio_mod.read_audio

    def counting(p: str, start: float | None = None, end: float | None = None):
        calls.append((start, end))
        return real(p, start, end)

    monkeypatch.setattr(audio_mod, "read_audio", counting)
    centres = (5.0, 8.0, 9.5, 95.0)
    clips = tuple(Clip(f"s{i}/0", f"s{i}", "v", path, "train", c, c - 1, c + 1, {"verb": 0}, None, ())
                  for i, c in enumerate(centres))
    job = ShardJob(cache="", shard=0, clips=clips, teacher=TeacherKey("t", None, (), (), "cpu"), heads=(),
                   frame_size=8, positions=(0.5,), batch_size=1, audio_mode="optional", audio_seconds=CLIP_S)
    buf = _ShardBuffers(len(clips), 4, {}, {}, 1, 8, 422, (FREQ_BINS, spectrogram_frames(CLIP_S)))
    _audio_windows(job, buf, ShardResult(0, len(clips), 0, [], 0, 0))
    block = audio_mod.BLOCK_S
    assert calls == [pytest.approx((0.0, block + CLIP_S)), pytest.approx((block, 2 * block + CLIP_S))]
    assert buf.audio_present.tolist() == [1, 1, 1, 1]
    # a clip's spectrogram is the same read alone, with others, or in another order (seek and resampler
    # state come from its block, not from the request): the cache is the same for any shard layout
    starts = [93.9 - CLIP_S / 2 + d for d in (0.0, 0.7, -30.0)]      # the last one lies in the first block
    together = audio_mod.video_spectrograms(path, starts, CLIP_S)
    for i, start in enumerate(starts):
        assert np.array_equal(audio_mod.video_spectrograms(path, [start], CLIP_S)[0], together[i])
    assert np.array_equal(audio_mod.video_spectrograms(path, starts[::-1], CLIP_S)[::-1][0], together[0])
    np.testing.assert_array_equal(buf.audio[3], audio_mod.video_spectrograms(path, [95.0 - CLIP_S / 2], CLIP_S)[0])
