"""Tests of a3ext.models: real EfficientNet-Lite0 weights on real photos, SqueezeNet
against a torchvision-format state dict and a functional reference, the shared
preprocess/deprocess/extract_features interface and the weight-file errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from a3ext import assets, models
from a3ext.models import Conv2dSame, WeightsError

# torchvision squeezenet1_1: features index -> Fire(inplanes, squeeze, expand1x1, expand3x3)
FIRES = {3: (64, 16, 64, 64), 4: (128, 16, 64, 64), 6: (128, 32, 128, 128), 7: (256, 32, 128, 128),
         9: (256, 48, 192, 192), 10: (384, 48, 192, 192), 11: (384, 64, 256, 256), 12: (512, 64, 256, 256)}
POOLS = (2, 5, 8)

# the assignment's feature shapes for one 224x224 image, features[0..12]
SQUEEZENET_FEATURES_224 = [(64, 111, 111), (64, 111, 111), (64, 55, 55), (128, 55, 55), (128, 55, 55),
                           (128, 27, 27), (256, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13),
                           (384, 13, 13), (512, 13, 13), (512, 13, 13)]
EFFNET_FEATURES_224 = ([(32, 112, 112), (16, 112, 112)] + [(24, 56, 56)] * 2 + [(40, 28, 28)] * 2
                       + [(80, 14, 14)] * 3 + [(112, 14, 14)] * 3 + [(192, 7, 7)] * 4 + [(320, 7, 7)])


def torchvision_squeezenet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly torchvision's squeezenet1_1 keys and shapes, random values."""
    shapes = {"features.0.weight": (64, 3, 3, 3), "features.0.bias": (64,)}
    for i, (inplanes, squeeze, e1, e3) in FIRES.items():
        shapes[f"features.{i}.squeeze.weight"] = (squeeze, inplanes, 1, 1)
        shapes[f"features.{i}.squeeze.bias"] = (squeeze,)
        shapes[f"features.{i}.expand1x1.weight"] = (e1, squeeze, 1, 1)
        shapes[f"features.{i}.expand1x1.bias"] = (e1,)
        shapes[f"features.{i}.expand3x3.weight"] = (e3, squeeze, 3, 3)
        shapes[f"features.{i}.expand3x3.bias"] = (e3,)
    shapes["classifier.1.weight"] = (1000, 512, 1, 1)
    shapes["classifier.1.bias"] = (1000,)
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * (0.1 if len(s) > 1 else 0.01) for k, s in shapes.items()}


def reference_squeezenet(sd: dict[str, torch.Tensor], x: torch.Tensor):
    """SqueezeNet 1.1 written with torch.nn.functional only: (features list, logits)."""
    feats = [F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], stride=2)]
    feats.append(F.relu(feats[-1]))
    for i in range(2, 13):
        h = feats[-1]
        if i in POOLS:
            feats.append(F.max_pool2d(h, 3, 2, ceil_mode=True))
            continue
        p = f"features.{i}."
        s = F.relu(F.conv2d(h, sd[p + "squeeze.weight"], sd[p + "squeeze.bias"]))
        feats.append(torch.cat([F.relu(F.conv2d(s, sd[p + "expand1x1.weight"], sd[p + "expand1x1.bias"])),
                                F.relu(F.conv2d(s, sd[p + "expand3x3.weight"], sd[p + "expand3x3.bias"], padding=1))], 1))
    logits = F.relu(F.conv2d(feats[-1], sd["classifier.1.weight"], sd["classifier.1.bias"])).mean(dim=(2, 3))
    return feats, logits


@pytest.fixture(scope="module")
def effnet():
    return models.efficientnet_lite0()


@pytest.fixture(scope="module")
def squeezenet_file(tmp_path_factory):
    sd = torchvision_squeezenet_state_dict()
    file = tmp_path_factory.mktemp("weights") / "squeezenet1_1.pth"
    torch.save(sd, file)
    return sd, file


def assert_frozen(model):
    assert not model.training and not any(m.training for m in model.modules())
    assert all(not p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- EfficientNet-Lite0


def test_efficientnet_loads_the_real_weights_strictly(effnet):
    state = torch.load(assets.path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    assert list(effnet.state_dict()) == list(state) and len(state) == 296
    for k, v in state.items():
        assert torch.equal(effnet.state_dict()[k], v), k
    assert sum(p.numel() for p in effnet.parameters()) == 4_652_008
    assert effnet._bn0.eps == 1e-3
    assert_frozen(effnet)


def test_efficientnet_top1_on_real_photos(effnet):
    photos = [n for n in assets.names("photo") if assets.info(n).imagenet_class is not None]
    assert len(photos) >= 10
    x = torch.cat([effnet.preprocess(assets.image(n)) for n in photos])
    with torch.no_grad():
        probs = effnet(x).softmax(dim=1)
    top1 = probs.argmax(dim=1).tolist()
    got = {n: (c, effnet.labels[c]) for n, c in zip(photos, top1)}
    expected = {n: (assets.info(n).imagenet_class, effnet.labels[assets.info(n).imagenet_class]) for n in photos}
    assert got == expected
    assert got["coffee"][1] == "espresso" and got["baboon"][1] == "baboon"
    assert float(probs[photos.index("coffee"), 967]) > 0.9


def test_efficientnet_features_and_logits_shapes(effnet):
    x = effnet.preprocess(assets.image("squirrel_cls"))
    with torch.no_grad():
        feats = effnet.extract_features(x)
        logits = effnet(torch.cat([x, x]))
    assert [tuple(f.shape[1:]) for f in feats] == EFFNET_FEATURES_224
    assert all(f.shape[0] == 1 for f in feats)
    assert logits.shape == (2, 1000) and torch.allclose(logits[0], logits[1], atol=1e-5)


def test_conv2d_same_pads_like_tensorflow():
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, 3, stride=2)
    for n, pad in [(224, (0, 1)), (225, (1, 1)), (7, (1, 1)), (8, (0, 1))]:
        x = torch.randn(1, 2, n, n)
        want = F.conv2d(F.pad(x, [pad[0], pad[1], pad[0], pad[1]]), conv.weight, stride=2)
        got = conv(x)
        assert got.shape[-1] == -(-n // 2) and torch.allclose(got, want, atol=1e-6), n
    conv5 = Conv2dSame(1, 1, 5, stride=1)
    x = torch.randn(1, 1, 9, 6)
    assert torch.allclose(conv5(x), F.conv2d(x, conv5.weight, padding=2), atol=1e-6)


def test_input_gradient_for_saliency(effnet):
    x = effnet.preprocess(assets.image("coffee")).requires_grad_(True)
    effnet(x)[0, 967].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in effnet.parameters())


# --------------------------------------------------------------------------- shared interface


@pytest.mark.parametrize("which", ["effnet", "squeezenet"])
def test_preprocess_deprocess(which, effnet):
    model = effnet if which == "effnet" else models.squeezenet1_1()
    x = model.preprocess(assets.image("coffee"))  # 600x400
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    low, high = model.pixel_range
    assert low.shape == high.shape == (1, 3, 1, 1)
    assert bool((x >= low - 1e-6).all() and (x <= high + 1e-6).all())
    assert model.preprocess(assets.image("coffee"), size=192, crop=False).shape == (1, 3, 192, 288)
    assert model.preprocess(assets.image("scream"), size=100).shape == (1, 3, 100, 100)

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    y = model.preprocess(Image.fromarray(pixels), size=40, crop=False)  # no resampling at this size
    back = model.deprocess(y)
    assert back.mode == "RGB" and back.size == (56, 40)
    assert np.array_equal(np.asarray(back), pixels)
    assert np.array_equal(np.asarray(model.deprocess(y[0])), pixels)
    stretched = np.asarray(model.deprocess(y * 0.1, rescale=True))
    assert stretched.min() == 0 and stretched.max() == 255
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\).*got \(2, 3, 40, 56\)"):
        model.deprocess(torch.cat([y, y]))
    with pytest.raises(TypeError, match="PIL.Image.Image"):
        model.preprocess(pixels)


def test_normalisation_constants(effnet):
    img = Image.new("RGB", (8, 8), (255, 0, 127))
    x = effnet.preprocess(img, size=8)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, -127 / 128, 0.0]), atol=1e-6)  # (v - 127) / 128
    low, high = effnet.pixel_range
    assert torch.allclose(low.flatten(), torch.full((3,), -127 / 128)) and torch.allclose(high, torch.ones(1, 3, 1, 1))
    squeeze = models.squeezenet1_1()
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(squeeze.preprocess(img, size=8)[0, :, 0, 0],
                          (torch.tensor([1.0, 0.0, 127 / 255]) - mean) / std, atol=1e-6)
    assert torch.allclose(squeeze.pixel_range[0].flatten(), -mean / std)
    assert squeeze.labels[967] == "espresso" and len(effnet.labels) == 1000


# --------------------------------------------------------------------------- SqueezeNet


def test_squeezenet_loads_torchvision_state_dict(squeezenet_file):
    sd, file = squeezenet_file
    model = models.squeezenet1_1(weights=file)
    assert_frozen(model)
    assert set(model.state_dict()) == set(sd)
    for k, v in sd.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert len(model.features) == 13 and isinstance(model.features[12], models.Fire)

    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats, logits = model.extract_features(x), model(x)
    assert [tuple(f.shape[1:]) for f in feats] == SQUEEZENET_FEATURES_224
    ref_feats, ref_logits = reference_squeezenet(sd, x)
    for i, (f, r) in enumerate(zip(feats, ref_feats)):
        assert torch.allclose(f, r, rtol=1e-4, atol=1e-4), i
    assert logits.shape == (2, 1000) and torch.allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)
    assert not torch.equal(feats[0], feats[1])  # ReLU not in place: layer 0's output keeps its negatives


def test_squeezenet_random_init_and_mapping(squeezenet_file):
    sd, _ = squeezenet_file
    model = models.squeezenet1_1()
    assert_frozen(model)
    assert set(model.state_dict()) == set(sd)
    assert torch.equal(models.squeezenet1_1(weights=sd).features[0].weight, sd["features.0.weight"])


def test_weights_errors(tmp_path, squeezenet_file):
    sd, _ = squeezenet_file
    with pytest.raises(FileNotFoundError, match="squeezenet1_1: weights file .*absent.pth' does not exist"):
        models.squeezenet1_1(weights=tmp_path / "absent.pth")

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read .*corrupt.pth.*weights_only=True"):
        models.squeezenet1_1(weights=corrupt)

    pickled = tmp_path / "pickled.pth"
    torch.save({"features.0.weight": Image.new("L", (1, 1))}, pickled)  # not loadable with weights_only
    with pytest.raises(WeightsError, match="cannot read"):
        models.squeezenet1_1(weights=pickled)

    class Boom:  # a pickle that would run code: refused without torch's "retry with weights_only=False"
        def __reduce__(self):
            return (os.system, ("true",))
    code = tmp_path / "code.pth"
    torch.save({"x": Boom()}, code)
    with pytest.raises(WeightsError, match=r"refers to Python objects other than tensors \((posix|nt)\.system\)") as exc:
        models.squeezenet1_1(weights=code)
    assert "weights_only=False" not in str(exc.value) and "\n" not in str(exc.value)
    checkpoint_file = tmp_path / "ckpt.pth"
    torch.save({"a3ext_integrity": {"kind": "gan"}, "G": {"w": torch.zeros(1)}}, checkpoint_file)
    with pytest.raises(WeightsError, match="not a state dict .*an a3ext training checkpoint"):
        models.squeezenet1_1(weights=checkpoint_file)

    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(WeightsError, match="is not a state dict .*got Tensor"):
        models.squeezenet1_1(weights=tensor_only)

    bad = dict(sd)
    del bad["classifier.1.bias"]
    bad["features.13.weight"] = torch.zeros(1)
    bad["features.0.weight"] = torch.zeros(64, 3, 7, 7)
    bad_file = tmp_path / "mismatched.pth"
    torch.save(bad, bad_file)
    with pytest.raises(WeightsError) as excinfo:
        models.squeezenet1_1(weights=bad_file)
    text = str(excinfo.value)
    assert "missing keys: classifier.1.bias" in text and "unexpected keys: features.13.weight" in text
    assert "features.0.weight: expected (64, 3, 3, 3), got (64, 3, 7, 7)" in text
