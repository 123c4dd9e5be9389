"""Teacher registry, MotionFormer re-implementation, checkpoint loading/saving and `egocache teachers`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys

import pytest
import torch
import yaml
from click.testing import CliRunner
from torch import nn

from egocache.cli import main
from egocache.errors import CheckpointError, EgocacheError
from egocache.pipeline import teachers
from egocache.pipeline.teachers import tvvideo
from egocache.pipeline.teachers import (checkpoint_sha256, create_teacher, list_teachers, load_teacher_checkpoint,
                                        save_teacher_checkpoint, teacher_spec, teacher_stats)
from egocache.pipeline.teachers.mformer import (BASE_SPEC, TINY_CONFIG, MotionFormer, TrajectoryAttention,
                                                official_overrides)


def tiny(seed: int = 0, **kwargs):
    """A seeded mformer-tiny in eval mode."""
    torch.manual_seed(seed)
    return create_teacher("mformer-tiny", **kwargs)


def clips(model, batch: int = 2, seed: int = 1) -> torch.Tensor:
    """Random uint8 RGB clips of the model's shape."""
    g = torch.Generator().manual_seed(seed)
    s = model.spec
    return torch.randint(0, 256, (batch, s.num_frames, s.img_size, s.img_size, 3), dtype=torch.uint8,
                         generator=g)


# --- registry -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_teachers())
def test_every_registered_teacher_builds_with_a_consistent_spec(name):
    with torch.device("meta"):
        model = create_teacher(name)
    spec = model.spec
    assert spec == teacher_spec(name)
    assert spec.name == name and not model.training
    if spec.input == "rgb":          # an audio teacher's clip span is the spec's own; it has no image size
        assert spec.config["num_frames"] == spec.num_frames and spec.config["img_size"] == spec.img_size
    else:
        assert "img_size" not in spec.config and spec.img_size == 0
    with torch.device("meta"):
        feats, logits = model(torch.empty(1, *model.input_shape()))
    assert feats.shape == (1, spec.feature_dim)
    assert {h: v.shape for h, v in logits.items()} == {h: (1, c) for h, c in spec.heads.items()}
    assert json.loads(json.dumps(spec.to_dict()))["heads"] == spec.heads


def test_registry_names_and_errors():
    assert {"mformer", "mformer-tiny"} <= set(list_teachers())
    with pytest.raises(EgocacheError, match="unknown teacher 'nope'.*mformer"):
        create_teacher("nope")
    with pytest.raises(EgocacheError, match="already registered"):
        teachers.register_teacher("mformer", spec=BASE_SPEC, config=TINY_CONFIG, build=MotionFormer,
                                  read_heads=dict, official_overrides=dict)


def test_overrides_are_type_checked_and_unknown_keys_raise():
    with pytest.raises(EgocacheError, match="unknown override.*colour"):
        teacher_spec("mformer-tiny", colour=3)
    with pytest.raises(EgocacheError, match="depth=2.5"):
        teacher_spec("mformer-tiny", depth=2.5)
    with pytest.raises(EgocacheError, match="bgr=1"):
        teacher_spec("mformer-tiny", bgr=1)
    with pytest.raises(EgocacheError, match="not divisible by num_heads"):
        teacher_spec("mformer-tiny", num_heads=5)
    with pytest.raises(EgocacheError, match="not a multiple of tubelet"):
        teacher_spec("mformer-tiny", num_frames=7)
    with pytest.raises(EgocacheError, match="heads must map"):
        teacher_spec("mformer-tiny", heads={"verb": 0})
    spec = teacher_spec("mformer-tiny", depth=3, mlp_ratio=2, mean=[0.4, 0.4, 0.4], heads={"a": 5})
    assert spec.config["depth"] == 3 and spec.config["mlp_ratio"] == 2.0
    assert spec.mean == (0.4, 0.4, 0.4) and spec.heads == {"a": 5}


def test_torchvision_teachers_are_absent_here_and_asking_for_one_is_one_line():
    assert not tvvideo.available()                   # torchvision does not import on this machine
    assert not set(tvvideo.ARCHS) & set(list_teachers())
    with pytest.raises(EgocacheError, match="torchvision is not importable here"):
        create_teacher("mvit-v2-s")
    result = CliRunner().invoke(main, ["teachers", "--teacher", "s3d"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == ("Error: teacher 's3d' is one of torchvision's video models, and torchvision "
                                     f"is not importable here ({tvvideo.import_problem()})")
    assert tvvideo.import_problem().startswith(("ModuleNotFoundError: ", "ImportError: ", "RuntimeError: "))
    assert "\n" not in tvvideo.import_problem()


class _FakeVideoModel(nn.Module):
    """Stands in for a torchvision video model: the classifier attribute its forward ends with."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        a = tvvideo.ARCHS[arch]
        self.classifier_name = a.classifier
        self.stem = nn.Conv3d(3, a.feature_dim, 1)
        setattr(self, a.classifier, nn.Linear(a.feature_dim, 400))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.classifier_name)(self.stem(x).mean(dim=(2, 3, 4)))


@pytest.mark.parametrize("arch", sorted(tvvideo.ARCHS))
def test_torchvision_wrapping_replaces_the_classifier_with_new_heads(arch, monkeypatch):
    """Our wiring only (torchvision itself is not importable here): builder called with weights=None,
    classifier replaced by Identity, features of the documented size, one Linear per dataset head."""
    import types

    calls = []

    def builder(*, weights=None):
        calls.append(weights)
        return _FakeVideoModel(arch)

    video = types.ModuleType("torchvision.models.video")
    setattr(video, tvvideo.ARCHS[arch].builder, builder)
    models = types.ModuleType("torchvision.models")
    models.video = video
    package = types.ModuleType("torchvision")
    package.models = models
    for name, mod in (("torchvision", package), ("torchvision.models", models), ("torchvision.models.video", video)):
        monkeypatch.setitem(sys.modules, name, mod)
    assert tvvideo.available()
    spec, cfg = tvvideo.default_spec(arch)
    spec = dataclasses.replace(spec, heads={"verb": 9, "noun": 12})
    model = tvvideo.TorchvisionVideo(spec)
    assert calls == [None] and isinstance(getattr(model.backbone, tvvideo.ARCHS[arch].classifier), nn.Identity)
    x = torch.zeros(2, 3, 2, 8, 8)
    with pytest.raises(ValueError, match="expected input"):
        model(x)
    small = dataclasses.replace(spec, num_frames=2, img_size=8)
    object.__setattr__(model, "spec", small)
    feats, logits = model(x)
    assert feats.shape == (2, spec.feature_dim) and {h: v.shape[1] for h, v in logits.items()} == {"verb": 9, "noun": 12}
    assert tvvideo.heads_from_state(model.state_dict(), {}) == {"verb": 9, "noun": 12}
    assert spec.bgr is False and spec.config == dataclasses.asdict(cfg)


def test_torchvision_geometry_facts_and_checks():
    assert tvvideo.default_spec("r2plus1d-18")[0].mean == tvvideo.KINETICS_MEAN
    assert tvvideo.default_spec("swin3d-t")[0].std == tvvideo.IMAGENET_STD
    assert (tvvideo.default_spec("mvit-v2-s")[0].num_frames, tvvideo.default_spec("s3d")[0].feature_dim) == (16, 1024)
    with pytest.raises(EgocacheError, match="exactly 16 frames at 224 px"):
        tvvideo.TorchvisionConfig(arch="mvit-v2-s", num_frames=8, img_size=224).check()
    with pytest.raises(EgocacheError, match="img_size=112 is below its minimum 224"):
        tvvideo.TorchvisionConfig(arch="s3d", num_frames=16, img_size=112).check()


# --- model ----------------------------------------------------------------------------------------------

def test_tiny_forward_shapes_tanh_features_and_raw_logits():
    model = tiny()
    with torch.no_grad():
        x = model.preprocess(clips(model, batch=3))
        feats, logits = model(x)
    spec = model.spec
    assert x.shape == (3, 3, spec.num_frames, spec.img_size, spec.img_size) and x.dtype == torch.float32
    assert feats.shape == (3, spec.feature_dim)
    assert feats.abs().max() <= 1.0
    assert list(logits) == ["verb", "noun"]
    for head, classes in spec.heads.items():
        assert logits[head].shape == (3, classes)
        assert (logits[head] < 0).any()  # raw logits, not probabilities
        assert not torch.allclose(logits[head].sum(-1), torch.ones(3))
    torch.testing.assert_close(model.forward_head(model.forward_features(x))["noun"], logits["noun"])


def test_heads_override_uses_official_module_names():
    one = tiny(heads={"action": 5})
    assert hasattr(one, "head") and not hasattr(one, "head0")
    three = tiny(heads={"a": 2, "b": 3, "c": 4})
    assert [three.get_submodule(f"head{i}").out_features for i in range(3)] == [2, 3, 4]
    with torch.no_grad():
        out = three(three.preprocess(clips(three)))[1]
    assert {k: v.shape[1] for k, v in out.items()} == {"a": 2, "b": 3, "c": 4}


def test_forward_rejects_a_wrong_clip_shape():
    model = tiny()
    with pytest.raises(ValueError, match="expected input"):
        model.forward_features(torch.zeros(1, 3, 4, 64, 64))
    with pytest.raises(ValueError, match="expected uint8"):
        model.preprocess(torch.zeros(1, 8, 64, 64, 3))


def reference_trajectory_attention(attn: TrajectoryAttention, x: torch.Tensor, frames: int,
                                   original: bool) -> torch.Tensor:
    """Trajectory attention written the slow, obvious way: explicit per-frame softmaxes."""
    b, n, c = x.shape
    h, s = attn.num_heads, n - 1
    d, p = c // h, s // frames
    scale = d ** -0.5
    q, k, v = (t.reshape(b, n, h, d).transpose(1, 2) for t in attn.qkv(x).split(c, dim=-1))
    cls = torch.softmax(q[:, :, :1] @ k.transpose(-1, -2) * scale, -1) @ v
    qp, kp, vp = q[:, :, 1:], k[:, :, 1:], v[:, :, 1:]
    per_frame = []
    for t in range(frames):
        kt, vt = kp[:, :, t * p:(t + 1) * p], vp[:, :, t * p:(t + 1) * p]
        per_frame.append(torch.softmax(qp @ kt.transpose(-1, -2) * scale, -1) @ vt)
    traj = torch.stack(per_frame, 2).permute(0, 3, 2, 1, 4).reshape(b, s, frames, c)
    own = traj[:, torch.arange(s), torch.arange(s) // p]
    q2 = attn.proj_q(own).reshape(b, s, 1, h, d)
    k2, v2 = attn.proj_kv(traj).split(c, dim=-1)
    weights = torch.softmax((q2 * k2.reshape(b, s, frames, h, d)).sum(-1) * scale, dim=2)
    values = traj if original else v2
    out = (weights.unsqueeze(-1) * values.reshape(b, s, frames, h, d)).sum(2).reshape(b, s, c)
    return attn.proj(torch.cat([cls.transpose(1, 2).reshape(b, 1, c), out], 1))


@pytest.mark.parametrize("original", [True, False])
def test_trajectory_attention_matches_a_naive_reference(original):
    torch.manual_seed(0)
    attn = TrajectoryAttention(24, 3, qkv_bias=True, attn_drop=0.0, proj_drop=0.0,
                               use_original_code=original).eval()
    frames, patches = 3, 4
    x = torch.randn(2, 1 + frames * patches, 24)
    with torch.no_grad():
        torch.testing.assert_close(attn(x, frames), reference_trajectory_attention(attn, x, frames, original))


def test_original_path_ignores_the_value_projection():
    torch.manual_seed(0)
    x = torch.randn(1, 1 + 2 * 4, 24)
    results = {}
    for original in (True, False):
        attn = TrajectoryAttention(24, 3, qkv_bias=True, attn_drop=0.0, proj_drop=0.0,
                                   use_original_code=original).eval()
        with torch.no_grad():
            before = attn(x, 2)
            attn.proj_kv.weight[24:] += 1.0  # the v half of proj_kv
            results[original] = torch.allclose(before, attn(x, 2))
    assert results == {True: True, False: False}


def test_positions_are_spatial_tiled_over_time_plus_temporal():
    model = tiny()
    pos = model._pos_embedding()
    grid = (model.spec.img_size // 16) ** 2
    t = model.cfg.temporal_tokens
    assert pos.shape == (1, 1 + t * grid, model.spec.feature_dim)
    torch.testing.assert_close(pos[0, 0], model.pos_embed[0, 0])
    token = 1 + 2 * grid + 5  # temporal token 2, patch 5
    torch.testing.assert_close(pos[0, token], model.pos_embed[0, 1 + 5] + model.temp_embed[0, 2])


def test_larger_crop_interpolates_the_position_grid():
    model = tiny(img_size=96)
    assert model.pos_embed.shape[1] == 1 + 4 * 4
    with torch.no_grad():
        feats, _ = model(model.preprocess(clips(model, batch=1)))
    assert feats.shape == (1, 96)


def test_preprocess_swaps_to_bgr_and_normalises():
    rgb = torch.empty(1, 8, 64, 64, 3, dtype=torch.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 120, 250
    for bgr, order in ((True, (250, 120, 10)), (False, (10, 120, 250))):
        model = tiny(bgr=bgr)
        x = model.preprocess(rgb)
        for channel, value in enumerate(order):
            torch.testing.assert_close(x[0, channel], torch.full((8, 64, 64), (value / 255 - 0.5) / 0.5))


def test_preprocess_resizes_short_side_and_centre_crops():
    model = tiny()
    frames = torch.zeros(1, 8, 80, 128, 3, dtype=torch.uint8)
    frames[:, :, :, 64:] = 255  # right half white
    x = model.preprocess(frames)
    assert x.shape == (1, 3, 8, 64, 64)
    assert x[0, 0, 0, :, 0].max() == -1.0 and x[0, 0, 0, :, -1].min() == 1.0


# --- checkpoints ----------------------------------------------------------------------------------------

def outputs(model, x):
    with torch.no_grad():
        return model(x)


def test_checkpoint_round_trip_in_the_official_layout(tmp_path):
    model = tiny(seed=3, depth=3)
    path = save_teacher_checkpoint(model, tmp_path / "t.pyth", cfg={"lr": 1e-4, "epochs": 2}, epoch=2,
                           extra={"optimizer_state": {"step": torch.tensor(5)}})
    raw = torch.load(path, weights_only=True)
    assert {"model_state", "cfg", "epoch", "teacher", "optimizer_state"} <= set(raw)
    assert yaml.safe_load(raw["cfg"]) == {"lr": 1e-4, "epochs": 2} and raw["epoch"] == 2
    x = model.preprocess(clips(model))
    feats, logits = outputs(model, x)
    loaded = create_teacher("mformer-tiny", checkpoint=path)  # depth read back from the checkpoint
    assert loaded.cfg.depth == 3 and loaded.spec == model.spec
    feats2, logits2 = outputs(loaded, x)
    torch.testing.assert_close(feats2, feats)
    torch.testing.assert_close(logits2["noun"], logits["noun"])
    fresh = tiny(seed=9, depth=3)
    assert load_teacher_checkpoint(fresh, path)["epoch"] == 2
    torch.testing.assert_close(outputs(fresh, x)[0], feats)
    assert checkpoint_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not list(tmp_path.glob(".*tmp*"))


def test_official_checkpoint_with_module_prefix_and_yaml_cfg_loads(tmp_path):
    model = tiny(seed=4, heads={"verb": 7, "noun": 11})
    official_cfg = {"TRAIN": {"DATASET": "Epickitchens"},
                    "DATA": {"NUM_FRAMES": 8, "SAMPLING_RATE": 8, "TRAIN_CROP_SIZE": 64,
                             "MEAN": [0.5, 0.5, 0.5], "STD": [0.5, 0.5, 0.5]},
                    "VIT": {"PATCH_SIZE": 16, "PATCH_SIZE_TEMP": 2, "EMBED_DIM": 96, "DEPTH": 2,
                            "NUM_HEADS": 3, "MLP_RATIO": 4, "QKV_BIAS": True, "ATTN_LAYER": "trajectory",
                            "USE_ORIGINAL_TRAJ_ATTN_CODE": True}}
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "official.pyth"
    torch.save({"epoch": 1, "model_state": state, "cfg": yaml.safe_dump(official_cfg),
                "optimizer_state": {}}, path)
    loaded = create_teacher("mformer-tiny", checkpoint=path)
    assert loaded.spec.heads == {"verb": 7, "noun": 11}  # class counts from the classifier weights
    assert loaded.spec.bgr is True  # EPIC-Kitchens loader fed BGR
    x = model.preprocess(clips(model))
    torch.testing.assert_close(outputs(loaded, x)[0], outputs(model, x)[0])


def test_official_cfg_gives_the_336_crop_and_refuses_other_attention():
    cfg = yaml.safe_dump({"TRAIN": {"DATASET": "Kinetics"},
                          "DATA": {"TRAIN_CROP_SIZE": 336, "NUM_FRAMES": 16},
                          "VIT": {"ATTN_LAYER": "trajectory", "DEPTH": 12}})
    assert official_overrides(cfg) == {"img_size": 336, "num_frames": 16, "depth": 12,
                                       "use_original_code": True, "bgr": False}
    with pytest.raises(CheckpointError, match="divided"):
        official_overrides(yaml.safe_dump({"VIT": {"ATTN_LAYER": "divided"}}))


def test_mismatched_state_lists_missing_unexpected_and_misshaped_keys(tmp_path):
    model = tiny()
    state = model.state_dict()
    del state["blocks.1.attn.proj_q.bias"]
    state["blocks.9.mlp.fc1.weight"] = torch.zeros(2)
    state["temp_embed"] = torch.zeros(1, 5, 96)
    path = tmp_path / "bad.pyth"
    torch.save({"model_state": state, "cfg": "", "epoch": 0}, path)
    with pytest.raises(CheckpointError) as err:
        create_teacher("mformer-tiny", checkpoint=path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing (1): blocks.1.attn.proj_q.bias" in msg
    assert "unexpected (1): blocks.9.mlp.fc1.weight" in msg
    assert "mis-shaped (1): temp_embed (checkpoint (1, 5, 96), model (1, 4, 96))" in msg


def test_checkpoint_from_another_teacher_is_refused(tmp_path):
    path = save_teacher_checkpoint(tiny(), tmp_path / "t.pyth", cfg={})
    with pytest.raises(CheckpointError, match="saved from teacher 'mformer-tiny', not 'mformer'"):
        create_teacher("mformer", checkpoint=path)


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pyth"
    torch.save({"model_state": tiny().state_dict(), "cfg": "", "payload": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match=r"refused.*system") as exc:
        create_teacher("mformer-tiny", checkpoint=path)
    assert not marker.exists()
    assert "weights_only" not in str(exc.value) and "\n" not in str(exc.value)


def test_unreadable_or_missing_checkpoints_raise(tmp_path):
    junk = tmp_path / "junk.pyth"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pyth"):
        load_teacher_checkpoint(tiny(), junk)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        checkpoint_sha256(tmp_path / "absent.pyth")
    with pytest.raises(CheckpointError, match="reserved"):
        save_teacher_checkpoint(tiny(), tmp_path / "x.pyth", cfg={}, extra={"model_state": {}})


# --- the full-size model, measured on the meta device --------------------------------------------------

# Written from facebookresearch/Motionformer (video_model_builder.py VisionTransformer, vit_helper.py
# Block/TrajectoryAttention/Mlp/PatchEmbed*) for the EPIC config: the key set and shapes of model_state.
OFFICIAL_TOP = {
    "cls_token": (1, 1, 768), "pos_embed": (1, 197, 768), "temp_embed": (1, 8, 768),
    "patch_embed.proj.weight": (768, 3, 16, 16), "patch_embed.proj.bias": (768,),
    "patch_embed_3d.proj.weight": (768, 3, 2, 16, 16), "patch_embed_3d.proj.bias": (768,),
    "norm.weight": (768,), "norm.bias": (768,),
    "pre_logits.fc.weight": (768, 768), "pre_logits.fc.bias": (768,),
    "head0.weight": (97, 768), "head0.bias": (97,), "head1.weight": (300, 768), "head1.bias": (300,),
}
OFFICIAL_BLOCK = {
    "norm1.weight": (768,), "norm1.bias": (768,),
    "attn.qkv.weight": (2304, 768), "attn.qkv.bias": (2304,),
    "attn.proj_q.weight": (768, 768), "attn.proj_q.bias": (768,),
    "attn.proj_kv.weight": (1536, 768), "attn.proj_kv.bias": (1536,),
    "attn.proj.weight": (768, 768), "attn.proj.bias": (768,),
    "norm2.weight": (768,), "norm2.bias": (768,),
    "mlp.fc1.weight": (3072, 768), "mlp.fc1.bias": (3072,),
    "mlp.fc2.weight": (768, 3072), "mlp.fc2.bias": (768,),
}


def test_base_state_dict_has_the_official_keys_and_shapes():
    with torch.device("meta"):
        model = create_teacher("mformer")
    expected = dict(OFFICIAL_TOP)
    for i in range(12):
        expected.update({f"blocks.{i}.{k}": v for k, v in OFFICIAL_BLOCK.items()})
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected


def test_base_params_and_gflops_per_view():
    stats = teacher_stats("mformer")
    assert stats["params"] == 109_142_413  # ~109M, as published
    assert 369.0 < stats["gflops"] < 370.0  # ~370 GFLOPs per 16x224^2 view, 1 MAC = 1 FLOP


# --- CLI ------------------------------------------------------------------------------------------------

def test_cli_lists_teachers_with_stats():
    runner = CliRunner()
    plain = runner.invoke(main, ["teachers"])
    assert plain.exit_code == 0, plain.output
    assert any(ln.startswith("mformer ") for ln in plain.output.splitlines()) and "BGR" in plain.output
    stats = runner.invoke(main, ["teachers", "--stats"])
    assert stats.exit_code == 0, stats.output
    line = next(ln for ln in stats.output.splitlines() if ln.startswith("mformer "))
    assert "109.1M params" in line and "369.4 GFLOPs/clip" in line
    as_json = runner.invoke(main, ["teachers", "--json"])
    rows = {r["name"]: r for r in json.loads(as_json.output)}
    assert rows["mformer"]["heads"] == {"verb": 97, "noun": 300} and rows["mformer-tiny"]["bgr"] is False


def test_tubelet_projection_equals_the_conv3d_it_stores():
    from egocache.pipeline.teachers.mformer import PatchEmbed3D

    torch.manual_seed(0)
    embed = PatchEmbed3D(tubelet=2, patch=16, dim=24)
    x = torch.randn(2, 3, 4, 32, 48)
    want = embed.proj(x).flatten(2).transpose(1, 2)   # time-major tokens of the stored Conv3d
    assert torch.allclose(embed(x), want, atol=1e-5)
