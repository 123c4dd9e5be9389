"""Tests of the student models: torchvision-identical ResNet-18, IMU CNN, variants, GRU, freezing."""

from __future__ import annotations

import pytest
import torch

from egocache.errors import CheckpointError, ConfigError
from egocache.student.imu_encoder import ImuEncoder
from egocache.student.models import ImageEncoder, build_student
from egocache.student.variants import list_variants
from egocache.student.resnet import ResNet18, load_image_weights

HEADS = {"verb": 5, "noun": 7}
SIZE = 32
AUDIO_SHAPE = (201, 40)

# torchvision.models.resnet18().state_dict(): names and shapes, in order (written out by hand).
TORCHVISION_RESNET18 = [
    ('conv1.weight', (64, 3, 7, 7)),
    ('bn1.weight', (64,)),
    ('bn1.bias', (64,)),
    ('bn1.running_mean', (64,)),
    ('bn1.running_var', (64,)),
    ('bn1.num_batches_tracked', ()),
    ('layer1.0.conv1.weight', (64, 64, 3, 3)),
    ('layer1.0.bn1.weight', (64,)),
    ('layer1.0.bn1.bias', (64,)),
    ('layer1.0.bn1.running_mean', (64,)),
    ('layer1.0.bn1.running_var', (64,)),
    ('layer1.0.bn1.num_batches_tracked', ()),
    ('layer1.0.conv2.weight', (64, 64, 3, 3)),
    ('layer1.0.bn2.weight', (64,)),
    ('layer1.0.bn2.bias', (64,)),
    ('layer1.0.bn2.running_mean', (64,)),
    ('layer1.0.bn2.running_var', (64,)),
    ('layer1.0.bn2.num_batches_tracked', ()),
    ('layer1.1.conv1.weight', (64, 64, 3, 3)),
    ('layer1.1.bn1.weight', (64,)),
    ('layer1.1.bn1.bias', (64,)),
    ('layer1.1.bn1.running_mean', (64,)),
    ('layer1.1.bn1.running_var', (64,)),
    ('layer1.1.bn1.num_batches_tracked', ()),
    ('layer1.1.conv2.weight', (64, 64, 3, 3)),
    ('layer1.1.bn2.weight', (64,)),
    ('layer1.1.bn2.bias', (64,)),
    ('layer1.1.bn2.running_mean', (64,)),
    ('layer1.1.bn2.running_var', (64,)),
    ('layer1.1.bn2.num_batches_tracked', ()),
    ('layer2.0.conv1.weight', (128, 64, 3, 3)),
    ('layer2.0.bn1.weight', (128,)),
    ('layer2.0.bn1.bias', (128,)),
    ('layer2.0.bn1.running_mean', (128,)),
    ('layer2.0.bn1.running_var', (128,)),
    ('layer2.0.bn1.num_batches_tracked', ()),
    ('layer2.0.conv2.weight', (128, 128, 3, 3)),
    ('layer2.0.bn2.weight', (128,)),
    ('layer2.0.bn2.bias', (128,)),
    ('layer2.0.bn2.running_mean', (128,)),
    ('layer2.0.bn2.running_var', (128,)),
    ('layer2.0.bn2.num_batches_tracked', ()),
    ('layer2.0.downsample.0.weight', (128, 64, 1, 1)),
    ('layer2.0.downsample.1.weight', (128,)),
    ('layer2.0.downsample.1.bias', (128,)),
    ('layer2.0.downsample.1.running_mean', (128,)),
    ('layer2.0.downsample.1.running_var', (128,)),
    ('layer2.0.downsample.1.num_batches_tracked', ()),
    ('layer2.1.conv1.weight', (128, 128, 3, 3)),
    ('layer2.1.bn1.weight', (128,)),
    ('layer2.1.bn1.bias', (128,)),
    ('layer2.1.bn1.running_mean', (128,)),
    ('layer2.1.bn1.running_var', (128,)),
    ('layer2.1.bn1.num_batches_tracked', ()),
    ('layer2.1.conv2.weight', (128, 128, 3, 3)),
    ('layer2.1.bn2.weight', (128,)),
    ('layer2.1.bn2.bias', (128,)),
    ('layer2.1.bn2.running_mean', (128,)),
    ('layer2.1.bn2.running_var', (128,)),
    ('layer2.1.bn2.num_batches_tracked', ()),
    ('layer3.0.conv1.weight', (256, 128, 3, 3)),
    ('layer3.0.bn1.weight', (256,)),
    ('layer3.0.bn1.bias', (256,)),
    ('layer3.0.bn1.running_mean', (256,)),
    ('layer3.0.bn1.running_var', (256,)),
    ('layer3.0.bn1.num_batches_tracked', ()),
    ('layer3.0.conv2.weight', (256, 256, 3, 3)),
    ('layer3.0.bn2.weight', (256,)),
    ('layer3.0.bn2.bias', (256,)),
    ('layer3.0.bn2.running_mean', (256,)),
    ('layer3.0.bn2.running_var', (256,)),
    ('layer3.0.bn2.num_batches_tracked', ()),
    ('layer3.0.downsample.0.weight', (256, 128, 1, 1)),
    ('layer3.0.downsample.1.weight', (256,)),
    ('layer3.0.downsample.1.bias', (256,)),
    ('layer3.0.downsample.1.running_mean', (256,)),
    ('layer3.0.downsample.1.running_var', (256,)),
    ('layer3.0.downsample.1.num_batches_tracked', ()),
    ('layer3.1.conv1.weight', (256, 256, 3, 3)),
    ('layer3.1.bn1.weight', (256,)),
    ('layer3.1.bn1.bias', (256,)),
    ('layer3.1.bn1.running_mean', (256,)),
    ('layer3.1.bn1.running_var', (256,)),
    ('layer3.1.bn1.num_batches_tracked', ()),
    ('layer3.1.conv2.weight', (256, 256, 3, 3)),
    ('layer3.1.bn2.weight', (256,)),
    ('layer3.1.bn2.bias', (256,)),
    ('layer3.1.bn2.running_mean', (256,)),
    ('layer3.1.bn2.running_var', (256,)),
    ('layer3.1.bn2.num_batches_tracked', ()),
    ('layer4.0.conv1.weight', (512, 256, 3, 3)),
    ('layer4.0.bn1.weight', (512,)),
    ('layer4.0.bn1.bias', (512,)),
    ('layer4.0.bn1.running_mean', (512,)),
    ('layer4.0.bn1.running_var', (512,)),
    ('layer4.0.bn1.num_batches_tracked', ()),
    ('layer4.0.conv2.weight', (512, 512, 3, 3)),
    ('layer4.0.bn2.weight', (512,)),
    ('layer4.0.bn2.bias', (512,)),
    ('layer4.0.bn2.running_mean', (512,)),
    ('layer4.0.bn2.running_var', (512,)),
    ('layer4.0.bn2.num_batches_tracked', ()),
    ('layer4.0.downsample.0.weight', (512, 256, 1, 1)),
    ('layer4.0.downsample.1.weight', (512,)),
    ('layer4.0.downsample.1.bias', (512,)),
    ('layer4.0.downsample.1.running_mean', (512,)),
    ('layer4.0.downsample.1.running_var', (512,)),
    ('layer4.0.downsample.1.num_batches_tracked', ()),
    ('layer4.1.conv1.weight', (512, 512, 3, 3)),
    ('layer4.1.bn1.weight', (512,)),
    ('layer4.1.bn1.bias', (512,)),
    ('layer4.1.bn1.running_mean', (512,)),
    ('layer4.1.bn1.running_var', (512,)),
    ('layer4.1.bn1.num_batches_tracked', ()),
    ('layer4.1.conv2.weight', (512, 512, 3, 3)),
    ('layer4.1.bn2.weight', (512,)),
    ('layer4.1.bn2.bias', (512,)),
    ('layer4.1.bn2.running_mean', (512,)),
    ('layer4.1.bn2.running_var', (512,)),
    ('layer4.1.bn2.num_batches_tracked', ()),
    ('fc.weight', (1000, 512)),
    ('fc.bias', (1000,)),
]


def _batch(n: int, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A tiny random cache-like batch: uint8 frames (b,n,32,32,3), a (b,422,6) IMU window and a (b,201,40)
    float16 log spectrogram."""
    g = torch.Generator().manual_seed(seed)
    return {"frames": torch.randint(0, 256, (b, n, SIZE, SIZE, 3), generator=g, dtype=torch.uint8),
            "first_last": torch.randint(0, 256, (b, 2, SIZE, SIZE, 3), generator=g, dtype=torch.uint8),
            "imu": torch.randn(b, 422, 6, generator=g),
            "audio": (torch.randn(b, *AUDIO_SHAPE, generator=g) - 5.0).half()}


def _student(variant: str, n: int = 1):
    torch.manual_seed(0)
    return build_student(variant, frames=n, feature_dim=24, heads=HEADS, audio_shape=AUDIO_SHAPE).eval()


def _torchvision_file(tmp_path, *, drop_counters: bool = False) -> tuple[str, dict]:
    """A resnet18 state_dict file built from the hand-written key list, seeded random values."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for name, shape in TORCHVISION_RESNET18:
        if name.endswith("num_batches_tracked"):
            if not drop_counters:
                state[name] = torch.tensor(1234, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        else:
            state[name] = torch.randn(shape, generator=g)
    path = str(tmp_path / "resnet18-f37072fd.pth")
    torch.save(state, path)
    return path, state


def test_resnet_keys_and_shapes_match_torchvision():
    assert len(TORCHVISION_RESNET18) == 122
    own = ResNet18().state_dict()
    assert [(k, tuple(v.shape)) for k, v in own.items()] == TORCHVISION_RESNET18
    assert sum(p.numel() for p in ResNet18().parameters()) == 11_689_512


def test_load_image_weights_strict_copies_values(tmp_path):
    path, state = _torchvision_file(tmp_path)
    net = ResNet18()
    load_image_weights(net, path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_load_image_weights_fills_missing_batch_counters(tmp_path):
    path, state = _torchvision_file(tmp_path, drop_counters=True)
    net = ResNet18()
    load_image_weights(net, path)
    assert int(net.bn1.num_batches_tracked) == 0
    assert torch.equal(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_build_student_loads_image_weights(tmp_path):
    path, state = _torchvision_file(tmp_path)
    s = build_student("egodistill", frames=1, feature_dim=24, heads=HEADS, image_weights=path)
    assert torch.equal(s.image_encoder.backbone.conv1.weight, state["conv1.weight"])


@pytest.mark.parametrize("edit, expected", [
    (lambda s: s.pop("layer2.0.downsample.0.weight"), "missing (1): layer2.0.downsample.0.weight"),
    (lambda s: s.update({"fc.extra": torch.zeros(1)}), "unexpected (1): fc.extra"),
    (lambda s: s.update({"fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}),
     "mis-shaped (2): fc.weight file (10, 512) vs model (1000, 512)"),
])
def test_load_image_weights_lists_mismatches(tmp_path, edit, expected):
    path, state = _torchvision_file(tmp_path)
    edit(state)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_image_weights(ResNet18(), path)
    assert path in str(err.value) and expected in str(err.value)


class _Pickled:
    """An arbitrary class: weights_only loading must refuse to unpickle it."""


@pytest.mark.parametrize("content, expected", [
    (None, "not found"),
    ([torch.zeros(1)], "expected a plain state_dict"),
    ({"conv1.weight": _Pickled()}, "weights-only"),
])
def test_load_image_weights_refuses_bad_files(tmp_path, content, expected):
    path = str(tmp_path / "w.pth")
    if content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError, match=expected):
        load_image_weights(ResNet18(), path)


def test_normalize_scales_and_standardises():
    frames = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 4, 4, 3)
    x = ImageEncoder().normalize(frames.contiguous())
    assert x.shape == (2, 3, 4, 4)
    expected = [(0.0 - 0.485) / 0.229, (1.0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected))
    with pytest.raises(ValueError, match="uint8"):
        ImageEncoder().normalize(frames.float())


@pytest.mark.parametrize("variant", list_variants())
@pytest.mark.parametrize("n", [1, 2, 4])
def test_every_variant_and_frame_count_has_the_documented_shapes(variant, n):
    s = _student(variant, n)
    batch = _batch(n)
    with torch.no_grad():
        out = s(batch)
        img = s.image_features(batch["frames"])
        again = s.forward_from_image_features(img, s.sensor_input(batch))
    assert out["feature"].shape == (3, 24)
    assert {h: v.shape for h, v in out["logits"].items()} == {"verb": (3, 5), "noun": (3, 7)}
    assert img.shape == (3, n, 512)
    assert torch.allclose(again["feature"], out["feature"], atol=1e-5)
    assert (s.gru is not None) == (n > 1)
    assert (s.imu_encoder is not None) == (variant in ("egodistill", "visimu"))
    assert (s.audio_encoder is not None) == (variant == "listentolook")
    assert (s.fusion is not None) == (s.predictor is not None) == (variant in ("egodistill", "visimu", "listentolook"))
    assert s.distill == (variant.endswith("distill") or variant == "listentolook")


def test_gru_aggregates_frames_in_order_only_when_n_above_one():
    s = _student("egodistill", 2)
    batch = _batch(2)
    calls = []
    s.gru.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        out = s(batch)["feature"]
        swapped = s({**batch, "frames": batch["frames"].flip(1)})["feature"]
    assert calls and not torch.allclose(out, swapped)
    one = _student("visonly", 1)
    img = torch.randn(3, 1, 512)
    with torch.no_grad():
        assert torch.allclose(one.forward_from_image_features(img)["feature"], one.projection(img[:, 0]))


def test_imu_changes_the_output_only_for_imu_variants_and_audio_only_for_listentolook():
    batch = _batch(1)
    for key in ("imu", "audio"):
        other = {**batch, key: batch[key].flip(0)}
        with torch.no_grad():
            for variant in ("egodistill", "visonly-distill", "listentolook"):
                s = _student(variant)
                changed = not torch.allclose(s(batch)["feature"], s(other)["feature"])
                assert changed == (s.sensor_key == key), (variant, key)


def test_listentolook_is_egodistill_with_a_2d_audio_cnn_in_place_of_the_imu_encoder():
    ego, ltl = _student("egodistill", 2), _student("listentolook", 2)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()  # noqa: E731
                        if not k.startswith(("imu_encoder.", "audio_encoder."))}
    assert shapes(ego) == shapes(ltl)                                   # same f_I, GRU, Π, h, heads
    assert ltl.audio_encoder.out_dim == ego.imu_encoder.out_dim == 256
    assert [type(m).__name__ for m in ltl.audio_encoder.cnn][:4] == ["Conv2d", "BatchNorm2d", "GELU", "Dropout"]
    with torch.no_grad():
        out = ltl.pretrain_forward(_batch(2))
    assert out["pred_imu"].shape == out["imu_feature"].shape == (3, 256) and out["feature"].shape == (3, 24)
    with pytest.raises(ValueError, match="needs an 'audio'"):
        ltl({"frames": _batch(2)["frames"]})
    with pytest.raises(ValueError, match="audio must be"):
        ltl({**_batch(2), "audio": torch.zeros(3, 100, 40)})
    with pytest.raises(ValueError, match="needs audio_shape"):
        build_student("listentolook", frames=1, feature_dim=8, heads=HEADS)


def test_bad_inputs_raise_clear_errors():
    s = _student("egodistill", 2)
    batch = _batch(2)
    with pytest.raises(ValueError, match="2-frame student"):
        s({**batch, "frames": batch["frames"][:, :1]})
    with pytest.raises(ValueError, match="needs an 'imu'"):
        s({"frames": batch["frames"]})
    with pytest.raises(ValueError, match="IMU must be"):
        s({**batch, "imu": batch["imu"][..., :3]})
    with pytest.raises(ConfigError, match="unknown student variant 'big'"):
        build_student("big", frames=1, feature_dim=8, heads=HEADS)
    with pytest.raises(ValueError, match="no IMU or audio branch"):
        _student("visonly").pretrain_forward(_batch(1))


def test_imu_encoder_is_causal_with_brossard_receptive_field():
    torch.manual_seed(0)
    enc = ImuEncoder().eval()
    assert enc.receptive_field == 511 and enc.out_dim == 256
    x = torch.randn(2, 600, 6)
    y = x.clone()
    y[:, 10] += 5.0
    with torch.no_grad():
        a, b = enc.sequence(x), enc.sequence(y)
        assert a.shape == (2, 128, 600)
        changed = (a - b).abs().amax(dim=(0, 1)) > 1e-6
        assert not changed[:10].any() and changed[10] and changed[520] and not changed[521:].any()
        assert enc(torch.randn(4, 422, 6)).shape == (4, 256)
    widths = [m.out_channels for m in enc.cnn if isinstance(m, torch.nn.Conv1d)]
    dilations = [m.dilation[0] for m in enc.cnn if isinstance(m, torch.nn.Conv1d)]
    assert widths == [16, 32, 64, 128, 128] and dilations == [1, 4, 16, 64, 1]


def test_imu_input_stats_standardise_and_are_checkpointed():
    torch.manual_seed(0)
    enc = ImuEncoder().eval()
    mean, std = torch.arange(6.0), torch.full((6,), 2.0)
    x = torch.randn(2, 50, 6)
    with torch.no_grad():
        plain = enc(x)
        enc.set_input_stats(mean, std)
        assert torch.allclose(enc(x * 2.0 + mean), plain, atol=1e-5)
    assert torch.equal(enc.state_dict()["input_mean"], mean)
    with pytest.raises(ValueError, match="positive"):
        enc.set_input_stats(mean, torch.zeros(6))


def test_frozen_image_encoder_gets_no_gradient_and_keeps_batchnorm_stats():
    s = _student("egodistill", 2)
    s.freeze_image_encoder()
    s.train()
    assert not s.image_encoder.training and s.imu_encoder.training
    stats = s.image_encoder.backbone.bn1.running_mean.clone()
    out = s.pretrain_forward(_batch(2))
    (out["pred_imu"].sum() + out["feature"].sum()).backward()
    assert torch.equal(stats, s.image_encoder.backbone.bn1.running_mean)
    assert all(p.grad is None for p in s.image_encoder.parameters())
    for part in (s.gru, s.imu_encoder, s.fusion, s.predictor):
        assert all(p.grad is not None for p in part.parameters())
    assert all(p.grad is None for p in s.classifiers.parameters())
    assert out["pred_imu"].shape == out["imu_feature"].shape == (3, 256)


def test_imagenet_fc_is_never_trainable():
    s = _student("egodistill")
    assert not any(p.requires_grad for p in s.image_encoder.backbone.fc.parameters())
    s.freeze_image_encoder(False)
    assert s.image_encoder.backbone.conv1.weight.requires_grad
    assert not s.image_encoder.backbone.fc.weight.requires_grad


@pytest.mark.parametrize("variant", list_variants())
def test_checkpoint_round_trip_rebuilds_from_config(tmp_path, variant):
    s = _student(variant, 2)
    path = tmp_path / "student.pt"
    torch.save({"config": s.config, "model": s.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    t = build_student(**ckpt["config"]).eval()
    t.load_state_dict(ckpt["model"], strict=True)
    batch = _batch(2)
    with torch.no_grad():
        assert torch.allclose(s(batch)["feature"], t(batch)["feature"])


def test_parameter_counts_of_the_student_parts():
    s = build_student("egodistill", frames=4, feature_dim=768, heads={"verb": 97})
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(s.image_encoder) == 11_689_512
    assert count(s.gru) == 3 * (512 * 512 * 2 + 2 * 512)
    assert count(s.fusion) == (768 * 1024 + 1024) + (1024 * 768 + 768)
    assert count(s.predictor) == (1024 * 1024 + 1024) + (1024 * 256 + 256)
    convs = 6 * 16 * 7 + 16 + 16 * 32 * 7 + 32 + 32 * 64 * 7 + 64 + 64 * 128 * 7 + 128 + 128 * 128 + 128
    assert count(s.imu_encoder) == convs + 2 * (16 + 32 + 64 + 128)
