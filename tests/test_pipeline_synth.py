"""The synthetic dataset: layout and schemas, same bytes for the same seed, an IMU that is the rendered
camera's motion, and labels that mean what they claim (one frame cannot tell the verbs of a motion pair
apart while the IMU can; appearance verbs show in one frame)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re

import av
import decord
import numpy as np
import pytest
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import ConfigError, EgocacheError
from egocache.synth import (APPEARANCE_VERBS, EGO4D_IMU_COLUMNS, EPIC_COLUMNS, MOTION_PAIRS, NOUNS,
                                     VERBS, SynthSummary, epic_timestamp, synthesize)
from egocache.synth.files import link
from egocache.synth.motion import (GRAVITY, HeadMotion, HermiteTrack, drifting_bias, imu_times,
                                            random_sines)
from egocache.synth.generate import HEAD_SHARES
from egocache.synth.render import HFOV_DEG, SKIN

SMALL = dict(videos=2, seed=11, size=(96, 64), duration_s=12.0)                       # 30 fps, both layouts
STATS = dict(videos=12, seed=5, size=(96, 64), fps=10.0, duration_s=48.0, imu_layout="epic100")
FOCAL_PX = 48 / math.tan(math.radians(HFOV_DEG / 2))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[SynthSummary, SynthSummary]:
    """The same small dataset written twice with the same seed."""
    return tuple(synthesize(str(tmp_path_factory.mktemp("small") / "ds"), **SMALL) for _ in range(2))


@pytest.fixture(scope="module")
def stats(tmp_path_factory) -> SynthSummary:
    """A dataset with enough segments (about 35 per motion pair) to measure what one frame tells; 10 fps
    keeps it quick (the statistics read single frames and the IMU)."""
    return synthesize(str(tmp_path_factory.mktemp("stats") / "ds"), **STATS)


def seconds(stamp: str) -> float:
    """Seconds of an EPIC HH:MM:SS.ff timestamp."""
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def rows_of(ds: SynthSummary) -> list[dict[str, str]]:
    """Every annotation row of both splits, with its split."""
    rows = []
    for split, path in (("train", ds.train_csv), ("validation", ds.validation_csv)):
        with open(path, newline="") as f:
            rows += [dict(r, split=split) for r in csv.DictReader(f)]
    return rows


def table(path: str) -> np.ndarray:
    """A numeric CSV (one header line) as an array."""
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def file_hashes(root: str) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            path = os.path.join(d, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def segment_frame(ds: SynthSummary, row: dict[str, str], offset_s: float,
                  readers: dict[str, decord.VideoReader]) -> np.ndarray:
    """The decoded frame (h, w, 3) float64 in 0..255 at the segment's centre + offset (readers reused per video)."""
    vr = readers.setdefault(row["video_id"], decord.VideoReader(
        os.path.join(ds.root, row["participant_id"], "videos", f"{row['video_id']}.MP4")))
    centre = (seconds(row["start_timestamp"]) + seconds(row["stop_timestamp"])) / 2 + offset_s
    return vr[int(round(centre * vr.get_avg_fps()))].asnumpy().astype(np.float64)


def centre_frames(ds: SynthSummary, rows: list[dict[str, str]], offset_s: float = 0.0) -> np.ndarray:
    """Frames at segment centre + offset, decoded with decord, as 8x12x3 block means (n, 288) in [0, 1]."""
    readers: dict[str, decord.VideoReader] = {}
    feats = []
    for r in rows:
        img = segment_frame(ds, r, offset_s, readers) / 255
        h, w, _ = img.shape
        feats.append(img.reshape(8, h // 8, 12, w // 12, 3).mean((1, 3)).ravel())
    return np.stack(feats)


def mean_gyro(ds: SynthSummary, rows: list[dict[str, str]]) -> np.ndarray:
    """Mean EPIC gyroscope reading (rad/s) over each segment (n, 3)."""
    out = []
    for r in rows:
        g = table(os.path.join(ds.root, r["participant_id"], "meta_data", f"{r['video_id']}-gyro.csv"))
        t = g[:, 0] / 1000
        out.append(g[(t >= seconds(r["start_timestamp"])) & (t <= seconds(r["stop_timestamp"])), 1:].mean(0))
    return np.stack(out)


def nearest_centroid_predictions(x: np.ndarray, y: list[str], rows: list[dict[str, str]], folds: int = 4,
                                 fit: np.ndarray | None = None) -> list[str]:
    """Predictions of a nearest-centroid classifier, cross-validated over folds of whole videos; the
    centroids come from the training folds' rows where `fit` is true (all rows by default)."""
    y_arr = np.array(y)
    fit = np.ones(len(y_arr), dtype=bool) if fit is None else fit
    fold = np.array([sorted({r["video_id"] for r in rows}).index(r["video_id"]) % folds for r in rows])
    pred = np.empty_like(y_arr)
    for k in range(folds):
        test, train = fold == k, (fold != k) & fit
        classes = np.unique(y_arr[train])
        cents = np.stack([x[train][y_arr[train] == c].mean(0) for c in classes])
        pred[test] = classes[((x[test][:, None] - cents[None]) ** 2).sum(-1).argmin(1)]
    return pred.tolist()


def nearest_centroid_cv(x: np.ndarray, y: list[str], rows: list[dict[str, str]], folds: int = 4) -> float:
    """Accuracy of a nearest-centroid classifier, cross-validated over folds of whole videos."""
    return float(np.mean(np.array(nearest_centroid_predictions(x, y, rows, folds)) == np.array(y)))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors in degrees."""
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0)))


def image_shift(a: np.ndarray, b: np.ndarray, moving: bool = False) -> tuple[int, int]:
    """(dy, dx) in pixels by which the content of grey image `a` moved to give `b` (phase correlation);
    with `moving`, the shift of the content that moved at all (ignoring shifts of at most 1 pixel, such as
    the object the head keeps in view)."""
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    cross = np.fft.fft2(b * win) * np.conj(np.fft.fft2(a * win))
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    if moving:
        corr[np.ix_([-1, 0, 1], [-1, 0, 1])] = -np.inf
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    h, w = corr.shape
    return (dy + h // 2) % h - h // 2, (dx + w // 2) % w - w // 2


# --- layout, schema, determinism ------------------------------------------------------------------
def test_both_layouts_are_written_and_share_each_video(small):
    ds = small[0]
    assert [v.video_id for v in ds.videos] == ["P01_101", "P01_102"]
    for v in ds.videos:
        assert v.epic_video == os.path.join(ds.root, "P01", "videos", f"{v.video_id}.MP4") == v.video_path
        assert v.ego4d_video == os.path.join(ds.root, "full_scale", f"{v.video_id}.mp4")
        assert os.path.samefile(v.epic_video, v.ego4d_video)                 # linked, not written twice
        assert v.accl_csv.endswith(f"P01/meta_data/{v.video_id}-accl.csv")
        assert v.gyro_csv.endswith(f"P01/meta_data/{v.video_id}-gyro.csv")
        assert v.ego4d_imu_csv == os.path.join(ds.root, "imu", f"{v.video_id}.csv")
        with open(v.accl_csv) as f:
            assert f.readline().strip() == "Milliseconds,AcclX,AcclY,AcclZ"
        with open(v.gyro_csv) as f:
            assert f.readline().strip() == "Milliseconds,GyroX,GyroY,GyroZ"
        with open(v.ego4d_imu_csv) as f:
            assert f.readline().strip() == ",".join(EGO4D_IMU_COLUMNS)
    assert [v.split for v in ds.videos] == ["train", "validation"]


@pytest.mark.parametrize("layout", ["epic100", "ego4d"])
def test_one_layout_only(tmp_path, layout):
    ds = synthesize(str(tmp_path / "ds"), videos=1, seed=1, size=(32, 24), duration_s=8.0, imu_layout=layout)
    v = ds.videos[0]
    assert os.path.isfile(v.video_path)
    if layout == "epic100":
        assert v.ego4d_video is None and v.ego4d_imu_csv is None
        assert not os.path.exists(tmp_path / "ds" / "imu")
        assert os.path.isfile(v.accl_csv) and os.path.isfile(v.gyro_csv) and v.video_path == v.epic_video
    else:
        assert v.epic_video is None and v.accl_csv is None and not os.path.exists(tmp_path / "ds" / "P01")
        assert os.path.isfile(v.ego4d_imu_csv) and v.video_path == v.ego4d_video


def test_annotations_follow_the_epic100_schema(small):
    ds = small[0]
    with open(ds.train_csv, newline="") as f:
        assert tuple(next(csv.reader(f))) == EPIC_COLUMNS
    rows = rows_of(ds)
    assert len(rows) == sum(v.num_segments for v in ds.videos) >= 2
    with open(ds.verb_classes_csv, newline="") as f:
        verbs = list(csv.DictReader(f))
    with open(ds.noun_classes_csv, newline="") as f:
        nouns = list(csv.DictReader(f))
    assert list(verbs[0]) == ["id", "key", "instances", "category"] == list(nouns[0])
    assert [v["key"] for v in verbs] == list(VERBS) and [n["key"] for n in nouns] == list(NOUNS)
    assert verbs[0]["instances"] == "['take']"
    for r in rows:
        assert re.fullmatch(r"P\d\d_1\d\d_\d+", r["narration_id"])
        assert r["narration_id"].startswith(r["video_id"] + "_")
        assert r["video_id"].startswith(r["participant_id"] + "_")
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d\d", r["narration_timestamp"])
        start, stop = seconds(r["start_timestamp"]), seconds(r["stop_timestamp"])
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d", r["start_timestamp"]) and 2.0 <= stop - start <= 4.0
        assert (int(r["start_frame"]), int(r["stop_frame"])) == (round(start * 30), round(stop * 30))
        assert r["narration"] == f"{r['verb']} {r['noun']}"
        assert verbs[int(r["verb_class"])]["key"] == r["verb"]
        assert nouns[int(r["noun_class"])]["key"] == r["noun"]
        assert r["all_nouns"] == f"['{r['noun']}']" and r["all_noun_classes"] == f"[{r['noun_class']}]"
    for vid in {r["video_id"] for r in rows}:                  # idle stretches between segments
        spans = sorted((seconds(r["start_timestamp"]), seconds(r["stop_timestamp"])) for r in rows
                       if r["video_id"] == vid)
        assert spans[0][0] >= 1.2 and spans[-1][1] <= SMALL["duration_s"] - 1.2
        assert all(b[0] - a[1] >= 0.8 for a, b in zip(spans, spans[1:]))
    assert epic_timestamp(3725.089, 3) == "01:02:05.089" and epic_timestamp(0.14) == "00:00:00.14"


def test_synth_json_describes_seed_classes_and_motion_pairs(small):
    ds = small[0]
    with open(ds.meta_json) as f:
        meta = json.load(f)
    assert meta["generator"] == "egocache.synth" and meta["seed"] == SMALL["seed"]
    assert meta["motion_pairs"] == [list(p) for p in MOTION_PAIRS]
    assert meta["appearance_verbs"] == list(APPEARANCE_VERBS)
    assert [v["key"] for v in meta["verbs"]] == list(VERBS)
    assert [n["key"] for n in meta["nouns"]] == list(NOUNS)
    axes = {v["key"]: (v["motion_axis"], v["motion_sign"]) for v in meta["verbs"]}
    for a, b in MOTION_PAIRS:                      # the two verbs of a pair: one axis, opposite directions
        assert axes[a][0] == axes[b][0] is not None and axes[a][1] == -axes[b][1] != 0
    assert all(axes[v] == (None, 0) for v in APPEARANCE_VERBS)
    assert [v["video_id"] for v in meta["videos"]] == [v.video_id for v in ds.videos]


def test_same_seed_same_bytes_and_another_seed_differs(small, tmp_path):
    first, second = (file_hashes(ds.root) for ds in small)
    assert first == second and len(first) == 16
    other = synthesize(str(tmp_path / "other"), **dict(SMALL, seed=SMALL["seed"] + 1))
    assert file_hashes(other.root)["P01/videos/P01_101.MP4"] != first["P01/videos/P01_101.MP4"]


def test_two_worker_processes_write_the_same_bytes(tmp_path):
    """--workers 2 renders the kitchens (two videos each, the last one alone here) in two processes."""
    args = dict(SMALL, videos=3, duration_s=8.0, rgb_frames=True)
    one = synthesize(str(tmp_path / "one"), **args)
    two = synthesize(str(tmp_path / "two"), workers=2, **args)
    assert file_hashes(one.root) == file_hashes(two.root)
    assert [v.video_id for v in two.videos] == ["P01_101", "P01_102", "P02_101"]
    with pytest.raises(ConfigError, match="--workers"):
        synthesize(str(tmp_path / "none"), workers=0, **args)


def test_videos_are_h264_at_the_asked_rate_and_size(small):
    for v in small[0].videos:
        vr = decord.VideoReader(v.video_path)
        assert (len(vr), vr.get_avg_fps(), vr[0].shape) == (v.num_frames, 30.0, (64, 96, 3))
        assert v.num_frames == 360
        with av.open(v.video_path) as container:
            assert container.streams.video[0].codec_context.name == "h264"


def test_link_falls_back_to_a_relative_symlink(tmp_path, monkeypatch):
    src = tmp_path / "P01" / "videos" / "v.MP4"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"video")

    def refuse(a: str, b: str) -> None:
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", refuse)
    link(str(src), str(tmp_path / "full_scale" / "v.mp4"))
    assert os.readlink(tmp_path / "full_scale" / "v.mp4") == "../P01/videos/v.MP4"
    assert (tmp_path / "full_scale" / "v.mp4").read_bytes() == b"video"


def test_refuses_a_non_empty_folder_and_bad_arguments(small, tmp_path):
    with pytest.raises(EgocacheError, match="not an empty folder"):
        synthesize(small[0].root, videos=1)
    bad_args = (dict(size=(95, 64)), dict(duration_s=5.0), dict(videos=0), dict(fps=0.0),
                dict(imu_layout="gopro"))
    for bad in bad_args:
        with pytest.raises(ValueError):
            synthesize(str(tmp_path / "x"), **bad)
    assert not os.path.exists(tmp_path / "x")


# --- IMU ------------------------------------------------------------------------------------------
def test_imu_rate_jitter_units_and_coverage(small):
    for v in small[0].videos:
        accl, gyro, ego = table(v.accl_csv), table(v.gyro_csv), table(v.ego4d_imu_csv)
        dt = np.diff(ego[:, 1])
        assert dt.min() > 0 and 4.9 < np.median(dt) < 5.1 and dt.std() > 0.1              # ~200 Hz, jittered
        for t in (accl[:, 0], gyro[:, 0], ego[:, 1]):
            assert t[0] < 5 and t[-1] > v.duration_s * 1000 - 1000 and np.all(np.diff(t) > 0)
        for t in (accl[:, 0], gyro[:, 0]):   # gpmd2csv: samples spread evenly inside each 1-s payload
            payload = np.floor(t / 1000.0)
            for p in np.unique(payload)[:3]:
                steps = np.diff(t[payload == p])
                assert np.allclose(steps, steps[0], atol=2e-3) and t[payload == p][0] == p * 1000.0
        assert abs(np.median(np.linalg.norm(accl[:, 1:], axis=1)) - GRAVITY) < 0.5     # EPIC: m/s^2 (GPMF)
        assert abs(np.median(np.linalg.norm(ego[:, 6:9], axis=1)) - GRAVITY) < 0.5     # Ego4D: m/s^2
        assert np.array_equal(ego[:, 1], ego[:, 2]) and not ego[:, 0].any()
        # both layouts measure the same motion: gyro agrees within noise, far below the signal
        other = np.stack([np.interp(gyro[:, 0], ego[:, 1], ego[:, 3 + k]) for k in range(3)], axis=1)
        assert np.abs(other - gyro[:, 1:]).mean() < 0.25 * np.abs(gyro[:, 1:]).mean()


def test_gyro_is_the_exact_angular_velocity_and_accl_the_specific_force():
    rng = np.random.default_rng(0)
    knots = np.array([0.0, 1.0, 2.5, 4.0])

    def track() -> HermiteTrack:
        return HermiteTrack(knots, rng.normal(size=4), rng.normal(size=4))

    motion = HeadMotion(track(), track(), track(), random_sines(rng, (0.02, 0.02, 0.01), (0.5, 3.0)),
                        random_sines(rng, (0.01, 0.01, 0.01), (0.3, 1.5)))
    t, h = np.linspace(0.1, 3.9, 40), 1e-5
    rot = motion.rotation(t)
    skew = np.einsum("nji,njk->nik", rot, (motion.rotation(t + h) - motion.rotation(t - h)) / (2 * h))
    omega = np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], axis=1)
    np.testing.assert_allclose(omega, motion.gyro(t), atol=1e-6)
    acc = (motion.position(t + 1e-3) - 2 * motion.position(t) + motion.position(t - 1e-3)) / 1e-6
    acc[:, 2] += GRAVITY
    np.testing.assert_allclose(np.einsum("nji,nj->ni", rot, acc), motion.accel(t), atol=1e-4)
    still = HermiteTrack(np.array([0.0, 1.0]), np.zeros(2), np.zeros(2))
    level = HeadMotion(still, still, still, np.zeros((3, 1, 3)), np.zeros((3, 1, 3)))
    np.testing.assert_allclose(level.accel(np.array([0.5])), [[0.0, -GRAVITY, 0.0]])   # y is down


def test_timestamps_jitter_and_bias_drifts_slowly():
    rng = np.random.default_rng(1)
    t = imu_times(30.0, 200.0, rng)
    assert np.diff(t).min() > 0 and t[0] >= 0 and t[-1] <= 30.0 and len(t) == 6001
    bias = drifting_bias(t, rng, start=0.01, step=0.002)
    assert np.abs(np.diff(bias, axis=0)).max() < 1e-4 < np.ptp(bias, axis=0).min()      # drifts, slowly


def test_image_motion_is_the_gyro_motion(stats):
    """Between idle frames (no object in view), the image shifts as the gyroscope says the camera turned."""
    rows, measured, predicted = rows_of(stats), [], []
    step = max(1, round(0.13 * STATS["fps"]))                            # frames about 0.13 s apart
    for v in stats.videos[:4]:
        busy = [(seconds(r["start_timestamp"]) - 0.35, seconds(r["stop_timestamp"]) + 0.35)
                for r in rows if r["video_id"] == v.video_id]
        vr = decord.VideoReader(v.video_path)
        grey = vr.get_batch(list(range(len(vr)))).asnumpy().astype(np.float64).mean(-1)
        gyro = table(v.gyro_csv)
        t_g = gyro[:, 0] / 1000
        for i in range(0, len(vr) - step):
            t0, t1 = i / STATS["fps"], (i + step) / STATS["fps"]
            if any(a <= t1 and t0 <= b for a, b in busy):
                continue
            turned = gyro[(t_g >= t0) & (t_g < t1), 1:].mean(0) * (t1 - t0)
            measured.append(image_shift(grey[i], grey[i + step]))
            predicted.append((FOCAL_PX * turned[0], -FOCAL_PX * turned[1]))      # pitch -> dy, yaw -> -dx
    measured, predicted = np.array(measured, dtype=np.float64), np.array(predicted)
    assert len(measured) > 200
    for k in range(2):
        assert np.corrcoef(measured[:, k], predicted[:, k])[0, 1] > 0.9
        assert 0.85 < (measured[:, k] @ predicted[:, k]) / (predicted[:, k] @ predicted[:, k]) < 1.15


def test_accelerometer_gravity_turns_as_the_gyro_says(stats):
    """Over each segment, gravity seen by the accelerometer rotates by the gyro's integrated turn."""
    errors, turns = [], []
    for r in rows_of(stats)[:40]:
        base = os.path.join(stats.root, r["participant_id"], "meta_data", r["video_id"])
        accl, gyro = table(base + "-accl.csv"), table(base + "-gyro.csv")
        t0, t1 = seconds(r["start_timestamp"]), seconds(r["stop_timestamp"])
        a0, a1 = (accl[np.abs(accl[:, 0] / 1000 - t) <= 0.1, 1:].mean(0) for t in (t0, t1))
        inside = gyro[(gyro[:, 0] / 1000 >= t0) & (gyro[:, 0] / 1000 <= t1)]
        rot = np.eye(3)
        for (ta, *w), tb in zip(inside[:-1], inside[1:, 0]):
            k = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) * (tb - ta) / 1000
            rot = rot @ (np.eye(3) + k + k @ k / 2)
        pred = rot.T @ a0
        errors.append(angle_deg(pred, a1))
        turns.append(angle_deg(a0, a1))
    assert np.median(errors) < 0.4 * np.median(turns)


# --- what the labels mean -------------------------------------------------------------------------
def head_kinds(ds: SynthSummary) -> dict[str, str]:
    """synth.json's head-motion kind of every segment, by narration id."""
    with open(ds.meta_json) as f:
        return json.load(f)["segment_head_motion"]


def test_one_frame_cannot_tell_a_motion_pair_apart(stats):
    rows = rows_of(stats)
    acc, weights = {}, {}
    for pair in MOTION_PAIRS:
        sel = [r for r in rows if r["verb"] in pair]
        y = [r["verb"] for r in sel]
        weights[pair] = len(sel)
        assert min(y.count(v) for v in pair) >= 10
        acc[pair] = nearest_centroid_cv(centre_frames(stats, sel), y, sel)
    print(f"within motion pairs, centre frame: {acc}")
    # chance is 0.5; ~27 segments a pair leave +-0.2 of noise
    assert sum(acc[p] * weights[p] for p in MOTION_PAIRS) / sum(weights.values()) < 0.65
    assert max(acc.values()) < 0.8


def object_state(ds: SynthSummary, rows: list[dict[str, str]], offset_s: float) -> np.ndarray:
    """One number per segment that follows its object, read from the decoded frame at centre + offset:
    the hand's height (take/put), the dark inside's area (open/close), the lamp's lit area (turn-on/off),
    each in the image's central region, where the object is drawn whatever the head does."""
    readers: dict[str, decord.VideoReader] = {}
    out = []
    for r in rows:
        img = segment_frame(ds, r, offset_s, readers)
        h, w, _ = img.shape
        img = img[:, w // 4: 3 * w // 4]
        red, green, blue = img[..., 0], img[..., 1], img[..., 2]
        if r["verb"] in ("take", "put"):
            skin = (np.abs(img - SKIN) < 28).all(-1)
            out.append(np.median(np.nonzero(skin)[0]) / h if skin.any() else 0.5)
        elif r["verb"] in ("open", "close"):
            out.append(float((img.max(-1) < 45).mean()))
        else:
            out.append(float(((red > 150) & (blue < 0.5 * red) & (green > 0.6 * red)).mean()))
    return np.array(out)


def test_the_clip_shows_the_action_whatever_the_head_does(stats):
    """The centre clip's first and last frames (2 s apart) tell every motion pair apart in every kind of head
    motion: the object moves one way or the other, and the head's motion does not move it. (A crude colour
    detector: the background's shaded palette is sometimes taken for the hand, so not 100 %.)"""
    rows, kinds = rows_of(stats), head_kinds(stats)
    for pair in MOTION_PAIRS:
        sel = [r for r in rows if r["verb"] in pair]
        y = [r["verb"] for r in sel]
        change = object_state(stats, sel, 1.0) - object_state(stats, sel, -1.0)
        right = np.array(nearest_centroid_predictions(change[:, None], y, sel)) == np.array(y)
        by_kind = {k: float(right[[kinds[r["narration_id"]] == k for r in sel]].mean()) for k in HEAD_SHARES}
        print(f"{pair}: object change over the clip {right.mean():.2f}, by head kind {by_kind}")
        assert right.mean() >= 0.9 and min(by_kind.values()) >= 0.8


def test_head_motion_tells_a_motion_pair_apart_only_where_it_goes_with_the_action(stats):
    """The IMU is informative in the 'informative' share of motion-pair segments and near chance in the
    'weak' (barely moving) and 'unrelated' (a full turn) ones, whose head turns along a random axis and sign."""
    rows, kinds = rows_of(stats), head_kinds(stats)
    pairs = [r for r in rows if any(r["verb"] in p for p in MOTION_PAIRS)]
    shares = {k: np.mean([kinds[r["narration_id"]] == k for r in pairs]) for k in HEAD_SHARES}
    assert all(abs(shares[k] - HEAD_SHARES[k]) < 0.12 for k in HEAD_SHARES), shares
    assert all(kinds[r["narration_id"]] == "random" for r in rows if r["verb"] in APPEARANCE_VERBS)
    acc = {}
    for pair in MOTION_PAIRS:
        sel = [r for r in rows if r["verb"] in pair]
        y = np.array([r["verb"] for r in sel])
        gyro = mean_gyro(stats, sel)
        informative = np.array([kinds[r["narration_id"]] == "informative" for r in sel])
        # learn which way the informative head turns, then apply it to every kind
        pred = np.array(nearest_centroid_predictions(gyro, list(y), sel, fit=informative))
        acc[pair] = {k: float((pred == y)[[kinds[r["narration_id"]] == k for r in sel]].mean())
                     for k in HEAD_SHARES}
    print(f"within motion pairs, mean gyro by head kind: {acc}")
    assert min(a["informative"] for a in acc.values()) >= 0.95
    other = [a[k] for a in acc.values() for k in ("weak", "unrelated")]
    assert np.mean(other) < 0.72 and max(other) < 0.9


def test_appearance_verbs_show_in_one_frame_and_not_in_the_imu(stats):
    sel = [r for r in rows_of(stats) if r["verb"] in APPEARANCE_VERBS]
    y = [r["verb"] for r in sel]
    frame_acc = nearest_centroid_cv(centre_frames(stats, sel), y, sel)
    imu_acc = nearest_centroid_cv(mean_gyro(stats, sel), y, sel)
    print(f"appearance verbs: centre frame {frame_acc:.2f}, mean gyro {imu_acc:.2f} (chance 0.33)")
    assert frame_acc >= 0.9 and imu_acc < 0.6


AUDIO_BANDS_HZ = ((0, 300), (300, 700), (700, 1600), (1600, 2200), (2200, 2800), (2800, 5000), (5000, 7000))


def segment_sound(ds: SynthSummary, rows: list[dict[str, str]]) -> np.ndarray:
    """Log mean power of each segment's audio (decoded at 16 kHz mono as extraction does) in
    AUDIO_BANDS_HZ (n, 7)."""
    from egocache.pipeline.audio import log_spectrogram, read_audio

    tracks = {v.video_id: read_audio(v.video_path) for v in ds.videos}
    freq = np.arange(201) * 40.0
    out = []
    for r in rows:
        track = tracks[r["video_id"]]
        a, b = (int(round((seconds(r[k]) - track.start_s) * 16000)) for k in ("start_timestamp", "stop_timestamp"))
        power = np.exp(2.0 * log_spectrogram(track.samples[a:b]).astype(np.float64))
        out.append([np.log(power[(freq >= lo) & (freq < hi)].mean()) for lo, hi in AUDIO_BANDS_HZ])
    return np.array(out)


def test_every_video_has_a_sound_track_and_the_rest_is_the_same_without_it(small, tmp_path):
    ds = small[0]
    meta = json.loads(open(ds.meta_json).read())
    assert meta["audio"]["rate_hz"] == 24000 and set(meta["audio"]["verb_sounds"]) == set(VERBS)
    for v in ds.videos:
        with av.open(v.video_path) as container:
            (audio,) = container.streams.audio
            assert (audio.codec_context.name, audio.rate, audio.channels) == ("aac", 24000, 1)
            assert float(audio.duration * audio.time_base) == pytest.approx(v.duration_s, abs=0.05)
    kw = dict(videos=1, seed=3, size=(32, 24), duration_s=8.0, imu_layout="epic100")
    with_audio, without = (synthesize(str(tmp_path / name), audio=flag, **kw)
                           for name, flag in (("with", True), ("without", False)))
    a, b = file_hashes(with_audio.root), file_hashes(without.root)
    video = "P01/videos/P01_101.MP4"
    assert {k for k in a if a[k] != b[k]} == {video, "synth.json"}      # annotations, IMU: same bytes
    frames = []
    for root in (with_audio.root, without.root):
        with av.open(os.path.join(root, video)) as container:
            frames.append([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
            has_audio = bool(container.streams.audio)
        assert has_audio == (root == with_audio.root)
    assert len(frames[0]) == 240 and all(np.array_equal(x, y) for x, y in zip(*frames))


def test_audio_tells_the_appearance_verbs_apart_and_no_motion_pair(stats):
    """The rule of synth/audio.py as a user hears it: cut, pour and wash sound different from each other
    and louder than the motion pairs; a pair's two verbs sound alike."""
    rows = rows_of(stats)
    x, y = segment_sound(stats, rows), [r["verb"] for r in rows]
    app = [i for i, v in enumerate(y) if v in APPEARANCE_VERBS]
    acc = nearest_centroid_cv(x[app], [y[i] for i in app], [rows[i] for i in app])
    pairs = []
    for pair in MOTION_PAIRS:
        idx = [i for i, v in enumerate(y) if v in pair]
        pairs.append(nearest_centroid_cv(x[idx], [y[i] for i in idx], [rows[i] for i in idx]))
    loud = x[:, 1:].max(axis=1)                       # the loudest band above the hum
    app_loud = np.median(loud[app])
    pair_loud = np.median(loud[[i for i, v in enumerate(y) if v not in APPEARANCE_VERBS]])
    print(f"audio: appearance verbs {acc:.2f} (chance 0.33), motion pairs {np.round(pairs, 2)} (chance 0.5), "
          f"median loudest band {app_loud:.1f} vs {pair_loud:.1f}")
    assert acc >= 0.85 and np.mean(pairs) < 0.65 and max(pairs) < 0.75 and app_loud > pair_loud + 2.0
    meta = json.loads(open(stats.meta_json).read())
    sounds = meta["segment_audio"]
    played = [sounds.get(r["narration_id"]) for r in rows]
    for verb, (sound, p) in ((v, (d["sound"], d["probability"])) for v, d in meta["audio"]["verb_sounds"].items()):
        got = [s for s, v in zip(played, y) if v == verb]
        assert set(got) <= {sound, None} and abs(np.mean([s is not None for s in got]) - p) < 0.3


def test_the_clip_shows_the_head_motion_for_pitch_and_yaw_pairs(stats):
    """Where the head turns with the action, two of the 16 frames of the centre clip (0.53 s apart) show
    which way the scene beside the object moved."""
    rows, kinds = rows_of(stats), head_kinds(stats)
    for pair, k in ((("take", "put"), 0), (("open", "close"), 1)):
        sel = [r for r in rows if r["verb"] in pair and kinds[r["narration_id"]] == "informative"]
        readers = {v.video_id: decord.VideoReader(v.video_path) for v in stats.videos}
        right = 0
        for r in sel:
            centre = (seconds(r["start_timestamp"]) + seconds(r["stop_timestamp"])) / 2
            a, b = (readers[r["video_id"]][int(round((centre + d) * STATS["fps"]))].asnumpy().mean(-1)
                    for d in (-0.27, 0.27))
            scene = np.ones(a.shape)          # the object moves too: keep the strips beside it along axis k
            scene[(slice(None), slice(a.shape[1] // 4, 3 * a.shape[1] // 4)) if k == 0
                  else (slice(a.shape[0] // 4, 3 * a.shape[0] // 4), slice(None))] = 0
            moved = image_shift(a * scene, b * scene, moving=True)[k]
            right += (moved > 0) == (r["verb"] == pair[0])            # take: scene moves down; open: right
        assert right / len(sel) >= 0.8                               # 12-15 segments a pair


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_writes_the_dataset_and_prints_a_summary(tmp_path):
    runner = CliRunner()
    args = ["synth", str(tmp_path / "a"), "--videos", "2", "--size", "32x24", "--duration", "8",
            "--seed", "3"]
    result = runner.invoke(main, args + ["--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["seed"] == 3 and summary["size"] == [32, 24] and len(summary["videos"]) == 2
    assert os.path.isfile(summary["train_csv"]) and os.path.isfile(summary["meta_json"])
    assert summary["segments"]["train"] == summary["videos"][0]["num_segments"]
    result = runner.invoke(main, ["synth", str(tmp_path / "b"), "--videos", "1", "--size", "32x24",
                                  "--duration", "8", "--imu-layout", "ego4d"])
    assert result.exit_code == 0, result.output
    assert "motion pairs: take/put" in result.output and "train: 1 videos" in result.output
    assert os.path.isdir(tmp_path / "b" / "imu") and not os.path.exists(tmp_path / "b" / "P01")


def test_cli_errors_are_one_line_and_name_the_problem(tmp_path):
    runner = CliRunner()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    result = runner.invoke(main, ["synth", str(tmp_path / "full")])
    assert result.exit_code == 1 and "not an empty folder" in result.output
    result = runner.invoke(main, ["synth", str(tmp_path / "n"), "--size", "31x24"])
    assert result.exit_code == 2 and "--size" in result.output
    result = runner.invoke(main, ["synth", str(tmp_path / "n"), "--duration", "5"])
    assert result.exit_code == 2 and "--duration: must be" in result.output
    assert not os.path.exists(tmp_path / "n")
