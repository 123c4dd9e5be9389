"""audio-tiny, the audio-modality teacher (issue 13): its input is the clip's cached log spectrogram. Registry
and preprocess, extraction as the cache's teacher and as an added one (equal bits, no frames decoded),
train-teacher, test-teacher views, predict's refusal, and an ensemble with it in train-student."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import ConfigError, EgocacheError
from egocache.pipeline.audio import FREQ_BINS, spectrogram_frames
from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.extract import extract
from egocache.pipeline.teachers import (create_teacher, read_teacher_checkpoint, save_teacher_checkpoint,
                                        teacher_spec, teacher_stats)
from egocache.pipeline.teachers.base import run_teacher
from egocache.pipeline.train_teacher import audio_teacher_clips, spec_mask
from egocache.synth import synthesize
from extract_data import NUM_CLIPS, cli_args, make_dataset, options, read_arrays

M = spectrogram_frames(64 / 30)            # 211 STFT frames in the 2.133-s clip
TINY = ["--teacher-option", "width=4", "--teacher-option", "depth=2", "--teacher-option", "feature_dim=8"]


def spectrograms(batch: int, seed: int = 0) -> np.ndarray:
    """Random float16 log spectrograms (B, 201, 211) in the range of real ones."""
    return np.random.default_rng(seed).uniform(-12, 2, (batch, FREQ_BINS, M)).astype(np.float16)


# --- registry, preprocess, checkpoints ------------------------------------------------------------------

def test_the_spec_says_audio_input_and_the_config_is_checked():
    spec = teacher_spec("audio-tiny", heads={"verb": 9, "noun": 12})
    assert (spec.input, spec.img_size, spec.num_frames, spec.frame_stride) == ("audio", 0, 8, 8)
    assert json.loads(json.dumps(spec.to_dict()))["input"] == "audio"
    assert teacher_spec("mformer-tiny").input == "rgb"
    with torch.device("meta"):
        model = create_teacher("audio-tiny")
    assert model.input_shape() == (1, FREQ_BINS, M)
    assert create_teacher("audio-tiny", frame_stride=4).input_shape() == (1, FREQ_BINS, spectrogram_frames(32 / 30))
    stats = teacher_stats("audio-tiny")
    assert stats["params"] == sum(p.numel() for p in model.parameters()) and 0 < stats["gflops"] < 1
    with pytest.raises(EgocacheError, match="log_std=0.0 must be > 0"):
        teacher_spec("audio-tiny", log_std=0.0)
    with pytest.raises(EgocacheError, match="unknown override.*img_size"):
        teacher_spec("audio-tiny", img_size=32)
    with pytest.raises(EgocacheError, match="smaller than 2\\*\\*depth=256"):
        create_teacher("audio-tiny", depth=8)


def test_preprocess_normalises_the_spectrogram_and_checks_it():
    model = create_teacher("audio-tiny", heads={"verb": 3}, log_mean=-3.0, log_std=2.0)
    x = spectrograms(2)
    out = model.preprocess(torch.from_numpy(x))
    assert out.dtype == torch.float32 and tuple(out.shape) == (2, 1, FREQ_BINS, M)
    assert torch.allclose(out[:, 0], (torch.from_numpy(x).float() + 3.0) / 2.0)
    assert torch.equal(model.preprocess(torch.from_numpy(x.astype(np.float32))), out)
    with pytest.raises(ValueError, match="expected log spectrograms \\(B, 201, 211\\)"):
        model.preprocess(torch.zeros(2, FREQ_BINS, 100))
    with pytest.raises(ValueError, match="expected log spectrograms"):
        model.preprocess(torch.zeros(1, 8, 32, 32, 3, dtype=torch.uint8))


def test_run_teacher_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = create_teacher("audio-tiny", heads={"verb": 5, "noun": 7}, width=4, depth=2, feature_dim=8)
    x = spectrograms(5)
    feats, logits = run_teacher(model, x, "cpu", batch_size=2)
    assert feats.shape == (5, 8) and np.abs(feats).max() <= 1 and logits["noun"].shape == (5, 7)
    assert np.allclose(run_teacher(model, x, "cpu", batch_size=5)[0], feats, atol=1e-5)
    path = save_teacher_checkpoint(model, tmp_path / "a.pyth", cfg={}, epoch=1)
    loaded = create_teacher("audio-tiny", checkpoint=path)
    assert loaded.spec == model.spec and read_teacher_checkpoint(path)["teacher"]["input"] == "audio"
    assert np.array_equal(run_teacher(loaded, x, "cpu", batch_size=2)[0], feats)


def test_spec_mask_zeroes_one_band_and_one_span_per_clip_deterministically():
    x = torch.ones(6, 1, FREQ_BINS, M)
    out = spec_mask(x, torch.Generator().manual_seed(3), widths=(20, 30))
    again = spec_mask(x, torch.Generator().manual_seed(3), widths=(20, 30))
    assert torch.equal(out, again) and torch.equal(x, torch.ones_like(x))        # the input is left alone
    for clip in out[:, 0]:
        rows = (clip == 0).all(dim=1).sum().item()         # masked frequency bins: zero at every frame
        cols = (clip == 0).all(dim=0).sum().item()         # masked frames: zero at every bin
        assert rows <= 20 and cols <= 30
        assert set(torch.unique(clip).tolist()) <= {0.0, 1.0}
        assert (clip == 0).sum().item() == rows * M + cols * FREQ_BINS - rows * cols
    assert (out == 0).any()


# --- extraction -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The extraction tests' dataset; a cache of audio-tiny; a cache of mformer-tiny with audio-tiny added."""
    tmp = tmp_path_factory.mktemp("audio-teacher")
    ds = make_dataset(tmp / "ds")
    own = tmp / "own.zarr"
    result = CliRunner().invoke(main, [*cli_args(ds, own), "--teacher", "audio-tiny", *TINY, "--json"])
    added = tmp / "added.zarr"
    first = CliRunner().invoke(main, cli_args(ds, added))
    assert first.exit_code == 0, first.output
    add = CliRunner().invoke(main, [*cli_args(ds, added), "--teacher", "audio-tiny", *TINY, "--json"])
    return ds, own, result, added, add


def test_extraction_runs_it_on_the_cached_spectrograms(world):
    ds, own, result, _, _ = world
    assert result.exit_code == 0, result.output
    assert "takes the clips' audio: extracting under --audio required" in result.output
    summary = json.loads(result.stdout)
    assert summary["clips_ok"] == NUM_CLIPS
    arrays = read_arrays(own)
    assert arrays["audio"].dtype == np.float16 and (arrays["audio_present"] == 1).all()
    torch.manual_seed(0)                       # extraction's seeded init (extract_worker.INIT_SEED)
    model = create_teacher("audio-tiny", heads={"verb": 9, "noun": 12}, width=4, depth=2, feature_dim=8)
    feats, logits = run_teacher(model, arrays["audio"], "cpu", 1)       # one clip per shard, as extracted
    np.testing.assert_allclose(arrays["features"], feats, rtol=0, atol=1e-6)    # (CPU threads may differ)
    np.testing.assert_allclose(arrays["logits_verb"], logits["verb"], rtol=0, atol=1e-6)
    attrs = json.loads((own / "zarr.json").read_text())["attributes"]
    assert attrs["audio"]["mode"] == "required" and attrs["teacher"]["input"] == "audio"


def test_an_added_audio_teacher_equals_its_own_cache_and_decodes_no_frames(world):
    ds, own, _, added, add = world
    assert add.exit_code == 0, add.output
    summary = json.loads(add.stdout)
    assert (summary["group"], summary["clips_ok"], summary["frames_decoded_per_clip"]) == ("audio-tiny", NUM_CLIPS, 0)
    group = read_arrays(os.path.join(added, "teachers", "audio-tiny"))
    alone = read_arrays(own)
    for name in ("features", "logits_verb", "logits_noun", "status"):
        np.testing.assert_array_equal(group[name], alone[name], err_msg=name)
    listed = CliRunner().invoke(main, ["info", str(added)])
    assert "teacher +  audio-tiny (audio-tiny)" in listed.output


def test_audio_none_is_refused_and_a_video_without_sound_fails_its_clips(world, tmp_path):
    ds, _, _, _, _ = world
    res = CliRunner().invoke(main, [*cli_args(ds, tmp_path / "n.zarr"), "--teacher", "audio-tiny", "--audio", "none"])
    assert res.exit_code != 0 and "takes the clips' audio, and --audio none reads none" in res.output
    assert res.output.strip().splitlines()[-1].startswith("Error: --teacher audio-tiny takes")   # one line, no traceback
    with pytest.raises(ConfigError, match="--audio required"):
        extract(options(ds, tmp_path / "n2.zarr", teacher="audio-tiny", audio="none"))
    mute = synthesize(str(tmp_path / "mute"), videos=2, seed=0, size=(96, 64), duration_s=10.0, audio=False)
    summary = extract(options(mute, tmp_path / "m.zarr", teacher="audio-tiny"))
    assert summary.clips_failed == NUM_CLIPS and all("audio: " in f and "no audio track" in f for f in summary.failures)


def test_train_student_distils_an_ensemble_with_the_audio_teacher(world, tmp_path):
    _, _, _, added, _ = world
    out = tmp_path / "st"
    res = CliRunner().invoke(main, ["train-student", "--cache", str(added), "--variant", "visonly-distill",
                                    "--teachers", "mformer-tiny,audio-tiny", "--teacher-weights", "adaptive",
                                    "--feature-teacher", "none", "--epochs", "1", "--batch-size", "1",
                                    "--num-workers", "0", "--freeze-image-encoder", "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "w_audio-tiny=" in res.output and (out / "metrics.json").is_file()


# --- train-teacher, test-teacher, predict ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """audio-tiny fine-tuned for 2 epochs on a 3-video synthetic world with sound."""
    tmp = tmp_path_factory.mktemp("audio-train")
    synth = synthesize(str(tmp / "synth"), videos=3, seed=3, size=(64, 48), duration_s=12.0)
    out = tmp / "audio.pyth"
    args = ["train-teacher", "--teacher", "audio-tiny", "--dataset", "epic100", "--annotations", synth.train_csv,
            "--annotations", synth.validation_csv, "--root", synth.root, "--out", str(out), "--epochs", "2",
            "--batch-size", "4", "--train-clips", "2", "--eval-clips", "2", "--device", "cpu", "--no-progress",
            "--json", *TINY]
    result = CliRunner().invoke(main, args)
    return synth, out, result


def test_train_teacher_reads_the_audio_and_the_checkpoint_reproduces_validation(trained):
    synth, out, result = trained
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["spec"]["input"] == "audio" and summary["spec"]["decode_size"] == 0
    assert summary["clips"]["failed"] == 0 and summary["epochs"][1]["loss"] > 0
    model = create_teacher("audio-tiny", checkpoint=out)
    val = load_manifest("epic100", [synth.validation_csv], synth.root, eval_clips=2).clips
    data = audio_teacher_clips(val, 64 / 30, list(model.spec.heads))
    assert data.inputs.dtype == np.float16 and data.inputs.shape == (len(val), FREQ_BINS, M)
    _, logits = run_teacher(model, data.inputs, "cpu", 4)
    saved = np.load(summary["validation_logits"])
    assert list(saved["clip_ids"]) == data.clip_ids
    assert all(np.allclose(saved[f"logits_{h}"], logits[h], atol=1e-5) for h in model.spec.heads)


def test_test_teacher_scores_audio_views_and_refuses_spatial_ones(trained, tmp_path):
    synth, out, _ = trained
    args = ["test-teacher", "--teacher", "audio-tiny", "--checkpoint", str(out), "--dataset", "epic100",
            "--annotations", synth.validation_csv, "--root", synth.root, "--device", "cpu", "--no-progress"]
    res = CliRunner().invoke(main, [*args, "--views", "2x1", "--out", str(tmp_path / "t.json")])
    assert res.exit_code == 0, res.output
    assert "audio windows of the clips" in res.output and "2x1 (2 views)" in res.output
    metrics = json.loads((tmp_path / "t.json").read_text())["results"]
    assert set(metrics) == {"1x1", "2x1"} and metrics["1x1"]["top1_acc"] is not None
    res = CliRunner().invoke(main, [*args, "--views", "2x3"])
    assert res.exit_code != 0 and "no spatial views; use --views 2x1" in res.output


def test_predict_refuses_an_audio_teacher(tmp_path):
    from egocache.deploy.predict import teacher_model

    with pytest.raises(ConfigError, match="takes the clips' audio; score it with test-teacher"):
        teacher_model("audio-tiny", checkpoint=None, overrides={}, device=torch.device("cpu"), batch_size=2,
                      names={"verb": ["a", "b"]})
