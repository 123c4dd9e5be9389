"""`egocache predict` (deploy/predict.py, stream.py, truth.py, outputs.py) on a synthetic video."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from deploy_data import make_chain
from egocache.cache import CacheDataset
from egocache.cli import main
from egocache.deploy import StudentRunner
from egocache.deploy.predict import student_model, teacher_model
from egocache.deploy.stream import Window, run_pass, sliding_windows
from egocache.pipeline.frames import FramePlan
from egocache.pipeline.imu import read_imu
from egocache.pipeline.rgb_frames import FRAME_NAME


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    return make_chain(tmp_path_factory.mktemp("deploy-predict"), runs=("egodistill-n1", "visonly-n1"))


def predict(chain, out: Path, *extra: str, run: str = "egodistill-n1", video: str | None = None):
    """Invoke `egocache predict` on the validation video (its IMU unless extra gives --imu)."""
    imu = [] if "--imu" in extra or run.startswith("visonly") else chain.imu_args()
    return CliRunner().invoke(main, ["predict", video or str(chain.video.video_path), "--run", chain.runs[run],
                                     *imu, "--out", str(out), "--no-progress", "--device", "cpu", *extra])


def test_sliding_windows_cover_the_video_with_whole_clips():
    plan = FramePlan(16, 4, 224, (0.5,), 224, teacher_frames=False)
    side = sliding_windows(300, 30.0, plan, 64 / 30)
    assert [round(w.start_s * 30) for w in side] == [0, 64, 128, 192]   # 4 clips of 64 frames fit in 300
    assert all(abs(w.end_s - w.start_s - 64 / 30) < 1e-9 for w in side)
    dense = sliding_windows(300, 30.0, plan, 1.0)
    assert len(dense) == 8 and dense[-1].end_s <= 10.0 and [w.index for w in dense] == list(range(8))
    for w in dense:                                   # the clip planned at the centre starts at the window's start
        assert plan.native_frames(w.centre_s, 30.0)[0][0] == round(w.start_s * 30) + 32
    assert sliding_windows(50, 30.0, plan, 1.0) == []


def test_a_deployed_student_and_teacher_see_the_cache_pixels_and_imu(chain):
    """At the centres of the cached clips, predict's frames, IMU windows and teacher logits are the cache's."""
    ds = CacheDataset(chain.cache, split="validation", frames=1)
    b = ds[list(range(len(ds)))]
    g = zarr.open_group(chain.cache, mode="r")
    rows = b["row"].numpy()
    centres = (np.asarray(g["start_s"][:])[rows] + np.asarray(g["end_s"][:])[rows]) / 2
    windows = [Window(i, float(c), float(c) - 1.0, float(c) + 1.0) for i, c in enumerate(centres)]
    runner = StudentRunner.from_run(chain.runs["egodistill-n1"], device="cpu")
    model = student_model(runner)
    seen = []
    model.run = lambda frames, imu: seen.append((frames, imu)) or runner.logits(frames, imu)
    stream = read_imu("epic100", (chain.video.accl_csv, chain.video.gyro_csv))
    got = run_pass(str(chain.video.video_path), windows, model, imu_stream=stream, batch_size=4)
    assert got.errors == [""] * len(windows)
    np.testing.assert_array_equal(np.concatenate([f for f, _ in seen]), b["frames"].numpy())
    np.testing.assert_array_equal(np.concatenate([i for _, i in seen]), b["imu"].numpy())
    teacher = teacher_model("mformer-tiny", checkpoint=None, overrides={}, device=torch.device("cpu"),
                            batch_size=4, names=runner.inputs.heads)
    heavy = run_pass(str(chain.video.video_path), windows, teacher, batch_size=4)
    for h in ("verb", "noun"):
        np.testing.assert_allclose(heavy.logits[h], b["logits"][h].numpy(), atol=1e-5)


def test_predict_writes_predictions_timeline_and_segment_accuracy(chain, tmp_path):
    res = predict(chain, tmp_path, "--stride", "1", "--annotations", chain.dataset.validation_csv,
                  "--teacher", "mformer-tiny", "--top-k", "3")
    assert res.exit_code == 0, res.output
    assert "student (egodistill N=1 32px, torch" in res.output and "teacher (mformer-tiny" in res.output
    assert "per-segment top-1 (2 segments)" in res.output and "agreement" in res.output
    with open(tmp_path / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows)
    assert list(rows[0])[:6] == ["window", "start_s", "end_s", "status", "truth_verb", "truth_noun"]
    assert "verb_3_p" in rows[0] and "verb_4" not in rows[0]
    for r in rows:
        p = [float(r[f"verb_{k}_p"]) for k in (1, 2, 3)]
        assert p == sorted(p, reverse=True) and 0 < sum(p) <= 1 + 1e-6
    assert sum(bool(r["truth_verb"]) for r in rows) >= 2            # windows inside the two segments
    summary = json.loads((tmp_path / "predictions.json").read_text())
    assert summary["num_windows"] == 8 and summary["windows_failed"] == 0 and summary["stride_s"] == 1.0
    assert set(summary["seconds"]) == {"decode", "imu", "audio", "model", "wall"}
    assert summary["accuracy"]["segments"] == 2 and summary["accuracy"]["metrics"]["heads"]["verb"]["segments"] == 2
    assert summary["frames_decoded_per_window"] > 0
    teacher = json.loads((tmp_path / "teacher_predictions.json").read_text())
    assert teacher["model"] == "teacher" and len(teacher["windows"]) == 8
    assert set(teacher["agreement_with_student"]) == {"verb", "noun"}
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_windows_without_imu_or_frames_are_reported_and_the_rest_predicted(chain, tmp_path):
    short = []
    for src in (chain.video.accl_csv, chain.video.gyro_csv):          # IMU for the first 5 s only
        lines = Path(src).read_text().splitlines()
        keep = [lines[0]] + [ln for ln in lines[1:] if float(ln.split(",")[0]) < 5000]
        short.append(tmp_path / Path(src).name)
        short[-1].write_text("\n".join(keep) + "\n")
    res = predict(chain, tmp_path / "imu", "--stride", "1", "--imu", str(short[0]), "--imu", str(short[1]))
    assert res.exit_code == 0, res.output
    errors = [w["error"] for w in json.loads((tmp_path / "imu" / "predictions.json").read_text())["windows"]]
    assert errors[0] is None and errors[-1].startswith("imu: ") and "covers" in errors[-1]
    assert "failed: " in res.output and " imu" in res.output
    data = bytearray(Path(chain.video.video_path).read_bytes())
    lo, hi = int(0.4 * len(data)), int(0.7 * len(data))              # garbage inside the stream, index intact
    data[lo:hi] = np.random.default_rng(0).integers(0, 256, hi - lo, np.uint8).tobytes()
    broken = tmp_path / f"{Path(chain.video.video_path).stem}.mp4"
    broken.write_bytes(bytes(data))
    res = predict(chain, tmp_path / "decode", "--stride", "1", video=str(broken))
    assert res.exit_code == 0, res.output
    errors = [w["error"] for w in json.loads((tmp_path / "decode" / "predictions.json").read_text())["windows"]]
    assert errors[0] is None and any(e and e.startswith("decode: ") and "cannot be decoded" in e for e in errors)


def test_streamed_pass_never_decodes_a_frame_twice(chain):
    runner = StudentRunner.from_run(chain.runs["visonly-n1"], device="cpu")
    model = student_model(runner)
    windows = sliding_windows(300, 30.0, model.plan, 1.0)
    one = run_pass(str(chain.video.video_path), windows, model, batch_size=1)    # 8 chunks of 2 windows
    assert one.ok.all() and one.frames_spanned <= 300 and one.frames_decoded <= 300
    whole = run_pass(str(chain.video.video_path), windows, model, batch_size=16)
    np.testing.assert_allclose(one.logits["verb"], whole.logits["verb"], atol=1e-5)   # batch size: float order only


def test_predict_reads_rgb_frame_folders(chain, tmp_path):
    import simplejpeg

    from egocache.pipeline.decode import decode_clips

    folder = tmp_path / chain.video.video_id
    folder.mkdir()
    frames, _ = decode_clips(str(chain.video.video_path), [np.arange(300)], size=64)
    for i, f in enumerate(frames[0]):
        (folder / FRAME_NAME.format(i + 1)).write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(f), 95))
    res = predict(chain, tmp_path / "out", "--fps", "30", "--annotations", chain.dataset.validation_csv, "--json",
                  video=str(folder))
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    assert printed["files"]["csv"] == str(tmp_path / "out" / "predictions.csv")
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary == {**printed["models"]["student"], "windows": summary["windows"]}
    assert summary["num_windows"] == 4 and summary["windows_failed"] == 0 and summary["accuracy"]["segments"] == 2


@pytest.mark.parametrize("extra,run,code,message", [
    (["--imu-format", "csv"], "visonly-n1", 2, "--imu-format: no --imu file given"),
    (["--checkpoint", "{ds}/EPIC_100_train.csv"], "egodistill-n1", 2, "--checkpoint / --teacher-option"),
    (["--onnx", "{ds}/EPIC_100_train.csv"], "egodistill-n1", 2, "give exactly one student"),
    (["--annotations", "{ds}/EPIC_100_train.csv"], "egodistill-n1", 1, "no segment of video id 'P01_102'"),
    (["--stride", "0"], "egodistill-n1", 2, "Invalid value for '--stride'"),
])
def test_predict_refuses_bad_requests_in_one_line(chain, tmp_path, extra, run, code, message):
    res = predict(chain, tmp_path, *[e.format(ds=chain.dataset.root) for e in extra], run=run)
    assert res.exit_code == code and message in res.output, res.output
    assert not (tmp_path / "predictions.csv").exists()


def test_predict_needs_the_imu_of_an_imu_student_and_the_rate_of_a_folder(chain, tmp_path):
    res = CliRunner().invoke(main, ["predict", str(chain.video.video_path), "--run", chain.runs["egodistill-n1"],
                                    "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and "--imu: student variant egodistill reads IMU windows" in res.output
    res = predict(chain, tmp_path, run="visonly-n1", video=str(tmp_path))
    assert res.exit_code == 2 and "--fps: VIDEO" in res.output and "RGB-frame folder" in res.output
