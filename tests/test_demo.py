"""The demo chain end to end, shortened (`egocache demo --quick`): report files, step reuse, CLI wiring."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from egocache.cli import main
from egocache.demo import DemoConfig, run_demo, student_plan

REPORT_FILES = ("report.md", "report.json", "results.csv", "accuracy_vs_gflops.png", "per_class_gain_n1.png",
                "reliability.png")


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One run of `egocache demo --quick` (the whole chain, shortened; synth and the students in two
    processes); its folder and stdout."""
    out = tmp_path_factory.mktemp("demo") / "out"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out), "--threads", "1", "--jobs", "2"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_quick_demo_writes_the_report(quick_demo: tuple[Path, str]) -> None:
    out, output = quick_demo
    for name in REPORT_FILES:
        assert (out / "report" / name).stat().st_size > 0, name
    rows = {r["name"]: r for r in json.loads((out / "report" / "report.json").read_text())["models"]}
    assert {"egodistill-n1", "visimu-n1", "visonly-distill-n1"} <= set(rows)
    assert "| egodistill-n1 |" in output and "demo finished in" in output
    steps = sorted(p.stem for p in (out / "steps").glob("*.json"))
    assert steps == sorted(["synth", "train-teacher", "pretrain-image-encoder", "extract", "train-egodistill-n1",
                            "train-visimu-n1", "train-visonly-distill-n1", "benchmark"])


def test_the_students_start_from_the_pretrained_image_encoder(quick_demo: tuple[Path, str]) -> None:
    import torch

    from egocache.student.checkpoint import student_from_checkpoint

    out, _ = quick_demo
    weights = torch.load(out / "resnet18-synthetic-shapes.pth", weights_only=True)
    student, _ = student_from_checkpoint(out / "runs" / "visonly-distill-n1" / "last.pt")
    assert torch.equal(student.image_encoder.backbone.conv1.weight, weights["conv1.weight"])
    config = json.loads((out / "runs" / "visonly-distill-n1" / "config.json").read_text())
    assert config["image_weights"] == str(out / "resnet18-synthetic-shapes.pth")


def test_the_table_has_segment_bootstrap_intervals(quick_demo: tuple[Path, str]) -> None:
    from egocache.report.intervals import estimate
    from egocache.student.evaluate import read_segment_predictions

    out, _ = quick_demo
    rows = {r["name"]: r for r in json.loads((out / "report" / "report.json").read_text())["models"]}
    for row in rows.values():
        assert 0 <= row["accuracy"]["ece"] <= 1 and row["accuracy"]["nll"] > 0 and row["reliability"], row["name"]
        low, high = row["intervals"]["top1"]
        top1 = row["accuracy"]["top1"]
        assert low <= top1 <= high and (low < high or top1 in (0.0, 1.0)), row["name"]
    seg = read_segment_predictions(out / "runs" / "egodistill-n1" / "segments.npz")
    hits = (seg["verb_score"].argmax(1) == seg["verb_label"])[seg["verb_label"] >= 0]
    assert rows["egodistill-n1"]["accuracy"]["top1"] == pytest.approx(hits.mean())
    assert rows["egodistill-n1"]["intervals"]["top1"] == pytest.approx(list(estimate(hits).segments))
    assert "] |" in (out / "report" / "report.md").read_text()


def test_visimu_reuses_the_egodistill_pretrain_stage(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    assert (out / "runs" / "egodistill-n1" / "pretrain" / "last.pt").exists()
    assert not (out / "runs" / "visimu-n1" / "pretrain").exists()
    assert ("visimu-n1", "visimu", 1, "egodistill-n1") in student_plan(DemoConfig.quick("x"))


def test_rerun_reuses_every_step(quick_demo: tuple[Path, str]) -> None:
    out, _ = quick_demo
    lines: list[str] = []
    began = time.perf_counter()
    result = run_demo(DemoConfig.quick(str(out)), log=lines.append)
    assert time.perf_counter() - began < 15
    reused = [line for line in lines if "done before" in line]
    assert len(reused) == 8 and not any(": running" in line for line in lines), lines
    assert Path(result["report"]).read_text() == (out / "report" / "report.md").read_text()


def test_students_trained_in_this_process_equal_those_of_the_two_processes(quick_demo: tuple[Path, str],
                                                                          tmp_path: Path) -> None:
    """--jobs 1 trains the students in order in this process: the same predictions bit for bit, and visimu
    still waits for egodistill's pretrain stage."""
    import shutil

    import numpy as np

    out, output = quick_demo
    assert f"logs in {out / 'logs'}" in output and (out / "logs" / "egodistill-n1.log").stat().st_size > 0
    again = tmp_path / "out"
    shutil.copytree(out, again, ignore=shutil.ignore_patterns("runs", "report", "logs"))
    for marker in (again / "steps").glob("*.json"):
        if marker.stem.startswith("train-e") or marker.stem.startswith("train-v") or marker.stem == "benchmark":
            marker.unlink()
    lines: list[str] = []
    run_demo(DemoConfig.quick(str(again)), log=lines.append)
    assert not (again / "logs").exists()
    finished = [line.split()[3].rstrip(":") for line in lines if ": finished in" in line]
    assert finished.index("train-egodistill-n1") < finished.index("train-visimu-n1")
    for name in ("egodistill-n1", "visimu-n1", "visonly-distill-n1"):
        a, b = (np.load(d / "runs" / name / "segments.npz") for d in (out, again))
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), (name, key)


def test_a_failing_step_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "steps").mkdir(parents=True)
    (out / "data").write_text("a file where synth wants a folder")
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)])
    assert result.exit_code != 0
    assert "demo step 'synth' failed" in result.output


def test_demo_help_names_the_chain_and_quick() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for word in ("--quick", "--seed", "--out", "--threads", "re-running reuses finished steps"):
        assert word in result.output


def test_modality_probe_reads_a_demo_student(quick_demo: tuple[Path, str]) -> None:
    """benchmarks/modality_probe.py: one line per IMU mode for an IMU student, a one-line refusal otherwise."""
    import subprocess
    import sys

    out, _ = quick_demo
    res = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "modality_probe.py"),
                          str(out / "runs" / "visimu-n1"), str(out / "cache.zarr"), "--classes", "take"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["as-is", "zeroed", "shuffled"]
    assert all("predicted as {'take':" in line for line in lines)
    refused = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "modality_probe.py"),
                              str(out / "runs" / "visonly-distill-n1"), str(out / "cache.zarr")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "reads no IMU" in refused.stderr


def test_teacher_targets_reads_a_demo_cache(quick_demo: tuple[Path, str]) -> None:
    """benchmarks/teacher_targets.py: one line per split, its figures those of the cached logits."""
    import subprocess
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from teacher_targets import split_targets, target_stats

    out, _ = quick_demo
    res = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "teacher_targets.py"),
                          str(out / "cache.zarr"), "--tau", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["train", "validation"] and all("(tau 2)" in x for x in lines)
    logits, labels = split_targets(str(out / "cache.zarr"), "train", "verb")
    stats = target_stats(logits, labels, 2.0)
    assert f"teacher top-1 {100 * stats['top1']:.1f}" in lines[0]
    assert stats["top1"] == np.mean(logits.argmax(1) == labels) and 0 < stats["mean_top_p"] <= 1
    sure = target_stats(np.eye(3)[[0, 1, 2]] * 50, np.array([0, 1, 2]), 1.0)
    assert sure["top1"] == 1 and sure["label_ce"] < 1e-9 and sure["share_top_p_over_0.9"] == 1


def test_head_motion_splits_the_motion_pairs_by_head_motion_kind(quick_demo: tuple[Path, str]) -> None:
    """benchmarks/head_motion.py: one line per model; each cell counts that kind's motion-pair segments."""
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from head_motion import by_kind

    from egocache.report.hits import Hits

    out, _ = quick_demo
    res = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "head_motion.py"),
                          str(out / "data"), str(out / "runs"), str(out / "cache.zarr")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert [line.split()[0] for line in res.stdout.splitlines()] == ["teacher", "egodistill-n1", "visimu-n1",
                                                                     "visonly-distill-n1"]
    import numpy as np

    hits = Hits(np.array(["a", "b", "c", "d"]), np.array([[1], [0], [1], [1]]), np.array([0, 0, 1, 2]), {})
    cells = by_kind(hits, {"a": "weak", "b": "weak", "c": "informative", "d": "weak"}, {0, 1}, ["informative", "weak"])
    assert cells["weak"][:2] == (2, 0.5) and cells["informative"][:2] == (1, 1.0)
