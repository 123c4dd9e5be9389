"""`egocache benchmark --ablations` on a tiny cache, and the intervals every report prints."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cache_factory import make_test_cache
from egocache.cli import main
from egocache.report.ablations import TABLE1, RunSpec, plan
from egocache.report.intervals import difference, estimate, seed_interval
from egocache.student.resnet import ResNet18

SMALL = ["--student-option", "epochs=1", "--student-option", "pretrain_epochs=1", "--student-option",
         "batch_size=8", "--jobs", "1"]


# --- intervals ----------------------------------------------------------------------------------

def test_bootstrap_interval_has_the_binomial_width_and_is_reproducible():
    rng = np.random.default_rng(0)
    hits = rng.random((400, 1)) < 0.6
    e = estimate(hits)
    lo, hi = e.segments
    width = 2 * 1.96 * math.sqrt(e.mean * (1 - e.mean) / 400)
    assert lo < e.mean < hi and abs((hi - lo) - width) < 0.2 * width
    assert estimate(hits).segments == e.segments and e.seeds is None and e.n_seeds == 1


def test_seed_interval_is_the_t_interval():
    values = np.array([0.40, 0.44, 0.45])
    lo, hi = seed_interval(values)
    half = 4.302653 * values.std(ddof=1) / math.sqrt(3)       # t(0.975, 2)
    assert (lo, hi) == pytest.approx((values.mean() - half, values.mean() + half), abs=1e-6)
    assert seed_interval(values[:1]) is None


def test_a_paired_difference_is_narrower_than_the_spread_of_either_model():
    rng = np.random.default_rng(1)
    base = rng.random((300, 3)) < 0.5
    better = base | (rng.random((300, 3)) < 0.15)            # B is A plus some: strongly paired
    d = difference(better, base)
    assert d.mean > 0 and d.segments[0] > 0                     # the ordering holds at 95 %
    assert d.segments[1] - d.segments[0] < (estimate(base).segments[1] - estimate(base).segments[0])
    with pytest.raises(ValueError, match="same segments"):
        difference(base, base[:10])


# --- the plan ------------------------------------------------------------------------------------

def test_plan_shares_settings_between_tables_and_pretrains_between_variants():
    specs = plan(("fig3", "table1", "table4"), (1, 2, 4))
    names = [s.name for s in specs]
    assert len(names) == len(set(names)) == 4 * 3 + 7 + 4      # Table 1's "all" is Fig. 3's egodistill N=1 ...
    assert RunSpec("egodistill", 4).name in names               # ... and Table 4's uniform its N=4
    assert RunSpec("visimu", 1).pretrain_name == RunSpec("egodistill", 1).pretrain_name == "pretrain-n1-full"
    assert RunSpec("visonly", 1, pretrain=None).pretrain_name is None
    pretrains = {s.pretrain_name for s in specs} - {None}
    assert pretrains == {"pretrain-n1-full", "pretrain-n2-full", "pretrain-n4-full", "pretrain-n1-l1",
                         "pretrain-n1-nce", *(f"pretrain-n4-{s}-full" for s in ("random", "first", "last", "center"))}
    labels = [label for label, _, _ in TABLE1]
    assert labels[0].startswith("GT only") and labels[1] == "without KD" and labels[-1] == "EgoDistill (all)"


def test_fig3_takes_the_listentolook_curve_with_its_own_audio_pretrain():
    specs = plan(("fig3",), (1, 2), ("egodistill", "listentolook"))
    assert [s.name for s in specs] == ["egodistill-n1", "egodistill-n2", "listentolook-n1", "listentolook-n2"]
    ltl = specs[2]
    assert (ltl.pretrain_name, ltl.pretrain_variant) == ("pretrain-audio-n1-full", "listentolook")
    assert RunSpec("listentolook", 1, pretrain=None).name == "listentolook-n1-nopretrain"
    assert RunSpec("visimu", 1).pretrain_variant == "egodistill"


def test_fig3_with_listentolook_trains_and_reports_it_next_to_egodistill(tmp_path):
    audio = make_test_cache(tmp_path, name="audio.zarr", n_train=16, n_val_segments=4, eval_clips=1, audio=True)
    out = tmp_path / "abl"
    res = CliRunner().invoke(main, ["benchmark", "--ablations", "--cache", audio, "--out", str(out), "--seeds", "0",
                                    "--ablation-parts", "fig3", "--ablation-frames", "1",
                                    "--ablation-variants", "egodistill,listentolook", *SMALL])
    assert res.exit_code == 0, res.output
    rows = [r for r in csv.DictReader((out / "ablations.csv").open()) if r["table"] == "fig3"]
    assert [r["variant"] for r in rows] == ["egodistill", "listentolook"] and float(rows[1]["gflops"]) > 0
    assert (out / "runs" / "pretrain-audio-n1-full" / "seed0" / "pretrain" / "last.pt").is_file()
    assert "EgoDistill > ListenToLook (N=1)" in (out / "report.md").read_text()
    assert (out / "fig3_accuracy_vs_gflops.png").stat().st_size > 1000
    plain = make_test_cache(tmp_path, name="plain.zarr", n_train=8, n_val_segments=2)
    res = CliRunner().invoke(main, ["benchmark", "--ablations", "--cache", plain, "--out", str(tmp_path / "p"),
                                    "--ablation-parts", "fig3", "--ablation-variants", "listentolook", *SMALL])
    assert res.exit_code == 1 and "has no audio" in res.output and "Traceback" not in res.output


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return make_test_cache(tmp_path_factory.mktemp("abl"), n_train=24, n_val_segments=12, eval_clips=1,
                           frame_counts=(1, 2, 4), selections=("random", "first", "last", "center"))


@pytest.mark.slow
def test_ablations_write_every_table_with_intervals_and_a_rerun_reuses_the_runs(cache, tmp_path):
    out = tmp_path / "abl"
    torch.manual_seed(0)
    torch.save(ResNet18().state_dict(), tmp_path / "resnet18.pth")       # one encoder for every seed
    args = ["benchmark", "--ablations", "--cache", cache, "--out", str(out), "--seeds", "0,1",
            "--ablation-frames", "1,2", "--image-weights", str(tmp_path / "resnet18.pth"), *SMALL]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    report = (out / "report.md").read_text()
    for heading in ("Fig. 3", "Table 1", "Table 4", "orderings", "Fig. 4"):
        assert heading in report
    assert "| EgoDistill (all) | ✓ | ✓ | ✓ | ✓ | ✓ |" in report and "| without KD | – | ✓ | ✓ | ✓ | ✓ |" in report
    rows = list(csv.DictReader((out / "ablations.csv").open()))
    assert len([r for r in rows if r["table"] == "table1"]) == 8
    assert [r["label"] for r in rows if r["table"] == "table4"] == ["uniform", "random", "first", "last", "center"]
    assert {r["variant"] for r in rows if r["table"] == "fig3"} == {"egodistill", "visonly-distill", "visimu", "visonly"}
    for r in rows:
        assert r["seeds"] == ("1" if r["table"] == "teacher" else "2") and r["segments"] == "12"
        assert float(r["top1_segments_lo"]) <= float(r["top1"]) <= float(r["top1_segments_hi"])
        if r["table"] != "teacher":
            assert r["top1_seeds_lo"] and float(r["gflops"]) > 0
    data = json.loads((out / "ablations.json").read_text())
    verdicts = {o["ordering"]: o["verdict"] for o in data["orderings"]}
    assert "teacher > EgoDistill (N=1)" in verdicts and "uniform > first (N=4)" in verdicts
    assert set(verdicts.values()) <= {"holds", "reversed", "not resolved"}
    assert data["validation_segments"] == 12 and data["student_settings"]["epochs"] == 1
    for png in ("fig3_accuracy_vs_gflops.png", "fig4_per_class_gain_n1.png"):
        assert (out / png).stat().st_size > 1000
    # one store shared by every run and seed: 7 (N, selection) settings x 2 splits, + their 7 pretrains' train
    assert len(list((out / "features").glob("*.npy"))) == 7 * 2 + 7
    again = CliRunner().invoke(main, args)                      # every run finished: reuse, same report
    assert again.exit_code == 0 and (out / "report.md").read_text() == report


@pytest.mark.slow
def test_ablations_in_two_processes_give_the_one_process_numbers(cache, tmp_path):
    args = ["benchmark", "--ablations", "--cache", cache, "--seeds", "0", "--ablation-parts", "table4", *SMALL]
    results = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        res = CliRunner().invoke(main, [*args, "--out", str(out), "--jobs", str(jobs)])
        assert res.exit_code == 0, res.output
        results[jobs] = [(r["label"], r["top1"]) for r in csv.DictReader((out / "ablations.csv").open())]
    assert results[1] == results[2]


def test_bad_ablation_requests_are_one_line_errors(cache, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["benchmark", "--ablations", "--paper-configs", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--ablations and --paper-configs" in res.output
    res = runner.invoke(main, ["benchmark", "--ablations", "--cache", cache, "--ablation-parts", "table9",
                               "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "table9" in res.output
    old = make_test_cache(tmp_path, name="old.zarr", n_train=8, n_val_segments=2)     # uniform frames only
    res = runner.invoke(main, ["benchmark", "--ablations", "--cache", old, "--ablation-parts", "table4",
                               "--out", str(tmp_path / "z"), *SMALL])
    assert res.exit_code == 1 and "the ablations need stored frames" in res.output and "Traceback" not in res.output
