"""Fault injection: corrupt bytes, edited metadata and attributes, kill -9, full and read-only disks, bad
text and values. What egocache promises for each fault class (docs/reliability.md): it is detected and
named in one line, nothing committed is lost, and a rerun after the cause is fixed equals a clean run.

Run with `-s` to print the figures docs/reliability.md records."""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from cache_factory import make_cache, make_test_cache
from egocache.cache import verify_cache
from egocache.cache.schema import array_specs, read_attrs
from egocache.cli import main
from egocache.errors import EgocacheError
from extract_data import cli_args, make_dataset, read_arrays

PACKAGE = Path(__file__).resolve().parents[1] / "egocache"
N_CORRUPTIONS = 120


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A complete small cache (10 clips, 3 shards, one failed clip) and one with JPEG frames."""
    root = tmp_path_factory.mktemp("pristine")
    return make_cache(root / "raw.zarr"), make_cache(root / "jpeg.zarr", codec="jpeg")


def cache_files(path: str) -> list[str]:
    """Every file of a cache: data chunks and shards, array and group metadata, done markers."""
    return sorted(str(p) for p in Path(path).rglob("*") if p.is_file())


def contents(path: str) -> dict[str, object]:
    """What a reader sees: root attributes and every array (None where it cannot be read)."""
    out: dict[str, object] = {}
    try:
        out["attrs"] = read_attrs(path)
        group = zarr.open_group(path, mode="r")
        for spec in array_specs(out["attrs"]):
            out[spec.name] = np.asarray(group[spec.name][:]).tolist()
    except Exception as exc:  # the comparison only needs "readable and equal"
        out["error"] = type(exc).__name__
    return out


def corrupt(file: str, rng: random.Random) -> str:
    """Damage `file` one random way; returns what was done."""
    data = bytearray(Path(file).read_bytes())
    kind = rng.choice(["flip", "zero", "truncate", "garbage", "delete"] if data else ["garbage", "delete"])
    if kind == "delete":
        os.unlink(file)
    elif kind == "truncate":
        Path(file).write_bytes(bytes(data[:rng.randrange(len(data))]))
    elif kind == "garbage":
        Path(file).write_bytes(bytes(data) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))))
    else:
        at = rng.randrange(len(data))
        n = 1 if kind == "flip" else min(len(data) - at, rng.randint(1, 64))
        for i in range(at, at + n):
            data[i] = (data[i] ^ 0xFF) if kind == "flip" else 0
        Path(file).write_bytes(bytes(data))
    return kind


def no_traceback(result) -> bool:
    """Whether a CliRunner result ended on purpose (exit code, one-line error), not with an exception."""
    return result.exception is None or isinstance(result.exception, SystemExit)


def test_random_corruptions_are_detected_without_tracebacks(pristine, tmp_path):
    from egocache.student.config import TrainConfig, check_cache

    runner = CliRunner()
    rng = random.Random(0)
    stats = {"corruptions": 0, "detected": 0, "harmless": 0, "silent_wrong": 0, "tracebacks": 0}
    kinds: dict[str, int] = {}
    for k in range(N_CORRUPTIONS):
        source = pristine[k % 2]
        path = str(tmp_path / f"c{k}.zarr")
        shutil.copytree(source, path)
        target = rng.choice(cache_files(path))
        kind = corrupt(target, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        stats["corruptions"] += 1
        report = verify_cache(path)
        results = [runner.invoke(main, ["verify", path]), runner.invoke(main, ["info", path]),
                   runner.invoke(main, ["export", path, "--hdf5", str(tmp_path / f"c{k}.h5")])]
        stats["tracebacks"] += sum(not no_traceback(r) for r in results)
        try:
            check_cache(TrainConfig(cache=path, out=str(tmp_path / "run"), variant="visonly-distill"))
        except EgocacheError:
            pass
        except Exception:
            stats["tracebacks"] += 1
        if not report.ok:
            stats["detected"] += 1
            assert results[0].exit_code == 1 and results[2].exit_code == 1     # export refuses it too
        elif contents(path) == contents(source):
            stats["harmless"] += 1          # e.g. whitespace in a JSON file: nothing a reader sees changed
        else:
            stats["silent_wrong"] += 1
        shutil.rmtree(path)
    print(f"\nrandom corruptions: {stats}, kinds {kinds}")
    effective = stats["corruptions"] - stats["harmless"]
    assert stats["tracebacks"] == 0 and stats["silent_wrong"] == 0
    assert stats["detected"] >= 0.99 * effective and effective >= 100


def edit_json(file: Path, change) -> None:
    """Apply `change` to a JSON file's parsed content and write it back (a well-formed edit)."""
    doc = json.loads(file.read_text())
    change(doc)
    file.write_text(json.dumps(doc))


def _attr(section: str, key: str, value):
    return lambda d: d["attributes"][section].__setitem__(key, value)


def _codec(name: str, key: str, value, index: int = 0):
    def change(d):
        d["codecs"][index].setdefault("configuration", {})[key] = value
    return change


SEMANTIC_EDITS = {
    # array metadata: what a reader decodes with
    "features byte order": ("features/zarr.json", _codec("features", "endian", "big"), "endian"),
    "error codec level": ("error/zarr.json", _codec("error", "level", 9, index=1), "level"),
    "error codec removed": ("error/zarr.json", lambda d: d["codecs"].pop(1), "codecs"),
    "imu compressor added": ("imu/zarr.json", lambda d: d["codecs"].append(
        {"name": "zstd", "configuration": {"level": 0, "checksum": False}}), "codecs"),
    "logits dtype": ("logits_verb/zarr.json", lambda d: d.__setitem__("data_type", "float64"), "data_type"),
    "status chunk shape": ("status/zarr.json",
                           lambda d: d["chunk_grid"]["configuration"].__setitem__("chunk_shape", [2]), "chunk_shape"),
    "frames shard shape": ("frames/zarr.json",
                           lambda d: d["chunk_grid"]["configuration"].__setitem__("chunk_shape", [2, 9, 16, 16, 3]),
                           "chunk_shape"),
    "frames inner chunk": ("frames/zarr.json",
                           lambda d: d["codecs"][0]["configuration"].__setitem__("chunk_shape", [1, 3, 16, 16, 3]),
                           "chunk_shape"),
    "frames index location": ("frames/zarr.json",
                              lambda d: d["codecs"][0]["configuration"].__setitem__("index_location", "start"),
                              "index_location"),
    "fill value": ("features/zarr.json", lambda d: d.__setitem__("fill_value", 1.0), "fill_value"),
    # root attributes: what a student learns from the cache
    "frame indices for N": ("zarr.json", lambda d: d["attributes"]["sampling"]["frames_for_n"].__setitem__("1", [3]),
                            "frames_for_n"),
    "first/last indices": ("zarr.json", _attr("sampling", "first_last", [1, 8]), "first_last"),
    "head class names": ("zarr.json", lambda d: d["attributes"]["teacher"]["heads"]["verb"].__setitem__(0, "stir"),
                         "changed after the cache was created"),
    "imu channel order": ("zarr.json", _attr("imu", "channels", ["gyro_x", "gyro_y", "gyro_z",
                                                                 "accl_x", "accl_y", "accl_z"]), "imu.channels"),
    "teacher name": ("zarr.json", _attr("teacher", "name", "mformer"), "changed after the cache was created"),
    "sampling positions": ("zarr.json", _attr("sampling", "positions",
                                              [0.0, 0.1, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]), "positions"),
    "dataset": ("zarr.json", _attr("source", "dataset", "ego4d"), "changed after the cache was created"),
    # done markers
    "marker checksum": ("_egocache/shards/1/zarr.json",
                        lambda d: d["attributes"]["checksums"].__setitem__("features", "0" * 64), "done marker is corrupt"),
    "marker rows": ("_egocache/shards/1/zarr.json", lambda d: d["attributes"].__setitem__("rows", [4, 7]),
                    "done marker is corrupt"),
    "marker counts": ("_egocache/shards/0/zarr.json", lambda d: d["attributes"].__setitem__("ok", 1),
                      "done marker is corrupt"),
}


@pytest.mark.parametrize("edit", sorted(SEMANTIC_EDITS))
def test_every_semantic_edit_class_is_detected_and_named(pristine, tmp_path, edit):
    rel, change, expected = SEMANTIC_EDITS[edit]
    path = tmp_path / "c.zarr"
    shutil.copytree(pristine[0], path)
    edit_json(path / rel, change)
    report = verify_cache(str(path))
    assert not report.ok and any(expected in p for p in report.problems), report.problems
    result = CliRunner().invoke(main, ["train-student", "--cache", str(path), "--out", str(tmp_path / "r"),
                                       "--variant", "visonly", "--frames", "1", "--no-progress"])
    assert result.exit_code == 1 and "fails verification" in result.output and no_traceback(result)


def test_a_corrupted_checksum_in_a_marker_is_not_blamed_on_the_data(pristine, tmp_path):
    path = tmp_path / "c.zarr"
    shutil.copytree(pristine[0], path)
    edit_json(path / "_egocache/shards/2/zarr.json",
              lambda d: d["attributes"]["checksums"].__setitem__("imu", "f" * 64))
    problems = verify_cache(str(path)).problems
    assert problems == ["shard 2 (rows 8-9): its done marker is corrupt (its content does not match its own hash); "
                        "re-extract the shard (delete the marker and rerun extract)"]


def test_corrupt_status_and_error_shards_give_one_line_everywhere(pristine, tmp_path):
    from egocache.cache import CacheDataset

    path = tmp_path / "c.zarr"
    shutil.copytree(pristine[0], path)
    for name in ("status", "error"):
        chunk = path / name / "c" / "1"
        chunk.write_bytes(b"\x28\xb5\x2f\xfd" + b"\x00" * 20)      # a zstd frame header, then garbage
    runner = CliRunner()
    for args in (["verify", str(path)], ["info", str(path)], ["export", str(path), "--hdf5", str(tmp_path / "x.h5")],
                 ["train-student", "--cache", str(path), "--out", str(tmp_path / "r"), "--variant", "visonly",
                  "--frames", "1"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and no_traceback(result), (args, result.output)
        assert len(result.output.strip().splitlines()) >= 1 and "Traceback" not in result.output
    with pytest.raises(EgocacheError, match=r"status/c/1: file is 24 bytes, expected 4 \(damaged"):
        CacheDataset(str(path))     # format 2: status rows are read straight from their shard files


# --- kill -9 at seeded random moments --------------------------------------------------------------
def _kill_at_random_moments(argv: list[str], *, kills: int, seed: int, done, env: dict[str, str] | None = None,
                            resume_argv: list[str] | None = None) -> dict[str, int]:
    """Run `argv` (a python command line) and kill it -9 after a seeded random delay, then run it (or
    `resume_argv`) to completion; `done()` checks the result. Returns how many runs were really cut."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    t0 = time.monotonic()
    subprocess.run(argv, env=env, capture_output=True, timeout=600, check=True)
    total = time.monotonic() - t0
    done()
    rng = random.Random(seed)
    cut = 0
    for _ in range(kills):
        reset = getattr(done, "reset", None)
        if reset:
            reset()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.25 * total, 0.9 * total))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            cut += 1
        proc.wait()
        finish = subprocess.run(resume_argv or argv, env=env, capture_output=True, text=True, timeout=600)
        assert finish.returncode == 0, finish.stderr[-2000:]
        done()
    return {"kills": kills, "cut_mid_run": cut, "seconds_per_run": round(total, 1)}


CLI = [sys.executable, "-c", "import sys; from egocache.cli import main; main(sys.argv[1:])"]


@pytest.mark.slow
def test_kill_9_of_extract_at_10_random_moments_then_rerun_equals_a_clean_run(tmp_path):
    dataset = make_dataset(tmp_path / "data")
    cache = tmp_path / "c.zarr"
    argv = [*CLI, *cli_args(dataset, cache)]
    reference: dict[str, np.ndarray] = {}

    def done():
        arrays = read_arrays(cache)
        if not reference:
            reference.update(arrays)
        assert arrays.keys() == reference.keys()
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], reference[k], err_msg=k)
        assert verify_cache(str(cache)).ok

    done.reset = lambda: shutil.rmtree(cache, ignore_errors=True)
    stats = _kill_at_random_moments(argv, kills=10, seed=1, done=done)
    print(f"\nextract kill -9: {stats}")
    assert stats["cut_mid_run"] >= 6


@pytest.mark.slow
def test_kill_9_of_extract_into_s3_with_two_workers_then_rerun_equals_a_clean_run(tmp_path, s3_server):
    """The same on object storage (moto's S3 server on 127.0.0.1), two dask workers writing the shards:
    a killed run leaves its lease behind, which the rerun on this machine takes over at once."""
    from egocache.cache import open_store

    dataset = make_dataset(tmp_path / "data")
    clean = tmp_path / "clean.zarr"
    subprocess.run([*CLI, *cli_args(dataset, clean)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                   capture_output=True, timeout=600, check=True)
    reference = read_arrays(clean)
    url = f"s3://{s3_server.bucket()}/c.zarr"
    argv = [*CLI, *cli_args(dataset, url), "--workers", "2"]

    def done():
        arrays = read_arrays(url)
        assert arrays.keys() == reference.keys()
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], reference[k], err_msg=k)
        assert verify_cache(url).ok

    def reset():
        store = open_store(url)
        for key, _ in list(store.walk()):
            store.delete(key)

    done.reset = reset
    stats = _kill_at_random_moments(argv, kills=3, seed=3, done=done)
    print(f"\nextract into S3 kill -9: {stats}")
    assert stats["cut_mid_run"] >= 2


@pytest.mark.slow
def test_kill_9_of_train_student_at_10_random_moments_then_resume_equals_a_clean_run(tmp_path):
    cache = make_test_cache(tmp_path, n_train=48, n_val_segments=4)
    out = tmp_path / "run"
    argv = [*CLI, "train-student", "--cache", cache, "--out", str(out), "--variant", "egodistill", "--frames", "1",
            "--stage", "distill", "--epochs", "3", "--batch-size", "8", "--checkpoint-every", "2", "--num-workers", "0",
            "--freeze-image-encoder", "--no-progress", "--seed", "5"]
    reference: list[str] = []

    def done():
        metrics = (out / "metrics.json").read_text()
        reference.append(reference[0] if reference else metrics)
        assert metrics == reference[0]

    done.reset = lambda: shutil.rmtree(out, ignore_errors=True)
    stats = _kill_at_random_moments(argv, kills=10, seed=2, done=done, resume_argv=[*argv, "--resume"])
    print(f"\ntrain-student kill -9: {stats}")
    assert stats["cut_mid_run"] >= 6


@pytest.mark.slow
def test_kill_9_of_train_teacher_at_10_random_moments_then_the_same_command_equals_a_clean_run(tmp_path):
    import torch

    from egocache.pipeline.teachers import read_teacher_checkpoint
    from egocache.synth import synthesize

    ds = synthesize(str(tmp_path / "syn"), videos=3, seed=3, size=(64, 48), duration_s=12.0)
    out = tmp_path / "t" / "teacher.pyth"
    argv = [*CLI, "train-teacher", "--teacher", "mformer-tiny", "--dataset", "epic100", "--annotations",
            ds.train_csv, "--annotations", ds.validation_csv, "--root", ds.root, "--out", str(out), "--epochs", "3",
            "--batch-size", "4", "--train-clips", "2", "--eval-clips", "2", "--frame-size", "32", "--device", "cpu",
            "--checkpoint-every", "2", "--no-progress", "--seed", "4"]
    for key, value in {"img_size": 32, "pos_img_size": 32, "embed_dim": 24, "num_heads": 2, "depth": 1}.items():
        argv += ["--teacher-option", f"{key}={value}"]
    reference: dict[str, object] = {}

    def done():
        state = read_teacher_checkpoint(out)["model_state"]
        validation = json.loads(out.with_suffix(".json").read_text())["validation"]
        if not reference:
            reference.update(state=state, validation=validation)
        assert all(torch.equal(state[k], reference["state"][k]) for k in state)
        assert validation == reference["validation"]

    done.reset = lambda: shutil.rmtree(out.parent, ignore_errors=True)
    stats = _kill_at_random_moments(argv, kills=10, seed=3, done=done)
    print(f"\ntrain-teacher kill -9: {stats}")
    assert stats["cut_mid_run"] >= 6


# --- full and read-only disks ------------------------------------------------------------------------
@contextlib.contextmanager
def small_disk(where: Path, size_kb: int):
    """A tmpfs of `size_kb` mounted at `where` (root and mounting allowed), else None."""
    where.mkdir(parents=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_disk_full_is_one_line_naming_the_file_and_a_rerun_after_freeing_space_equals_a_clean_run(tmp_path):
    dataset = make_dataset(tmp_path / "data")
    clean = tmp_path / "clean.zarr"
    assert CliRunner().invoke(main, cli_args(dataset, clean)).exit_code == 0
    with small_disk(tmp_path / "disk", 160) as disk:
        if disk is not None:                 # a real full disk: ENOSPC
            cache = disk / "c.zarr"
            full = CliRunner().invoke(main, cli_args(dataset, cache))
            reason = "disk full (ENOSPC)"
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        else:                                # no mounting here: a file-size limit gives EFBIG instead
            cache = tmp_path / "c.zarr"
            code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000)); "
                    "from egocache.cli import main; main(sys.argv[1:])")
            proc = subprocess.run([sys.executable, "-c", code, *cli_args(dataset, cache)], capture_output=True,
                                  text=True)
            full = type("R", (), {"exit_code": proc.returncode, "output": proc.stderr, "exception": None})
            reason = "file too large (EFBIG)"
        assert full.exit_code == 1 and no_traceback(full), full.output
        line = [x for x in full.output.splitlines() if x.startswith("Error:")][-1]
        assert reason in line and str(cache) in line and "Traceback" not in full.output
        again = CliRunner().invoke(main, cli_args(dataset, cache))
        assert again.exit_code == 0, again.output
        a, b = read_arrays(cache), read_arrays(clean)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made read-only: a read-only tmpfs as root (when mounting works), else chmod."""
    if os.geteuid() == 0:
        shutil.copytree(folder, folder.with_suffix(".src"))
        shutil.rmtree(folder)
        folder.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("root without mount permission cannot make a read-only folder")
        shutil.copytree(folder.with_suffix(".src"), folder, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    else:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)


def test_read_only_cache_and_run_folders_give_one_line(tmp_path):
    dataset = make_dataset(tmp_path / "data")
    folder = tmp_path / "ro"
    folder.mkdir()
    cache = make_test_cache(folder, n_train=16, n_val_segments=2)
    (folder / "run").mkdir()
    with read_only(folder):
        extract = CliRunner().invoke(main, cli_args(dataset, folder / "new.zarr"))
        assert extract.exit_code == 1 and no_traceback(extract), extract.output
        assert "new.zarr" in extract.output and ("read-only" in extract.output or "permission" in extract.output)
        train = CliRunner().invoke(main, ["train-student", "--cache", cache, "--out", str(folder / "run"), "--variant",
                                          "visonly", "--frames", "1", "--epochs", "1", "--batch-size", "8",
                                          "--num-workers", "0", "--no-progress"])
        assert train.exit_code == 1 and no_traceback(train), train.output
        assert "run" in train.output and ("read-only" in train.output or "permission" in train.output)
        info = CliRunner().invoke(main, ["info", cache])              # reading a read-only cache works
        assert info.exit_code == 0, info.output


# --- bad values and inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, fails", [("inf", False), ("1.7e308", True)])
def test_non_finite_imu_never_enters_an_ok_clip(tmp_path, value, fails):
    """An inf reading is a missing one (interpolated within the gap limit, counted as a repair); a value
    that overflows the window's mean fails its clip with a reason."""
    from egocache.pipeline.extract import extract
    from egocache.pipeline.imu import read_imu
    from extract_data import options

    dataset = make_dataset(tmp_path / "data")
    opts = options(dataset, tmp_path / "c.zarr")
    clip = opts.load_manifest().clips[0]
    gyro = Path(next(v.gyro_csv for v in dataset.videos if v.video_id == clip.video_id))
    lines = gyro.read_text().splitlines()
    at = 1 + int(np.argmin([abs(float(x.split(",")[0]) / 1000 - clip.centre_s) for x in lines[1:]]))
    row = lines[at].split(",")
    row[2] = value
    lines[at] = ",".join(row)
    gyro.write_text("\n".join(lines) + "\n")
    summary = extract(opts)
    failed = [f for f in summary.failures if f.startswith(clip.clip_id)]
    assert bool(failed) == fails and all("non-finite" in f for f in failed), summary.failures
    if not fails:
        assert read_imu(clip.imu_format, clip.imu_paths).repairs["missing_values"] == 1
    arrays = read_arrays(tmp_path / "c.zarr")
    ok = arrays["status"] == 1
    assert all(np.isfinite(arrays[k][ok]).all() for k in ("imu", "features", "logits_verb"))
    assert verify_cache(str(tmp_path / "c.zarr")).ok


def test_a_non_finite_training_loss_stops_the_run_naming_step_and_rows(tmp_path, monkeypatch):
    import torch

    from egocache.student import train as train_mod
    from egocache.student.checkpoint import load_student_checkpoint
    from egocache.student.config import TrainConfig

    cache = make_test_cache(tmp_path, n_train=32, n_val_segments=2)
    real = train_mod.student_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            parts["loss"] = parts["loss"] * torch.tensor(float("nan"))
        return parts

    monkeypatch.setattr(train_mod, "student_loss", poisoned)
    cfg = TrainConfig(cache=cache, out=str(tmp_path / "run"), variant="visonly-distill", stage="distill", epochs=2,
                      batch_size=8, checkpoint_every=2, num_workers=0, device="cpu")
    with pytest.raises(EgocacheError, match=r"distill step 3: the loss is nan \(not finite\) on the batch of cache "
                                            r"rows \[\d+"):
        train_mod.train_student(cfg, progress=False, log=lambda m: None)
    assert load_student_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2      # the last good state


@pytest.mark.parametrize("raw, fine", [(b"\xef\xbb\xbf", True), (b"", True)])
def test_annotations_with_bom_crlf_or_bad_bytes(tmp_path, raw, fine):
    from egocache.pipeline.datasets import load_manifest
    from egocache.pipeline.datasets.selection import Selection
    from egocache.synth import EPIC_COLUMNS

    row = ["P01_101_0", "P01", "P01_101", "00:00:01.000", "00:00:01.00", "00:00:03.00", 0, 0, "x", "take", 0, "cup", 0,
           "['cup']", "[0]"]
    text = ",".join(EPIC_COLUMNS) + "\r\n" + ",".join(map(str, row)) + "\r\n"
    csv_path = tmp_path / "EPIC_100_train.csv"
    csv_path.write_bytes(raw + text.encode())
    m = load_manifest("epic100", [str(csv_path)], str(tmp_path), selection=Selection(imu="optional"))
    assert [c.segment_id for c in m.clips] == ["P01_101_0"]           # BOM and CRLF decoded, first column found
    csv_path.write_bytes(text.replace("take", "caf\xe9").encode("latin-1"))
    with pytest.raises(EgocacheError, match=r"EPIC_100_train.csv:2: not UTF-8 text \(byte 0xe9 at column \d+"):
        load_manifest("epic100", [str(csv_path)], str(tmp_path), selection=Selection(imu="optional"))


@pytest.mark.parametrize("args, option", [
    (["train-student", "--milestones", "abc"], "--milestones"),
    (["train-student", "--batch-size", "0"], "--batch-size"),
    (["train-student", "--device", "tpu"], "--device"),
    (["extract", "--frames", "1,x"], "--frames"),
    (["extract", "--imu", "sometimes"], "--imu"),
    (["synth", "OUT", "--size", "31x24"], "--size"),
    (["benchmark"], "--cache"),
])
def test_every_cli_value_error_names_the_option(tmp_path, args, option):
    base = {"train-student": ["--cache", str(tmp_path), "--out", str(tmp_path / "r"), "--variant", "visonly",
                              "--frames", "1"],
            "extract": ["--teacher", "mformer-tiny", "--dataset", "epic100", "--annotations", __file__,
                        "--root", str(tmp_path), "--cache", str(tmp_path / "c")],
            "synth": [], "benchmark": []}[args[0]]
    result = CliRunner().invoke(main, [args[0], *base, *args[1:]])
    assert result.exit_code == 2 and option in result.output and no_traceback(result), result.output


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" and \
                    getattr(node.func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                calls.append((path.name, isinstance(kw.get("weights_only"), ast.Constant)
                              and kw["weights_only"].value is True))
    assert calls and all(ok for _, ok in calls), calls


def test_a_student_checkpoint_with_code_is_refused_in_one_line(tmp_path):
    import torch

    from egocache.student.checkpoint import load_student_checkpoint

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"format": 1, "model": {}, "model_config": {}, "payload": Exploit()}, tmp_path / "last.pt")
    with pytest.raises(EgocacheError) as exc:
        load_student_checkpoint(tmp_path / "last.pt")
    message = str(exc.value)
    assert "refused" in message and "weights_only" not in message and "\n" not in message
    assert not (tmp_path / "pwned").exists()


def test_extraction_does_not_depend_on_the_number_of_workers(tmp_path):
    from egocache.pipeline.extract import extract
    from extract_data import options

    dataset = make_dataset(tmp_path / "data")
    extract(options(dataset, tmp_path / "one.zarr", workers=1))
    extract(options(dataset, tmp_path / "two.zarr", workers=2))
    a, b = read_arrays(tmp_path / "one.zarr"), read_arrays(tmp_path / "two.zarr")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_storage_errors_keep_what_was_committed(tmp_path, monkeypatch):
    """ENOSPC in the middle of writing shard 1: shards already done keep their markers and data."""
    from egocache.cache import CacheWriter
    from cache_factory import create, write

    w = create(tmp_path / "c.zarr")
    write(w, 0)
    import zarr.storage

    real = zarr.storage.LocalStore.set

    async def full(self, key, value):
        if "/c/1" in key:
            raise OSError(errno.ENOSPC, "No space left on device")
        return await real(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full)
    with pytest.raises(EgocacheError, match=r"cannot write shard 1 \(features\) of .*features/c/1/0: disk full"):
        write(CacheWriter.open(str(tmp_path / "c.zarr")), 1)
    monkeypatch.undo()
    assert w.done_shards() == {0}
    write(w, 1)
    write(w, 2)
    assert verify_cache(str(tmp_path / "c.zarr")).ok
