"""a3ext.style: the losses against direct formulas (float64), the Gram matrix against the
reference formula, style transfer / feature inversion / texture synthesis on small images,
blending, colour preservation, the CLI and bad inputs."""
import argparse

import numpy as np
import pytest
import torch

from a3ext import assets, models, style

SMALL = 48  # content image shorter side for the optimisation tests (pixels)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread for this module: the optimisation loops run thousands of small
    convolutions, and on a shared 2-core machine two spinning OpenMP threads are up to 40x
    slower than one. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def effnet():
    return style.default_cnn()


@pytest.fixture(scope="module")
def squeezenet():
    torch.manual_seed(0)
    return models.squeezenet1_1(weights=None)


# --------------------------------------------------------------------------- losses


def test_content_loss_is_weighted_sum_of_squares():
    cur = torch.randn(1, 5, 4, 3, dtype=torch.float64)
    orig = torch.randn(1, 5, 4, 3, dtype=torch.float64)
    want = 0.37 * np.sum((cur.numpy() - orig.numpy()) ** 2)
    got = style.content_loss(0.37, cur, orig)
    assert got.dim() == 0 and got.dtype == torch.float64
    assert abs(got.item() - want) <= 1e-12 * abs(want)


def gram_reference(F: np.ndarray, normalize: bool = True) -> np.ndarray:
    N, C, H, W = F.shape
    f = F.reshape(N, C, H * W)
    G = np.einsum("nch,ndh->ncd", f, f)
    return G / (C * H * W) if normalize else G


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (2, 64, 32, 33)])
def test_gram_matrix_matches_reference(shape, normalize):
    F = torch.randn(*shape, dtype=torch.float64)
    got = style.gram_matrix(F, normalize).numpy()
    want = gram_reference(F.numpy(), normalize)
    assert got.shape == (shape[0], shape[1], shape[1])
    assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


def test_style_loss_matches_formula():
    feats = [torch.randn(1, c, h, h, dtype=torch.float64) for c, h in [(3, 8), (4, 6), (6, 4), (8, 2)]]
    layers, weights = [0, 2, 3], [2.0, 0.5, 7.0]
    targets = [torch.from_numpy(gram_reference(torch.randn_like(feats[l]).numpy())) for l in layers]
    want = sum(w * np.sum((gram_reference(feats[l].numpy()) - t.numpy()) ** 2)
               for l, t, w in zip(layers, targets, weights))
    got = style.style_loss(feats, layers, targets, weights)
    assert abs(got.item() - want) <= 1e-12 * abs(want)
    # gradients flow to the features
    f = feats[2].clone().requires_grad_()
    style.style_loss(feats[:2] + [f] + feats[3:], layers, targets, weights).backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


def test_tv_loss_hand_computed():
    img = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]], dtype=torch.float64)
    # vertical: (4-1)^2 + (8-2)^2 = 45; horizontal: (2-1)^2 + (8-4)^2 = 17; total 62
    assert style.tv_loss(img, 0.5).item() == 31.0
    # 1x3x3x3: a ramp 0..26 over (c, h, w): every vertical step is 3, horizontal 1;
    # per channel 2*3 vertical pairs and 3*2 horizontal pairs: 3 * (6*9 + 6*1) = 180
    ramp = torch.arange(27, dtype=torch.float64).reshape(1, 3, 3, 3)
    assert style.tv_loss(ramp, 1.0).item() == 180.0


def test_tv_loss_matches_loop_formula():
    img = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    x = img.numpy()
    want = 0.0
    for n in range(2):
        for c in range(3):
            for i in range(5):
                for j in range(7):
                    if i + 1 < 5:
                        want += (x[n, c, i + 1, j] - x[n, c, i, j]) ** 2
                    if j + 1 < 7:
                        want += (x[n, c, i, j + 1] - x[n, c, i, j]) ** 2
    assert abs(style.tv_loss(img, 2.5).item() - 2.5 * want) <= 1e-12 * 2.5 * want


def test_softmax_activations_are_spatial_distributions():
    F = torch.randn(2, 4, 5, 6, dtype=torch.float64) * 3
    S = style.softmax_activations(F, 2.0)
    assert S.shape == F.shape and (S > 0).all()
    torch.testing.assert_close(S.sum(dim=(2, 3)), torch.full((2, 4), 30.0, dtype=torch.float64))
    want = 30 * np.exp(F.numpy().reshape(2, 4, 30) / 2.0)
    want /= np.exp(F.numpy().reshape(2, 4, 30) / 2.0).sum(-1, keepdims=True)
    np.testing.assert_allclose(S.numpy().reshape(2, 4, 30), want, rtol=1e-12)
    # a very high temperature gives the uniform map (all ones)
    torch.testing.assert_close(style.softmax_activations(F, 1e9), torch.ones_like(F))
    with pytest.raises(ValueError, match="temperature"):
        style.softmax_activations(F, 0.0)


def test_yiq_round_trip():
    rgb = torch.rand(1, 3, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(style.yiq_to_rgb(style.rgb_to_yiq(rgb)), rgb)
    grey = torch.full((1, 3, 2, 2), 0.4, dtype=torch.float64)
    yiq = style.rgb_to_yiq(grey)
    torch.testing.assert_close(yiq[:, 0], torch.full((1, 2, 2), 0.4, dtype=torch.float64))
    assert yiq[:, 1:].abs().max() < 1e-6  # grey has no chroma


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("which", ["effnet", "squeezenet"])
def test_extract_features_match_model_and_truncate(which, request):
    cnn = request.getfixturevalue(which)
    x = torch.randn(1, 3, 40, 48)
    full = style.extract_features(x, cnn)
    want = cnn.extract_features(x)
    assert len(full) == len(want) == (17 if which == "effnet" else 13)
    # EfficientNet runs with its BatchNorms folded into the convolutions: equal up to rounding
    for a, b in zip(full, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))
    part = style.extract_features(x, cnn, upto=5)
    assert len(part) == 6
    for a, b in zip(part, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="upto"):
        style.extract_features(x, cnn, upto=len(want))


# --------------------------------------------------------------------------- style transfer


@pytest.mark.parametrize("preset", sorted(style.PRESETS))
def test_presets_loss_decreases_monotonically_after_20_iterations(preset, effnet):
    r = style.run_preset(preset, effnet, image_size=SMALL, num_iterations=40, progress=False)
    total = np.array(r.history["total"])
    assert len(total) == 40 and np.isfinite(total).all()
    assert total[-1] < total[0]
    steps = np.diff(total[20:])
    assert (steps <= 0).all(), f"{preset}: loss rose after iteration 20 at steps {np.nonzero(steps > 0)[0] + 20}"
    assert r.image.shape[:2] == (1, 3) and min(r.image.shape[2:]) == SMALL
    low, high = effnet.pixel_range
    assert (r.image >= low - 1e-6).all() and (r.image <= high + 1e-6).all()
    assert r.pil.size == (r.image.shape[3], r.image.shape[2])


def test_feature_inversion_and_texture_synthesis(effnet):
    inv = style.run_preset("feature_inversion", effnet, image_size=SMALL, num_iterations=25, progress=False)
    assert inv.settings["init_random"] and all(w == 0 for w in inv.settings["style_weights"])
    assert inv.history["style"][0] == 0.0 and inv.history["content"][-1] < 0.5 * inv.history["content"][0]
    tex = style.run_preset("texture_synthesis", effnet, image_size=SMALL, num_iterations=25, progress=False)
    assert tex.settings["content_weight"] == 0 and tex.history["content"][-1] == 0.0
    assert tex.history["style"][-1] < 0.5 * tex.history["style"][0]


def test_squeezenet_uses_the_assignment_settings(squeezenet):
    kw = style.preset_arguments("starry_night", squeezenet)
    assert kw["content_layer"] == 3 and kw["style_layers"] == [1, 4, 6, 7]
    assert kw["style_weights"] == [300000, 1000, 15, 3] and kw["content_weight"] == 6e-2
    assert kw["tv_weight"] == 2e-2 and kw["clamp_range"] == (-1.5, 1.5) and kw["softmax_temperature"] is None
    scream = style.preset_arguments("scream", squeezenet)
    assert scream["style_weights"] == [200000, 800, 12, 1] and scream["tv_weight"] == 2.0
    r = style.run_preset("starry_night", squeezenet, image_size=32, num_iterations=4, progress=False)
    assert r.settings["learning_rate"] == 3.0 and r.settings["decayed_learning_rate"] == 0.1
    assert r.settings["decay_lr_at"] == 180 and r.settings["clamp_until"] == 190
    assert r.image.abs().max() <= 3.0 and np.isfinite(r.history["total"]).all()


def test_assignment_schedule_clamps_before_each_step(squeezenet):
    seen = []
    style.style_transfer("chelsea", "scream", 32, 32, 3, 3e-2, [1, 4, 6, 7], [2e5, 800, 12, 1], 2.0,
                         cnn=squeezenet, num_iterations=5, progress=False,
                         callback=lambda t, img, losses: seen.append(float(img.abs().max())))
    assert len(seen) == 5 and max(seen) <= 1.5 + 1e-6  # every step ran on a clamped image


def test_lbfgs_option(effnet):
    r = style.run_preset("starry_night", effnet, image_size=SMALL, num_iterations=15, optimizer="lbfgs",
                         progress=False)
    assert 1 < len(r.history["total"]) <= 15 and r.settings["optimizer"] == "lbfgs"
    assert min(r.history["total"]) < r.history["total"][0]


def test_random_start_is_reproducible_from_the_seed(effnet):
    kw = dict(image_size=32, num_iterations=3, progress=False)
    a = style.run_preset("texture_synthesis", effnet, seed=3, **kw)
    b = style.run_preset("texture_synthesis", effnet, seed=3, **kw)
    c = style.run_preset("texture_synthesis", effnet, seed=4, **kw)
    assert torch.equal(a.image, b.image) and a.history == b.history
    assert not torch.equal(a.image, c.image)


def test_style_blend(effnet):
    kw = preset_small(effnet, "starry_night")
    one = style.style_transfer(**kw)
    kw2 = dict(kw, style_image=["starry_night", "scream"], style_blend_weights=[2.0, 0.0])
    blended_off = style.style_transfer(**kw2)
    # weight 0 on the second style: the Gram targets, hence the run, are the first style's
    assert torch.equal(one.image, blended_off.image)
    mix = style.style_transfer(**dict(kw, style_image=["starry_night", "scream"], style_blend_weights=[1, 3]))
    assert mix.settings["style_blend_weights"] == [0.25, 0.75] and len(mix.styles) == 2
    assert mix.image.shape == one.image.shape and not torch.equal(mix.image, one.image)


def preset_small(cnn, name):
    kw = style.preset_arguments(name, cnn)
    kw.update(image_size=32, style_size=32, num_iterations=3, progress=False, cnn=cnn)
    return kw


def test_preserve_color_keeps_the_content_chroma(effnet):
    kw = preset_small(effnet, "scream")
    r = style.style_transfer(preserve_color=True, **kw)
    assert r.image.shape == r.content.shape
    pixels = style._to_pixels(r.image.double(), effnet)
    content = style._to_pixels(r.content.double(), effnet)
    inside = ((pixels > 1e-3) & (pixels < 1 - 1e-3)).all(dim=1)  # not clipped to [0, 1]
    assert inside.float().mean() > 0.5
    iq_out = style.rgb_to_yiq(pixels)[:, 1:].permute(0, 2, 3, 1)[inside]
    iq_in = style.rgb_to_yiq(content)[:, 1:].permute(0, 2, 3, 1)[inside]
    assert (iq_out - iq_in).abs().max() < 1e-4
    # and the luminance did change (the style was transferred)
    y_out, y_in = style.rgb_to_yiq(pixels)[:, 0], style.rgb_to_yiq(content)[:, 0]
    assert (y_out - y_in).abs().mean() > 1e-3


# --------------------------------------------------------------------------- errors


def test_bad_inputs_give_clear_errors(effnet):
    base = preset_small(effnet, "starry_night")
    with pytest.raises(ValueError, match=r"content_layer 99 out of range: expected 0\.\.16"):
        style.style_transfer(**dict(base, content_layer=99))
    with pytest.raises(ValueError, match=r"style layer index 40 out of range"):
        style.style_transfer(**dict(base, style_layers=[1, 40], style_weights=[1.0, 1.0]))
    with pytest.raises(ValueError, match=r"style_weights must have one weight per style layer: expected 4"):
        style.style_transfer(**dict(base, style_layers=[1, 3, 5, 8], style_weights=[1.0, 2.0]))
    with pytest.raises(ValueError, match=r"style_weights must have one weight per style layer"):
        style.style_loss([torch.zeros(1, 2, 2, 2)], [0], [torch.zeros(1, 2, 2)], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"style_blend_weights must have one weight per style image: expected 2"):
        style.style_transfer(**dict(base, style_image=["scream", "graf1"], style_blend_weights=[1.0]))
    with pytest.raises(ValueError, match="optimizer must be 'adam' or 'lbfgs', got 'sgd'"):
        style.style_transfer(**dict(base, optimizer="sgd"))
    with pytest.raises(ValueError, match="unknown style preset 'nope'; expected one of"):
        style.run_preset("nope", effnet)
    with pytest.raises(assets.UnknownAssetError, match="no_such_painting"):
        style.style_transfer(**dict(base, style_image="no_such_painting"))
    with pytest.raises(ValueError, match="content_loss: content_current has shape"):
        style.content_loss(1.0, torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 4))


# --------------------------------------------------------------------------- CLI


def _parser():
    parser = argparse.ArgumentParser(prog="a3ext")
    style.register_cli(parser.add_subparsers(dest="command"))
    return parser


def test_cli_writes_a_side_by_side_png(tmp_path, capsys):
    from PIL import Image

    out, res = tmp_path / "fig.png", tmp_path / "result.png"
    args = _parser().parse_args(["style", "--content", "chelsea", "--style", "scream", "--style", "graf1",
                                 "--style-blend", "1,2", "--size", "32", "--iters", "3", "--preserve-color",
                                 "--no-progress", "--out", str(out), "--result", str(res)])
    assert args.func(args) == 0
    with Image.open(out) as fig, Image.open(res) as img:
        assert fig.width > 3 * img.width and img.height == 32  # content | 2 styles | result
    assert '"final_loss"' in capsys.readouterr().out


def test_cli_preset_and_errors(tmp_path, capsys):
    out = tmp_path / "t.png"
    args = _parser().parse_args(["style", "--preset", "texture_synthesis", "--size", "32", "--iters", "2",
                                 "--no-progress", "--out", str(out)])
    assert args.func(args) == 0 and out.is_file()
    args = _parser().parse_args(["style", "--content", "no_such_photo", "--style", "scream", "--size", "32",
                                 "--iters", "2", "--no-progress", "--out", str(tmp_path / "x.png")])
    assert args.func(args) == 2
    assert "no_such_photo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parser().parse_args(["style", "--preset", "nope", "--out", "x.png"])
