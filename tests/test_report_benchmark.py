"""The benchmark report: paper configurations, tables, CSV/JSON and plots written from result rows."""

import csv
import json

import pytest
from click.testing import CliRunner

from egocache.report.results import ModelResult, markdown_table, write_csv, write_json
from egocache.report.benchmark import per_class_gain, _write
from egocache.cli import main


def _rows() -> list[ModelResult]:
    return [
        ModelResult("mformer-tiny", "teacher", None, 10.0, 5.0, 2.0, {"top1": 0.9, "motion_pairs_top1": 0.95},
                    {"take": 1.0, "put": 0.8}),
        ModelResult("egodistill-n1", "egodistill", 1, 0.05, 1.0, 0.1, {"top1": 0.7, "motion_pairs_top1": 0.8},
                    {"take": 0.9, "put": 0.6}),
        ModelResult("visonly-distill-n1", "visonly-distill", 1, 0.04, 0.9, 0.08,
                    {"top1": 0.5, "motion_pairs_top1": 0.5}, {"take": 0.5, "put": 0.7}),
    ]


def test_table_ratio_and_video_time() -> None:
    table = markdown_table(_rows(), clip_seconds=2.0)
    lines = table.splitlines()
    assert len(lines) == 5
    # 10 GFLOPs / 0.05 GFLOPs = 200x; 2 ms per 2-s clip -> 1500 clips in 50 min -> 3.0 s
    assert "| 200.0 |" in lines[3]
    assert "| 3.0 |" in lines[2] and "| 90.0 | 95.0 |" in lines[2]


def test_intervals_go_into_the_table_and_the_csv(tmp_path) -> None:
    rows = _rows()
    rows[1].intervals = {"top1": (0.61, 0.79), "motion_pairs_top1": (0.7, 0.9)}
    lines = markdown_table(rows, clip_seconds=2.0).splitlines()
    assert "| 70.0 [61.0, 79.0] | 80.0 [70.0, 90.0] |" in lines[3] and "| 90.0 | 95.0 |" in lines[2]
    with open(write_csv(rows, tmp_path / "r.csv")) as fh:
        table = list(csv.DictReader(fh))
    assert float(table[1]["top1_low"]) == pytest.approx(0.61) and float(table[1]["motion_pairs_top1_high"]) == 0.9
    assert table[0]["top1_low"] == "" and float(table[0]["top1"]) == pytest.approx(0.9)


def test_per_class_gain_is_egodistill_minus_visonly_distill() -> None:
    assert per_class_gain(_rows(), 1) == pytest.approx({"take": 0.4, "put": -0.1})
    assert per_class_gain(_rows(), 4) == {}


def test_report_files(tmp_path) -> None:
    report = _write(_rows(), tmp_path, title="t", notes=["n"], facts={"device": "cpu"})
    for key in ("md", "json", "csv", "accuracy_vs_gflops", "gain_n1"):
        assert report.files[key].exists() and report.files[key].stat().st_size > 0
    assert report.files["accuracy_vs_gflops"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.files["json"].read_text())
    assert data["device"] == "cpu" and [m["variant"] for m in data["models"]] == ["teacher", "egodistill",
                                                                                   "visonly-distill"]
    with open(report.files["csv"]) as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["gflops"]) == pytest.approx(0.05) and float(rows[1]["top1"]) == pytest.approx(0.7)
    md = report.files["md"].read_text()
    assert "![accuracy_vs_gflops](accuracy_vs_gflops.png)" in md


def test_write_csv_json_roundtrip(tmp_path) -> None:
    write_csv(_rows(), tmp_path / "r.csv")
    write_json(_rows(), tmp_path / "r.json", batch=32)
    assert json.loads((tmp_path / "r.json").read_text())["batch"] == 32
    assert (tmp_path / "r.csv").read_text().splitlines()[0].startswith("name,variant,frames,gflops")


def test_paper_configs_match_table3(tmp_path) -> None:
    result = CliRunner().invoke(main, ["benchmark", "--paper-configs", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "report.json").read_text())
    by_name = {m["name"]: m for m in data["models"]}
    teacher, n1 = by_name["mformer"], by_name["egodistill-n1"]
    assert teacher["gflops"] == pytest.approx(369.5, rel=0.01)      # paper: 369.51
    assert teacher["params_m"] == pytest.approx(109.1, rel=0.01)    # paper: 108.91
    assert n1["gflops"] == pytest.approx(1.86, rel=0.03)            # paper: 1.91 (ResNet-18 at 224^2: 1.82)
    assert 180 < teacher["gflops"] / n1["gflops"] < 210             # the paper's "200x fewer GFLOPs"
    assert by_name["egodistill-n4"]["gflops"] > by_name["egodistill-n2"]["gflops"] > n1["gflops"]
    assert "mformer" in result.output and "egodistill-n4" in result.output
    ltl = by_name["listentolook-n1"]     # the audio CNN over 201x211 (0.043 GFLOPs) in place of the IMU's (0.047)
    assert ltl["variant"] == "listentolook" and abs(ltl["gflops"] - n1["gflops"]) < 0.01
    assert [m["name"] for m in data["models"]].index("listentolook-n1") == 4    # after egodistill


def test_benchmark_needs_cache_and_runs() -> None:
    result = CliRunner().invoke(main, ["benchmark", "--out", "x"])
    assert result.exit_code == 2 and "--paper-configs" in result.output
