"""Bring-your-own teachers: spec files, torch.export / TorchScript / entry-point models, extraction with one."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from egocache.cli import main
from egocache.errors import CheckpointError, ConfigError, EgocacheError
from egocache.pipeline.datasets import load_manifest
from egocache.pipeline.frames import FramePlan
from egocache.pipeline.teachers import create_teacher, teacher_spec, teacher_stats
from egocache.pipeline.teachers.base import run_teacher
from egocache.pipeline.teachers.external import ExternalTeacher, read_spec_file
from egocache.pipeline.train_teacher import decode_teacher_clips
from extract_data import NUM_CLIPS, annotations, cli_args, make_dataset, read_arrays

MODULE = "egocache_test_tiny_teacher"      # the entry-point module the tests write and import
HEADS = {"verb": 9, "noun": 12}            # the synthetic test dataset's class counts
SOURCE = textwrap.dedent('''
    import torch
    from torch import nn


    class TinyVideo(nn.Module):
        """(B,3,T,S,S) -> tanh features (B, 16) and a dict of logits per head."""

        def __init__(self, verb: int = 9, noun: int = 12, dim: int = 16):
            super().__init__()
            self.conv = nn.Conv3d(3, dim, (2, 8, 8), stride=(2, 8, 8))
            self.fc = nn.Linear(dim, dim)
            self.verb = nn.Linear(dim, verb)
            self.noun = nn.Linear(dim, noun)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(self.conv(x).mean(dim=(2, 3, 4))))

        def forward(self, x: torch.Tensor):
            f = self.features(x)
            return {"features": f, "logits_verb": self.verb(f), "logits_noun": self.noun(f)}


    class TinyVideoTuple(TinyVideo):
        """The same model returning the tuple (features, verb logits, noun logits)."""

        def forward(self, x: torch.Tensor):
            f = self.features(x)
            return f, self.verb(f), self.noun(f)


    def build(seed: int = 0, as_tuple: bool = False, **kwargs) -> TinyVideo:
        torch.manual_seed(seed)
        return (TinyVideoTuple if as_tuple else TinyVideo)(**kwargs).eval()


    def not_a_module():
        return 3
''')
GEOMETRY = {"num_frames": 4, "frame_stride": 8, "img_size": 32, "mean": [0.45, 0.45, 0.45],
            "std": [0.225, 0.225, 0.225], "channels": "rgb", "heads": HEADS, "feature_dim": 16}


def write_spec(path: Path, **fields) -> Path:
    """A spec file with the test geometry plus `fields` (None drops a field)."""
    spec = {**GEOMETRY, **fields}
    path.write_text(json.dumps({k: v for k, v in spec.items() if v is not None}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The entry module on sys.path, the reference module, and one model file + spec per kind."""
    root = tmp_path_factory.mktemp("byo")
    (root / f"{MODULE}.py").write_text(SOURCE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        mod = __import__(MODULE)
        reference = mod.build(seed=0)
        x = torch.randn(2, 3, 4, 32, 32)
        batch = torch.export.Dim("batch")
        torch.export.save(torch.export.export(reference, (x,), dynamic_shapes=({0: batch},)), root / "tiny.pt2")
        traced = mod.build(seed=0, as_tuple=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)       # TorchScript is deprecated, still read
            torch.jit.script(reference).save(str(root / "tiny.ts"))
            torch.jit.trace(traced, (x,)).save(str(root / "tiny_traced.pt"))
        specs = {"export": write_spec(root / "export.json", model="tiny.pt2", name="tiny-export"),
                 "script": write_spec(root / "script.json", model="tiny.ts"),
                 "trace": write_spec(root / "trace.json", model="tiny_traced.pt"),
                 "entry": write_spec(root / "entry.json", entry=f"{MODULE}:build", kwargs={"seed": 0})}
        yield {"root": root, "module": mod, "reference": reference, "specs": specs}
        sys.modules.pop(MODULE, None)


def reference_outputs(module, x):
    """(features, {head: logits}) of the original module on preprocessed clips."""
    with torch.inference_mode():
        out = module(x)
    return out["features"], {h: out[f"logits_{h}"] for h in HEADS}


@pytest.mark.parametrize("kind", ["export", "script", "trace", "entry"])
def test_each_kind_loads_as_a_teacher_equal_to_the_module(world, kind):
    model = create_teacher(str(world["specs"][kind]))
    assert isinstance(model, ExternalTeacher) and not model.training
    spec = model.spec
    assert (spec.num_frames, spec.frame_stride, spec.img_size, spec.feature_dim, spec.heads) == (4, 8, 32, 16, HEADS)
    assert spec.bgr is False and spec.mean == (0.45, 0.45, 0.45)
    assert spec.config["kind"] == {"script": "torchscript", "trace": "torchscript"}.get(kind, kind)
    g = torch.Generator().manual_seed(3)
    for batch in (1, 3):                               # the exported batch dimension is dynamic
        clips = torch.randint(0, 256, (batch, 4, 32, 32, 3), dtype=torch.uint8, generator=g)
        x = model.preprocess(clips)
        feats, logits = model(x)
        want_f, want_l = reference_outputs(world["reference"], x)
        torch.testing.assert_close(feats, want_f, rtol=1e-6, atol=1e-6)
        for h in HEADS:
            torch.testing.assert_close(logits[h], want_l[h], rtol=1e-6, atol=1e-6)
        f_np, l_np = run_teacher(model, clips.numpy(), "cpu", 2)     # what extraction runs
        np.testing.assert_allclose(f_np, want_f.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(l_np["noun"], want_l["noun"].numpy(), rtol=1e-6, atol=1e-6)


def test_spec_defaults_overrides_and_fixed_parts(world):
    path = world["specs"]["script"]
    spec = teacher_spec(str(path))
    assert spec == read_spec_file(path) and spec.name == "script"          # name defaults to the stem
    assert teacher_spec(str(world["specs"]["export"])).name == "tiny-export"
    over = teacher_spec(str(path), bgr=True, frame_stride=4, mean=[0.5, 0.5, 0.5])
    assert (over.bgr, over.frame_stride, over.mean) == (True, 4, (0.5, 0.5, 0.5))
    assert teacher_spec(str(path), heads=dict(HEADS)) == spec
    with pytest.raises(EgocacheError, match="unknown override.*img_size"):
        teacher_spec(str(path), img_size=64)
    with pytest.raises(EgocacheError, match="heads .* are fixed"):
        create_teacher(str(path), heads={"verb": 3})
    with pytest.raises(EgocacheError, match="carries its own weights"):
        create_teacher(str(path), checkpoint=str(path))
    with pytest.raises(EgocacheError, match="runs whole"):
        create_teacher(str(path)).forward_head(torch.zeros(1, 16))


def test_stats_and_the_teachers_command(world):
    path = str(world["specs"]["entry"])
    stats = teacher_stats(path)
    ref = world["reference"]
    assert stats["params"] == sum(p.numel() for p in ref.parameters())
    assert stats["macs"] > 0
    result = CliRunner().invoke(main, ["teachers", "--teacher", path, "--stats", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["name"] == path and row["heads"] == HEADS and row["num_frames"] == 4 and row["params"] == stats["params"]
    text = CliRunner().invoke(main, ["teachers", "--teacher", path])
    assert text.exit_code == 0 and "4x32px stride 8 RGB" in text.output and "features 16" in text.output


# --- extraction through the CLI ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The tiny synthetic dataset of the extraction tests (2 videos, 7 clips)."""
    return make_dataset(tmp_path_factory.mktemp("byo-data") / "ds")


def teacher_args(args: list[str], teacher: str) -> list[str]:
    """cli_args with --teacher replaced."""
    i = args.index("--teacher")
    return [*args[:i + 1], teacher, *args[i + 2:]]


@pytest.mark.parametrize("kind", ["export", "entry"])
def test_extract_with_an_external_teacher_caches_the_modules_outputs(world, dataset, tmp_path, kind):
    spec_path = str(world["specs"][kind])
    cache = tmp_path / "byo.zarr"
    result = CliRunner().invoke(main, [*teacher_args(cli_args(dataset, cache), spec_path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["clips_ok"] == NUM_CLIPS
    arrays = read_arrays(cache)
    manifest = load_manifest("epic100", list(annotations(dataset)), dataset.root)
    assert list(arrays["clip_id"]) == [c.clip_id for c in manifest.clips]
    data = decode_teacher_clips(manifest.clips, FramePlan(4, 8, 32, (), 32), list(HEADS), log=lambda line: None)
    assert data.clip_ids == [c.clip_id for c in manifest.clips]
    model = create_teacher(spec_path)
    want_f, want_l = reference_outputs(world["reference"], model.preprocess(torch.from_numpy(data.inputs)))
    np.testing.assert_allclose(arrays["features"], want_f.numpy(), rtol=1e-5, atol=1e-6)
    for h in HEADS:
        np.testing.assert_allclose(arrays[f"logits_{h}"], want_l[h].numpy(), rtol=1e-5, atol=1e-6)
    attrs = json.loads((cache / "zarr.json").read_text())["attributes"]
    teacher = attrs["teacher"]
    assert teacher["name"] == spec_path and teacher["config"]["kind"] == kind
    assert (teacher["num_frames"], teacher["img_size"], teacher["bgr"]) == (4, 32, False)
    again = CliRunner().invoke(main, teacher_args(cli_args(dataset, cache), spec_path))
    assert again.exit_code == 0 and "already done" in again.output


def test_a_model_with_wrong_outputs_fails_on_its_first_batch_in_one_line(world, dataset, tmp_path):
    spec = write_spec(tmp_path / "wrong.json", entry=f"{MODULE}:build", kwargs={"verb": 5})
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(world["root"]))
        result = CliRunner().invoke(main, teacher_args(cli_args(dataset, tmp_path / "w.zarr"), str(spec)))
    assert result.exit_code == 1, result.output
    assert "output logits_verb has shape (1, 5), the spec says (1, 9)" in result.output
    assert "Traceback" not in result.output and str(spec) in result.output


def test_output_contract_errors(world, tmp_path):
    mod = world["module"]
    spec = read_spec_file(world["specs"]["entry"])
    x = torch.zeros(2, 3, 4, 32, 32)

    class Returns(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def forward(self, x):
            return self.value

    cases = [({"features": torch.zeros(2, 16)}, "lacks logits_verb, logits_noun"),
             ((torch.zeros(2, 16),), "returned 1 outputs, expected 3"),
             (torch.zeros(2, 16), "returned Tensor; expected a dict"),
             ((torch.zeros(2, 8), torch.zeros(2, 9), torch.zeros(2, 12)), r"features has shape \(2, 8\)"),
             ((torch.zeros(2, 16), torch.zeros(2, 9, dtype=torch.long), torch.zeros(2, 12)), "torch.int64")]
    for value, message in cases:
        with pytest.raises(EgocacheError, match=message):
            ExternalTeacher(spec, Returns(value), "s.json")(x)
    tuple_model = ExternalTeacher(spec, mod.build(as_tuple=True), "s.json")
    assert tuple_model(x)[1]["noun"].shape == (2, 12)
    with pytest.raises(ValueError, match=r"expected input \(B, 3, 4, 32, 32\)"):
        tuple_model(torch.zeros(2, 3, 5, 32, 32))


# --- bad spec and model files: one line, no traceback -------------------------------------------------------

BAD_SPECS = [
    ("not json", None, "not a readable JSON teacher spec"),
    ("[1, 2]", None, "a teacher spec is a JSON object, got list"),
    (None, {"num_frames": None}, "missing field(s) num_frames"),
    (None, {"colour": "rgb"}, "unknown field(s) colour"),
    (None, {"entry": "m:f"}, "exactly one of model"),
    (None, {"model": None}, "exactly one of model"),
    (None, {"channels": "RGB"}, 'channels must be "rgb" or "bgr"'),
    (None, {"heads": {"verb": 0}}, "heads must map head names to positive class counts"),
    (None, {"mean": [0.5, 0.5]}, "mean must be a list of 3 numbers"),
    (None, {"std": [0.5, 0.0, 0.5]}, "std must be a list of 3 positive numbers"),
    (None, {"img_size": 32.0}, "img_size must be a positive integer"),
    (None, {"model": "absent.pt2"}, "model: no such file"),
    (None, {"model": None, "entry": "no_colon"}, 'entry must be "package.module:factory"'),
    (None, {"model": None, "entry": "egocache_no_such_module:f"}, "cannot import egocache_no_such_module"),
    (None, {"model": None, "entry": f"{MODULE}:nothing"}, f"{MODULE} has no nothing"),
    (None, {"model": None, "entry": f"{MODULE}:not_a_module"}, "returned int, not a torch.nn.Module"),
]


@pytest.mark.parametrize("text, fields, message", BAD_SPECS)
def test_bad_spec_files_are_one_line_usage_errors(world, tmp_path, text, fields, message):
    path = tmp_path / "bad.json"
    if text is not None:
        path.write_text(text)
    else:
        write_spec(path, **{"model": str(world["root"] / "tiny.ts"), **fields})
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(world["root"]))
        with pytest.raises(ConfigError, match=None) as err:
            create_teacher(str(path))
        result = CliRunner().invoke(main, ["teachers", "--teacher", str(path), "--stats"])
    assert message in str(err.value) and str(path) in str(err.value)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_a_missing_spec_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such teacher spec file"):
        create_teacher(str(tmp_path / "absent.json"))


@pytest.mark.parametrize("name, content, message", [
    ("garbage.pt2", b"not a zip", "is not a loadable torch.export .pt2 archive"),
    ("garbage.ts", b"not a zip", "is not a loadable TorchScript file"),
    ("script_as.pt2", None, "is not a loadable torch.export .pt2 archive"),      # TorchScript named .pt2
    ("export_as.ts", "export", "is not a loadable TorchScript file"),           # an export archive named .ts
])
def test_bad_model_files_are_one_line_errors(world, tmp_path, name, content, message):
    model = tmp_path / name
    if content is None:
        model.write_bytes((world["root"] / "tiny.ts").read_bytes())
    elif content == "export":
        model.write_bytes((world["root"] / "tiny.pt2").read_bytes())
    else:
        model.write_bytes(content)
    spec = write_spec(tmp_path / "spec.json", model=name)
    with pytest.raises(CheckpointError, match=message):
        create_teacher(str(spec))
    result = CliRunner().invoke(main, ["teachers", "--teacher", str(spec), "--stats"])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_model_file_changed_after_its_spec_was_read_is_refused(world, tmp_path):
    model = tmp_path / "m.ts"
    model.write_bytes((world["root"] / "tiny.ts").read_bytes())
    spec = read_spec_file(write_spec(tmp_path / "spec.json", model="m.ts"))
    model.write_bytes(model.read_bytes() + b"\0")
    from egocache.pipeline.teachers.external import load_model

    with pytest.raises(CheckpointError, match="changed since its spec was read"):
        load_model(spec, "spec.json")


def test_train_teacher_refuses_an_external_teacher(world, dataset, tmp_path):
    args = ["train-teacher", "--teacher", str(world["specs"]["script"]), "--dataset", "epic100",
            "--root", dataset.root, "--out", str(tmp_path / "t.pyth"), "--device", "cpu", "--no-progress"]
    for a in annotations(dataset):
        args += ["--annotations", a]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "train-teacher fine-tunes registered teachers" in result.output
    assert "Traceback" not in result.output


def test_test_teacher_runs_an_external_teacher(world, dataset):
    args = ["test-teacher", "--teacher", str(world["specs"]["export"]), "--dataset", "epic100",
            "--root", dataset.root, "--views", "1x1", "--frame-size", "32", "--device", "cpu", "--no-progress",
            "--json"]
    for a in annotations(dataset):
        args += ["--annotations", a]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)


def test_the_benchmark_measures_an_external_teacher_from_its_cache_attributes(world):
    from egocache.report.benchmark import teacher_row

    path = str(world["specs"]["export"])
    spec = teacher_spec(path)
    attrs = {"name": path, "config": spec.config, "num_frames": 4, "img_size": 32, "bgr": False}
    row = teacher_row("teacher", attrs, dict(HEADS), None, device=torch.device("cpu"), batch=2, repeats=1,
                      latency=True)
    assert row.params_m * 1e6 == pytest.approx(sum(p.numel() for p in world["reference"].parameters()))
    assert row.gflops > 0 and row.latency_ms > 0
