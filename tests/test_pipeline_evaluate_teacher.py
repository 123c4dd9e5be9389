"""`egocache test-teacher` (pipeline/evaluate_teacher.py): the single centre clip equals extraction's cached
clip, the multi-view test takes T clips x 3 crops per segment at the right places, the CLI, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import CheckpointError, ConfigError, EgocacheError
from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.evaluate_teacher import evaluate_teacher, view_centres
from egocache.pipeline.extract import extract
from egocache.pipeline.options import TeacherTestOptions, parse_views
from egocache.pipeline.sampling import clip_seconds, segment_clip_centres
from egocache.pipeline.teachers import create_teacher, save_teacher_checkpoint
from egocache.report.benchmark import teacher_metrics
from extract_data import annotations, make_dataset, options, read_arrays

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The extraction tests' tiny synthetic dataset (2 videos, 2 validation segments)."""
    return make_dataset(tmp_path_factory.mktemp("tt") / "ds")


def teacher_test_options(dataset, **kw: object) -> TeacherTestOptions:
    """test-teacher options on the tiny dataset, as extract_data.options extracts it (mformer-tiny, CPU)."""
    base: dict[str, object] = dict(teacher="mformer-tiny", dataset="epic100", annotations=annotations(dataset),
                                   root=dataset.root, frame_size=32, batch_size=4, device="cpu", progress=False)
    return TeacherTestOptions(**{**base, **kw})  # type: ignore[arg-type]


def cli_args(dataset, *extra: str) -> list[str]:
    """`egocache test-teacher` arguments equal to teacher_test_options(dataset)."""
    args = ["test-teacher", "--teacher", "mformer-tiny", "--dataset", "epic100", "--root", dataset.root,
            "--frame-size", "32", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    for a in annotations(dataset):
        args += ["--annotations", a]
    return [*args, *extra]


# --- the views of a segment ---------------------------------------------------------------------
def test_temporal_views_spread_over_the_segment(dataset):
    manifest = load_manifest("epic100", list(annotations(dataset)), dataset.root, eval_clips=1)
    clip = next(c for c in manifest.clips if c.split == "validation")
    assert view_centres(clip, 1) == [clip.centre_s]                 # 1x1: the segment's centre clip
    half = clip_seconds() / 2
    long = dataclasses.replace(clip, segment_start_s=10.0, segment_stop_s=20.0)
    centres = view_centres(long, 10)                                # the first and last clip just fit
    assert centres == segment_clip_centres(10.0, 20.0, 10)
    assert centres[0] == pytest.approx(10.0 + half) and centres[-1] == pytest.approx(20.0 - half)
    assert np.allclose(np.diff(centres), (10.0 - 2 * half) / 9)
    short = dataclasses.replace(clip, segment_start_s=10.0, segment_stop_s=11.0)
    assert view_centres(short, 10) == [10.5] * 10                   # shorter than a clip: all at its centre


@pytest.mark.parametrize("text, want", [("10x3", (10, 3)), ("1x1", (1, 1)), ("4X1", (4, 1))])
def test_parse_views(text, want):
    assert parse_views(text) == want


@pytest.mark.parametrize("text", ["10x2", "0x3", "x3", "10", "tenx3", "10x3x1"])
def test_bad_views_are_config_errors_naming_the_option(text):
    with pytest.raises(ConfigError, match="^--views: "):
        parse_views(text)


# --- against extraction ---------------------------------------------------------------------------
def validation_logits(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """{clip_id: {head: logits}} of a cache's validation rows."""
    arrays = read_arrays(cache)
    rows = np.flatnonzero(arrays["split"] == "validation")
    return {str(arrays["clip_id"][r]): {h: arrays[f"logits_{h}"][r] for h in ("verb", "noun")} for r in rows}


def test_centre_clip_equals_what_extraction_caches_with_one_eval_clip(dataset, tmp_path):
    cache = tmp_path / "one.zarr"
    extract(options(dataset, cache, eval_clips=1))
    result = evaluate_teacher(teacher_test_options(dataset, views="1x1"), log=lambda line: None)
    assert list(result.predictions) == ["1x1"] and result.failures == []
    cached = validation_logits(cache)
    assert sorted(f"{s}/0" for s in result.segment_ids) == sorted(cached)
    for i, seg in enumerate(result.segment_ids):
        for head in ("verb", "noun"):
            np.testing.assert_allclose(result.predictions["1x1"].logits[head][i], cached[f"{seg}/0"][head],
                                       rtol=0, atol=1e-5)
    extraction = teacher_metrics(str(cache), result.motion_pair_verbs)
    got = result.metrics["1x1"]
    assert got["top1_acc"] == extraction["top1_acc"]
    assert got["motion_pairs_top1_acc"] == extraction["motion_pairs_top1_acc"]
    assert got["heads"]["noun"]["top1_acc"] == extraction["heads"]["noun"]["top1_acc"]


def test_multi_view_runs_t_clips_by_three_crops_whose_centre_crops_are_the_cached_clips(dataset, tmp_path):
    cache = tmp_path / "three.zarr"
    extract(options(dataset, cache, eval_clips=3))               # centres of 3 clips over each segment
    result = evaluate_teacher(teacher_test_options(dataset, views="3x3"), log=lambda line: None)
    assert list(result.predictions) == ["1x1", "3x3"]
    pred, n = result.predictions["3x3"], len(result.segment_ids)
    assert n == 2 and np.array_equal(np.bincount(pred.segments), [9] * n)
    cached = validation_logits(cache)
    for head in ("verb", "noun"):
        views = pred.logits[head].reshape(n, 3, 3, -1)             # (segment, clip, crop, classes)
        for i, seg in enumerate(result.segment_ids):
            for k in range(3):
                np.testing.assert_allclose(views[i, k, 1], cached[f"{seg}/{k}"][head], rtol=0, atol=1e-5)
            assert not np.allclose(views[i, 0, 0], views[i, 0, 1])   # the side crops are other pixels
            # the centre clip is the middle one of three evenly spread clips
            np.testing.assert_allclose(result.predictions["1x1"].logits[head][i], views[i, 1, 1], atol=1e-5)


# --- the command ------------------------------------------------------------------------------------
def test_cli_json_and_out_file_with_the_default_10x3(dataset, tmp_path):
    out = tmp_path / "report" / "test.json"
    result = CliRunner().invoke(main, cli_args(dataset, "--json", "--out", str(out)))
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert json.loads(out.read_text()) == got
    assert (got["views"], got["temporal_views"], got["spatial_crops"], got["split"]) == ("10x3", 10, 3, "validation")
    assert got["segments"] == 2 and got["segments_failed"] == 0 and got["decode_size"] == 64
    assert {k: v["views_per_segment"] for k, v in got["results"].items()} == {"1x1": 1, "10x3": 30}
    for setting in got["results"].values():
        assert setting["heads"]["verb"]["segments"] == 2 and setting["heads"]["verb"]["clips"] == \
            2 * setting["views_per_segment"]
        assert "motion_pairs_top1_acc" in setting
    assert got["motion_pair_verbs"] == ["take", "put", "open", "close", "turn-on", "turn-off"]


def test_cli_table_with_a_checkpoint(dataset, tmp_path):
    names = load_manifest("epic100", list(annotations(dataset)), dataset.root).class_names
    ckpt = tmp_path / "teacher.pyth"
    save_teacher_checkpoint(create_teacher("mformer-tiny", heads={h: len(v) for h, v in names.items()}), ckpt,
                            cfg={}, epoch=0)
    result = CliRunner().invoke(main, cli_args(dataset, "--checkpoint", str(ckpt), "--views", "2x3"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "on 2 validation segments of epic100" in lines[0] and str(ckpt) in lines[0]
    assert "centre clip (1x1)" in lines[1] and "2x3 (6 views)" in lines[1]
    assert [ln.split()[0] for ln in lines[2:5]] == ["verb", "noun", "motion-pair"]


@pytest.mark.parametrize("bad", ["10x2", "0x1", "ten"])
def test_cli_bad_views_is_a_one_line_usage_error(dataset, bad):
    result = CliRunner().invoke(main, cli_args(dataset, "--views", bad))
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(errors) == 1 and errors[0].startswith("Error: --views: expected TxS") and bad in errors[0]


def test_cli_missing_checkpoint_is_a_one_line_error(dataset, tmp_path):
    missing = tmp_path / "absent.pyth"
    result = CliRunner().invoke(main, cli_args(dataset, "--checkpoint", str(missing)))
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error")]
    assert result.exit_code == 2 and len(errors) == 1 and "--checkpoint" in errors[0] and "does not exist" in errors[0]
    with pytest.raises(CheckpointError, match="absent.pyth: no such teacher checkpoint file"):
        evaluate_teacher(teacher_test_options(dataset, checkpoint=str(missing)), log=lambda line: None)


def test_wrong_heads_and_an_empty_split_are_one_line_errors(dataset, tmp_path):
    ckpt = tmp_path / "epic-heads.pyth"
    save_teacher_checkpoint(create_teacher("mformer-tiny"), ckpt, cfg={}, epoch=0)   # EPIC's 97/300 classes
    result = CliRunner().invoke(main, cli_args(dataset, "--checkpoint", str(ckpt)))
    assert result.exit_code == 1 and "do not give the dataset's" in result.output
    assert len([ln for ln in result.output.splitlines() if ln.startswith("Error")]) == 1
    with pytest.raises(ConfigError, match=r"^--split test: no segments .* \(splits: train, validation\)"):
        evaluate_teacher(teacher_test_options(dataset, split="test"), log=lambda line: None)
    with pytest.raises(EgocacheError, match="--eval-clips"):
        teacher_test_options(dataset, eval_clips=3)
