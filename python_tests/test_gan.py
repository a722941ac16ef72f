"""a3ext.gan: the assignment's GAN API against hand-computed float64 values, parameter
counts from the architectures, shapes, one training iteration of every kind, exact
resume from atomic checkpoints, the Frechet distance against scipy / an independent
formula, the semi-supervised losses, and the CLI."""
import argparse
import gzip
import math
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from a3ext import gan
from a3ext.gan import metrics, semi_supervised as ssl
from a3ext.gan.train import _atomic_write


def np64(t):
    return t.detach().to(torch.float64).numpy()


def tiny_digits(n=64, seed=0):
    """n fake 'digits' (uint8, (n, 28, 28)) with labels: class c is a bright bar at
    row 2c plus noise, so a classifier can learn them in one epoch."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = (g.random((n, 28, 28)) * 60).astype(np.uint8)
    for i, c in enumerate(y):
        x[i, 2 * c + 3: 2 * c + 6, 4:24] = 255
    return torch.from_numpy(x), torch.from_numpy(y).long()


# ----------------------------------------------------------------------------- noise

def test_sample_noise_range_shape_and_seed():
    z = gan.sample_noise(1000, 96)
    assert z.shape == (1000, 96) and z.dtype == torch.float32
    assert float(z.min()) >= -1.0 and float(z.max()) < 1.0
    assert float(z.min()) < -0.99 and float(z.max()) > 0.99  # covers the interval
    assert abs(float(z.mean())) < 0.02 and abs(float(z.var()) - 1 / 3) < 0.01  # U(-1, 1)
    state = torch.get_rng_state()
    a, b = gan.sample_noise(5, 3, seed=42), gan.sample_noise(5, 3, seed=42)
    assert torch.equal(a, b) and not torch.equal(a, gan.sample_noise(5, 3, seed=43))
    assert torch.equal(state, torch.get_rng_state())  # seeded noise leaves the global RNG alone
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(gan.sample_noise(4, 2, generator=g1), gan.sample_noise(4, 2, generator=g2))


@pytest.mark.parametrize("kwargs, match", [(dict(batch_size=-1, dim=3), "batch_size"),
                                           (dict(batch_size=2, dim=0), "dim"),
                                           (dict(batch_size=2, dim=3, seed=1, generator=torch.Generator()),
                                            "either seed or generator")])
def test_sample_noise_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gan.sample_noise(**kwargs)


# ------------------------------------------------------------------ architectures

def linear_params(n_in, n_out):
    return n_in * n_out + n_out


def conv_params(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def test_parameter_counts_from_the_architecture():
    d = linear_params(784, 256) + linear_params(256, 256) + linear_params(256, 1)
    assert d == 267009 == gan.count_params(gan.discriminator())
    for noise in (4, 96):
        g = linear_params(noise, 1024) + linear_params(1024, 1024) + linear_params(1024, 784)
        assert gan.count_params(gan.generator(noise)) == g
    assert gan.count_params(gan.generator(4)) == 1858320  # the notebook's check uses noise_dim 4
    # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4: 4*4*64 features
    dc = conv_params(1, 32, 5) + conv_params(32, 64, 5) + linear_params(4 * 4 * 64, 4 * 4 * 64) \
        + linear_params(4 * 4 * 64, 1)
    assert dc == 1102721 == gan.count_params(gan.build_dc_classifier())
    for noise in (4, 96):
        dg = (linear_params(noise, 1024) + 2 * 1024 + linear_params(1024, 7 * 7 * 128) + 2 * 7 * 7 * 128
              + (128 * 64 * 4 * 4 + 64) + 2 * 64 + (64 * 1 * 4 * 4 + 1))  # BN: weight + bias
        assert gan.count_params(gan.build_dc_generator(noise)) == dg
    assert gan.count_params(gan.build_dc_generator(4)) == 6580801


def test_layer_structure_matches_the_assignment():
    D = gan.discriminator()
    assert [type(m).__name__ for m in D] == ["Flatten", "Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"]
    assert all(m.negative_slope == 0.01 for m in D if isinstance(m, torch.nn.LeakyReLU))
    G = gan.generator(96)
    assert [type(m).__name__ for m in G] == ["Linear", "ReLU", "Linear", "ReLU", "Linear", "Tanh"]
    C = gan.build_dc_classifier()
    convs = [m for m in C if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (5, 5)), (64, (5, 5))]
    DG = gan.build_dc_generator(96)
    deconvs = [m for m in DG if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.out_channels, m.kernel_size, m.stride, m.padding) for m in deconvs] == \
        [(64, (4, 4), (2, 2), (1, 1)), (1, (4, 4), (2, 2), (1, 1))]
    # Xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out)); biases zero
    lin = D[1]
    assert float(lin.weight.detach().abs().max()) <= math.sqrt(6 / (784 + 256)) + 1e-7
    assert float(lin.weight.detach().abs().max()) > 0.9 * math.sqrt(6 / (784 + 256))
    assert float(lin.bias.detach().abs().max()) == 0.0
    opt = gan.get_optimizer(D)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["lr"] == 1e-3 and tuple(opt.param_groups[0]["betas"]) == (0.5, 0.999)


@pytest.mark.parametrize("build", [gan.discriminator, gan.build_dc_classifier])
def test_discriminator_shapes(build):
    D = build()
    x = torch.rand(5, 784) * 2 - 1
    out_flat = D(x)
    out_img = D(x.reshape(5, 1, 28, 28))
    assert out_flat.shape == (5, 1) and torch.allclose(out_flat, out_img)
    with pytest.raises(Exception):
        D(torch.rand(5, 700))


@pytest.mark.parametrize("build", [gan.generator, gan.build_dc_generator])
def test_generator_shapes(build):
    G = build(96)
    out = G(gan.sample_noise(6, 96, seed=0))
    assert out.shape == (6, 784)
    assert float(out.detach().abs().max()) < 1.0  # tanh
    with pytest.raises(ValueError, match="noise_dim"):
        build(0)


# ------------------------------------------------------------------------- losses

def np_bce(s, y):
    """-[y log sigmoid(s) + (1 - y) log(1 - sigmoid(s))] in float64, straight from the definition."""
    p = 1.0 / (1.0 + np.exp(-s))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


LOGITS_REAL = np.array([0.3, -1.2, 2.5, 0.0, -0.7, 1.1])
LOGITS_FAKE = np.array([-0.4, 1.9, -2.2, 0.8])  # a different batch size on purpose


@pytest.mark.parametrize("shape", ["N", "N1"])
def test_vanilla_losses_match_hand_computed_float64(shape):
    r = torch.tensor(LOGITS_REAL, dtype=torch.float64)
    f = torch.tensor(LOGITS_FAKE, dtype=torch.float64)
    if shape == "N1":
        r, f = r[:, None], f[:, None]
    d_expected = np_bce(LOGITS_REAL, 1).mean() + np_bce(LOGITS_FAKE, 0).mean()
    g_expected = np_bce(LOGITS_FAKE, 1).mean()
    d = gan.discriminator_loss(r, f)
    g = gan.generator_loss(f)
    assert d.dtype == torch.float64 and d.dim() == 0
    assert abs(float(d) - d_expected) < 1e-12
    assert abs(float(g) - g_expected) < 1e-12
    # against torch's own implementation too
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert abs(float(d) - float(bce(r.flatten(), torch.ones(6, dtype=torch.float64))
                                + bce(f.flatten(), torch.zeros(4, dtype=torch.float64)))) < 1e-12


def test_vanilla_losses_are_numerically_stable():
    big = torch.tensor([1000.0, -1000.0], dtype=torch.float64)
    d = gan.discriminator_loss(big, -big)  # real: 1000 (right), -1000 (wrong); fake mirrored
    assert math.isfinite(float(d)) and abs(float(d) - (500.0 + 500.0)) < 1e-9
    assert abs(float(gan.generator_loss(torch.tensor([1000.0])))) < 1e-12
    f32 = gan.discriminator_loss(torch.tensor([200.0]), torch.tensor([-200.0]))
    assert float(f32) == 0.0


@pytest.mark.parametrize("shape", ["N", "N1"])
def test_least_squares_losses_match_hand_computed_float64(shape):
    r = torch.tensor(LOGITS_REAL, dtype=torch.float64)
    f = torch.tensor(LOGITS_FAKE, dtype=torch.float64)
    if shape == "N1":
        r, f = r[:, None], f[:, None]
    d_expected = 0.5 * np.mean((LOGITS_REAL - 1) ** 2) + 0.5 * np.mean(LOGITS_FAKE ** 2)
    g_expected = 0.5 * np.mean((LOGITS_FAKE - 1) ** 2)
    assert abs(float(gan.ls_discriminator_loss(r, f)) - d_expected) < 1e-12
    assert abs(float(gan.ls_generator_loss(f)) - g_expected) < 1e-12


def test_wgan_losses_and_gradient_penalty_by_hand():
    r = torch.tensor(LOGITS_REAL, dtype=torch.float64)[:, None]
    f = torch.tensor(LOGITS_FAKE, dtype=torch.float64)[:, None]
    assert abs(float(gan.wgan_discriminator_loss(r, f)) - (LOGITS_FAKE.mean() - LOGITS_REAL.mean())) < 1e-12
    assert abs(float(gan.wgan_generator_loss(f)) + LOGITS_FAKE.mean()) < 1e-12
    # linear critic D(x) = <w, x> + b: the gradient is w everywhere -> penalty = 10 (||w|| - 1)^2
    w = torch.linspace(-0.1, 0.2, 784, dtype=torch.float64)
    critic = torch.nn.Linear(784, 1).double()
    with torch.no_grad():
        critic.weight.copy_(w[None])
    D = torch.nn.Sequential(gan.Flatten(), critic)
    real = torch.rand(8, 1, 28, 28, dtype=torch.float64)
    fake = torch.rand(8, 1, 28, 28, dtype=torch.float64)
    gp = gan.gradient_penalty(D, real, fake)
    expected = 10.0 * (float(np.linalg.norm(w.numpy())) - 1.0) ** 2
    assert abs(float(gp.detach()) - expected) < 1e-9
    gp.backward()  # the penalty is differentiable w.r.t. the critic
    # d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w||
    nw = np.linalg.norm(w.numpy())
    assert np.allclose(np64(critic.weight.grad[0]), 20 * (nw - 1) * w.numpy() / nw, atol=1e-9)
    with pytest.raises(ValueError, match="same shape"):
        gan.gradient_penalty(D, real, fake[:4])


def test_bce_loss_and_get_optimizer_bad_arguments():
    with pytest.raises(ValueError, match=r"bce_loss: target must be a number, of input's shape \(4,\) or "
                                         r"broadcastable to it, but got shape \(3,\)"):
        gan.bce_loss(torch.randn(4), torch.ones(3))
    assert torch.allclose(gan.bce_loss(torch.zeros(4, 1), torch.ones(1)), torch.tensor(math.log(2)))  # broadcasts
    logits = torch.randn(5, 1)
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits.squeeze(), torch.ones(5))
    assert torch.allclose(gan.bce_loss(logits, torch.ones(5)), want)  # (N, 1) logits, (N,) labels
    with pytest.raises(TypeError, match="get_optimizer: model must be a torch.nn.Module, got NoneType"):
        gan.get_optimizer(None)


@pytest.mark.parametrize("loss", [gan.discriminator_loss, gan.ls_discriminator_loss,
                                  gan.wgan_discriminator_loss])
def test_losses_reject_bad_shapes(loss):
    good = torch.zeros(4, 1)
    with pytest.raises(ValueError, match=r"logits_real|scores_real"):
        loss(torch.zeros(4, 2), good)
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        loss(good, torch.zeros(2, 2, 1))
    with pytest.raises(ValueError, match=r"at least one score \(N >= 1\), got shape \(0, 1\)"):
        loss(good, torch.zeros(0, 1))  # an empty batch would give a NaN loss


# ----------------------------------------------------------------- training steps

@pytest.mark.parametrize("kind", gan.KINDS)
def test_one_iteration_of_each_kind_changes_parameters(kind):
    images, labels = tiny_digits(16)
    spec = gan.build_gan(kind, noise_dim=16, seed=0)
    D, G = spec["D"], spec["G"]
    loader = gan.BatchLoader(images, labels, batch_size=8, seed=0)
    trainer = gan.GANTrainer(D, G, gan.get_optimizer(D, spec["lr"], spec["betas"]),
                             gan.get_optimizer(G, spec["lr"], spec["betas"]), spec["discriminator_loss"],
                             spec["generator_loss"], loader, batch_size=8, noise_size=16,
                             critic_steps=spec["critic_steps"],
                             gradient_penalty_weight=spec["gradient_penalty_weight"],
                             progress=False, log=None, kind=kind)
    d0 = {k: p.detach().clone() for k, p in D.named_parameters()}
    g0 = [p.detach().clone() for p in G.parameters()]
    steps = spec["critic_steps"]  # WGAN-GP: the generator moves after 5 critic steps
    trainer.train(num_epochs=10, max_iterations=steps)
    assert trainer.iteration == steps
    assert all(math.isfinite(v) for v in trainer.history["d_loss"] + trainer.history["g_loss"])
    assert len(trainer.history["g_loss"]) == 1
    unchanged = [k for k, p in D.named_parameters() if torch.equal(d0[k], p)]
    # the Wasserstein loss mean(D(fake)) - mean(D(real)) and the gradient penalty do not
    # depend on the critic's output bias: its gradient is exactly 0
    assert unchanged == (["10.bias"] if kind == "wgangp" else [])
    assert all(torch.isfinite(p).all() for p in list(D.parameters()) + list(G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))


def test_wgangp_defaults():
    spec = gan.build_gan("wgangp")
    assert spec["critic_steps"] == 5 and spec["gradient_penalty_weight"] == 10.0
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in spec["D"].modules())
    with pytest.raises(ValueError, match="unknown GAN kind 'bogus'.*vanilla, ls, dc, wgangp"):
        gan.build_gan("bogus")


def test_recipes_set_train_gan_defaults_and_explicit_arguments_win():
    images, labels = tiny_digits(16)
    for kind in gan.KINDS:  # the "assignment" recipe is build_gan's settings, exactly
        spec, r = gan.build_gan(kind), gan.RECIPES["assignment"][kind]
        assert (r["lr"], r["g_lr"], tuple(r["betas"]), r["critic_steps"], r["gradient_penalty_weight"],
                r["ema_decay"]) == (spec["lr"], spec["lr"], tuple(spec["betas"]), spec["critic_steps"],
                                    spec["gradient_penalty_weight"], 0.0)
    kw = dict(labels=labels, num_epochs=1, batch_size=8, noise_dim=8, progress=False, log=None, max_iterations=1)
    for kind in gan.KINDS:
        tr = gan.train_gan(kind, images, recipe="fast", **kw)
        r = gan.RECIPES["fast"][kind]
        assert tr.D_solver.param_groups[0]["lr"] == r["lr"] and tr.G_solver.param_groups[0]["lr"] == r["g_lr"]
        assert tuple(tr.D_solver.param_groups[0]["betas"]) == tuple(r["betas"])
        assert tr.critic_steps == r["critic_steps"] and tr.ema_decay == r["ema_decay"]
        assert tr.gradient_penalty_weight == r["gradient_penalty_weight"]
        assert (tr.G_ema is not None) == (r["ema_decay"] > 0)
    tr = gan.train_gan("wgangp", images, recipe="fast", lr=2e-4, critic_steps=3, ema_decay=0.5, **kw)
    assert tr.D_solver.param_groups[0]["lr"] == tr.G_solver.param_groups[0]["lr"] == 2e-4
    assert tr.critic_steps == 3 and tr.ema_decay == 0.5
    tr = gan.train_gan("vanilla", images, lr=2e-4, g_lr=1e-4, **kw)
    assert (tr.D_solver.param_groups[0]["lr"], tr.G_solver.param_groups[0]["lr"]) == (2e-4, 1e-4)
    with pytest.raises(ValueError, match="unknown recipe 'quick'; expected one of assignment, fast"):
        gan.train_gan("dc", images, recipe="quick", **kw)


def test_train_gan_adam_matches_the_assignment_optimizer():
    """train_gan uses torch's fused Adam kernel (get_optimizer(..., fused=True)): the same
    update as the assignment's get_optimizer on the same gradients (to rounding), with
    the recipe's hyperparameters."""
    images, labels = tiny_digits(16)
    tr = gan.train_gan("wgangp", images, labels=labels, num_epochs=1, batch_size=8, noise_dim=8, progress=False,
                       log=None, max_iterations=0, seed=2, recipe="fast")
    ref_model = gan.build_gan("wgangp", noise_dim=8, seed=2)["G"]
    ref = gan.get_optimizer(ref_model, lr=gan.RECIPES["fast"]["wgangp"]["g_lr"],
                            betas=gan.RECIPES["fast"]["wgangp"]["betas"])
    assert tr.G_solver.defaults["fused"] and not ref.defaults["fused"]
    start = [p.detach().clone() for p in ref_model.parameters()]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(tr.G.parameters(), ref_model.parameters()):
            p.grad = torch.randn(p.shape, generator=g) * 10.0 ** torch.randint(-6, 1, (1,), generator=g).item()
            q.grad = p.grad.clone()
        tr.G_solver.step()
        ref.step()
    for p, q in zip(tr.G.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert all(not torch.equal(p, p0) for p, p0 in zip(ref_model.parameters(), start))


def test_run_a_gan_returns_the_assignment_images():
    images, labels = tiny_digits(48)
    D, G = gan.discriminator(), gan.generator(8)
    loader = gan.BatchLoader(images, labels, batch_size=16, seed=0, drop_last=False)
    out = gan.run_gan(D, G, gan.get_optimizer(D), gan.get_optimizer(G), gan.discriminator_loss,
                        gan.generator_loss, loader_train=loader, show_every=2, batch_size=16, noise_size=8,
                        num_epochs=2, progress=False, log=None)
    # 3 batches per epoch, 6 iterations, kept at iteration 0, 2, 4
    assert len(out) == 3 and all(a.shape == (16, 784) for a in out)
    assert all(np.abs(a).max() <= 1.0 for a in out)


def test_batch_loader_is_deterministic_and_shards():
    images, labels = tiny_digits(40)
    a = gan.BatchLoader(images, labels, batch_size=8, seed=3)
    b = gan.BatchLoader(images, labels, batch_size=8, seed=3)
    a.set_epoch(1), b.set_epoch(1)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))
    assert len(a) == 5
    b.set_epoch(2)
    assert not torch.equal(next(iter(a))[1], next(iter(b))[1])
    seen = torch.cat([y for _, y in a])
    assert sorted(seen.tolist()) == sorted(labels.tolist())
    r0 = gan.BatchLoader(images, labels, batch_size=8, seed=3, shard=(0, 2))
    r1 = gan.BatchLoader(images, labels, batch_size=8, seed=3, shard=(1, 2))
    r0.set_epoch(1), r1.set_epoch(1)
    assert len(r0) == 3 and len(r1) == 2
    assert sorted(torch.cat([y for _, y in r0] + [y for _, y in r1]).tolist()) == sorted(labels.tolist())
    x, _ = next(iter(a))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="shape"):
        gan.BatchLoader(torch.zeros(4, 27, 27, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gan.BatchLoader(torch.full((4, 784), 2.0))


# ------------------------------------------------------------ checkpoints, resume

def _trainer(kind, out_dir=None):
    images, labels = tiny_digits(24)
    spec = gan.build_gan(kind, noise_dim=8, seed=1)
    D, G = spec["D"], spec["G"]
    if kind == "wgangp":  # the WGAN-GP losses, penalty and critic steps on the small MLPs (fast)
        torch.manual_seed(1)
        D, G = gan.discriminator(), gan.generator(8)
    loader = gan.BatchLoader(images, labels, batch_size=8, seed=1)  # 3 batches per epoch
    return gan.GANTrainer(D, G, gan.get_optimizer(D, spec["lr"], spec["betas"]),
                          gan.get_optimizer(G, spec["lr"], spec["betas"]), spec["discriminator_loss"],
                          spec["generator_loss"], loader, batch_size=8, noise_size=8, seed=1,
                          critic_steps=2 if kind == "wgangp" else 1,
                          gradient_penalty_weight=spec["gradient_penalty_weight"], progress=False,
                          log=None, kind=kind, out_dir=out_dir, sample_every=100)


@pytest.mark.parametrize("kind", ["ls", "dc", "wgangp"])
def test_exact_resume_from_checkpoint(kind, tmp_path):
    straight = _trainer(kind)
    straight.train(num_epochs=3, max_iterations=5)  # crosses an epoch boundary (3 batches/epoch)
    first = _trainer(kind, out_dir=tmp_path)
    first.train(num_epochs=3, max_iterations=2)  # stops mid-epoch, writes checkpoint.pt
    ckpt = tmp_path / "checkpoint.pt"
    assert ckpt.is_file() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    state = torch.load(ckpt, weights_only=True)  # plain tensors and values only
    assert state["iteration"] == 2 and state["epoch"] == 0 and state["batch_in_epoch"] == 2
    torch.manual_seed(1234)  # resuming must not depend on the global RNG of the new process
    resumed = _trainer(kind)
    resumed.resume(ckpt)
    resumed.train(num_epochs=3, max_iterations=5)
    assert resumed.iteration == straight.iteration == 5 and resumed.epoch == straight.epoch == 1
    for (name, a), b in zip(straight.D.state_dict().items(), resumed.D.state_dict().values()):
        assert torch.equal(a, b), f"D.{name}"
    for (name, a), b in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(a, b), f"G.{name}"  # includes batch-norm running statistics
    assert straight.history == resumed.history
    for f in ("samples_final.png", "losses.png", "history.json"):
        assert (tmp_path / f).stat().st_size > 0


def _ema_trainer(out_dir=None, decay=0.5):
    images, labels = tiny_digits(24)
    torch.manual_seed(3)
    D, G = gan.discriminator(), gan.build_dc_generator(8)  # batch norm buffers are copied too
    loader = gan.BatchLoader(images, labels, batch_size=8, seed=1)
    return gan.GANTrainer(D, G, gan.get_optimizer(D), gan.get_optimizer(G), gan.discriminator_loss,
                          gan.generator_loss, loader, batch_size=8, noise_size=8, seed=1, progress=False,
                          log=None, kind="dc", out_dir=out_dir, sample_every=100, ema_decay=decay)


def test_generator_moving_average_by_hand():
    tr = _ema_trainer(decay=0.9)
    assert tr.G_ema is not tr.G and all(not p.requires_grad for p in tr.G_ema.parameters())
    ema = {k: v.clone().double() for k, v in tr.G.state_dict().items()}
    x, _ = next(iter(tr.loader))
    for n in range(1, 31):
        tr.step(x)
        d = min(0.9, (1 + n) / (10 + n))  # warm-up: 0.18, 0.27, ... up to 0.9 from n = 80
        for k, v in tr.G.state_dict().items():  # float64 reference of ema = d ema + (1 - d) G
            ema[k] = d * ema[k] + (1 - d) * v.double() if v.is_floating_point() and "running" not in k \
                else v.clone().double()
    for k, v in tr.G_ema.state_dict().items():
        torch.testing.assert_close(v.double(), ema[k], rtol=1e-6, atol=1e-7, msg=k)
        if v.is_floating_point() and "running" not in k and v.numel() > 1:
            assert not torch.equal(v, tr.G.state_dict()[k]), k  # the average lags G
    # samples come from the average
    z = gan.sample_noise(4, 8, seed=0)
    tr.G_ema.eval()
    assert torch.equal(tr.sample(z), tr.G_ema(z).reshape(-1, 784))
    assert tr.sampler is tr.G_ema
    plain = _trainer("ls")
    assert plain.G_ema is None and plain.sampler is plain.G


@pytest.mark.parametrize("decay", [-0.1, 1.0, True, "0.9"])
def test_ema_decay_is_checked(decay):
    with pytest.raises(ValueError, match="ema_decay must be a number in"):
        _ema_trainer(decay=decay)


def test_exact_resume_with_moving_average(tmp_path):
    straight = _ema_trainer()
    straight.train(num_epochs=3, max_iterations=5)
    first = _ema_trainer(out_dir=tmp_path)
    first.train(num_epochs=3, max_iterations=2)
    resumed = _ema_trainer()
    resumed.resume(tmp_path / "checkpoint.pt")
    resumed.train(num_epochs=3, max_iterations=5)
    for (name, a), b in zip(straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b), f"G_ema.{name}"
    G, config = gan.load_generator(tmp_path / "checkpoint.pt")  # the generator samples come from
    assert config["ema_decay"] == 0.5
    for (name, a), b in zip(first.G_ema.state_dict().items(), G.state_dict().values()):
        assert torch.equal(a, b), f"load_generator gave G, not G_ema: {name}"
    with pytest.raises(ValueError, match="ema_decay"):  # settings must match to resume
        _ema_trainer(decay=0.9).resume(tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="ema_decay"):
        _ema_trainer(decay=0.0).resume(tmp_path / "checkpoint.pt")


def test_checkpoint_writes_are_atomic_and_checked(tmp_path):
    path = tmp_path / "checkpoint.pt"
    gan.save_checkpoint({"format": gan.CHECKPOINT_FORMAT, "x": torch.ones(3)}, path)

    def crash(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _atomic_write(path, crash)
    assert torch.equal(gan.load_checkpoint(path)["x"], torch.ones(3))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an a3ext GAN checkpoint"):
        gan.load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        gan.load_checkpoint(tmp_path / "missing.pt")
    tr = _trainer("ls")
    with pytest.raises(ValueError, match="kind 'dc'"):
        tr.load_state_dict({**tr.state_dict(), "kind": "dc"})


def test_train_gan_writes_outputs_and_load_generator(tmp_path):
    images, labels = tiny_digits(32)
    tr = gan.train_gan("vanilla", images, labels=labels, num_epochs=1, batch_size=16, noise_dim=8,
                       out_dir=tmp_path, sample_every=1, progress=False, log=None)
    assert tr.iteration == 2
    names = {p.name for p in tmp_path.iterdir()}
    assert {"samples_000001.png", "samples_000002.png", "samples_final.png", "losses.png",
            "checkpoint.pt", "history.json"} <= names
    from PIL import Image
    with Image.open(tmp_path / "samples_final.png") as im:  # 8x8 grid of 28 px + 2 px padding, x2
        assert im.size == ((8 * 30 + 2) * 2, (8 * 30 + 2) * 2) and im.mode == "L"
    G, config = gan.load_generator(tmp_path / "checkpoint.pt")
    assert config["kind"] == "vanilla" and config["noise_size"] == 8
    assert torch.equal(gan.generate(G, 5, 8, seed=3), gan.generate(tr.G, 5, 8, seed=3))
    # resume=True continues from the checkpoint to the requested epoch count
    tr2 = gan.train_gan("vanilla", images, labels=labels, num_epochs=2, batch_size=16, noise_dim=8,
                        out_dir=tmp_path, resume=True, progress=False, log=None)
    assert tr2.iteration == 4 and tr2.epoch == 2


# ------------------------------------------------------------------------ metrics

def test_frechet_distance_matches_scipy_formula():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        a = rng.standard_normal((d, d))
        b = rng.standard_normal((d, d))
        s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
        m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
        try:
            from scipy.linalg import sqrtm
            covmean = np.real(sqrtm(s1 @ s2))
        except ImportError:  # independent fallback: sqrt(S1 S2) = S1^(1/2) (S1^(1/2) S2 S1^(1/2))^(1/2) S1^(-1/2)
            w, v = np.linalg.eigh(s1)
            r1 = v @ np.diag(np.sqrt(w)) @ v.T
            w2, v2 = np.linalg.eigh(r1 @ s2 @ r1)
            covmean = r1 @ v2 @ np.diag(np.sqrt(w2)) @ v2.T @ np.linalg.inv(r1)
        expected = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        got = metrics.frechet_distance(m1, s1, m2, s2)
        assert abs(got - expected) <= 1e-9 * max(1.0, abs(expected)), d
    assert abs(metrics.frechet_distance(m1, s1, m1, s1)) < 1e-9
    # 1-d Gaussians: (m1 - m2)^2 + (sd1 - sd2)^2
    assert abs(metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) - (4.0 + 1.0)) < 1e-12
    with pytest.raises(ValueError, match="sigma2"):
        metrics.frechet_distance(m1, s1, m2, np.eye(d + 1))


def test_feature_statistics_and_frechet_from_features():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4))
    mu, sigma = metrics.feature_statistics(x)
    assert np.allclose(mu.numpy(), x.mean(0)) and np.allclose(sigma.numpy(), np.cov(x, rowvar=False))
    assert metrics.frechet_distance_from_features(x, x + 2.0) == pytest.approx(4 * 4.0, rel=1e-9)


def test_digit_quality_scores_real_above_noise():
    images, labels = tiny_digits(120)
    q = metrics.DigitQuality.fit(images, labels, epochs=3, batch_size=24, seed=0)
    real = q.floor(tiny_digits(100, seed=5)[0])
    noise = q.score(torch.rand(100, 784) * 2 - 1)
    for s in (real, noise):
        assert set(s) == {"n", "confidence", "mean_entropy", "class_entropy", "digit_score", "frechet"}
        assert 0.1 <= s["confidence"] <= 1.0 and 0 <= s["class_entropy"] <= math.log(10) + 1e-9
        assert 1.0 - 1e-9 <= s["digit_score"] <= 10.0 + 1e-9
    assert real["confidence"] > 0.6 and real["class_entropy"] > 2.2  # recognisable, all classes
    assert real["confidence"] > noise["confidence"] and real["digit_score"] > noise["digit_score"]
    assert real["frechet"] < noise["frechet"]
    path = q.save(Path(os.environ.get("TMPDIR", "/tmp")) / f"a3ext_q_{os.getpid()}.pt")
    try:
        q2 = metrics.DigitQuality.load(path)
        x = torch.rand(10, 784) * 2 - 1
        assert q2.score(x) == q.score(x)
    finally:
        path.unlink()


# -------------------------------------------------------------- semi-supervised

def test_semi_supervised_losses_by_hand():
    rng = np.random.default_rng(2)
    lu, lg = rng.standard_normal((5, 10)), rng.standard_normal((3, 10))
    z_u, z_g = np.exp(lu).sum(1), np.exp(lg).sum(1)
    d_u, d_g = z_u / (z_u + 1), z_g / (z_g + 1)  # D(x) = Z / (Z + 1)
    expected = 0.5 * np.mean(-np.log(d_u)) + 0.5 * np.mean(-np.log(1 - d_g))
    got = ssl.unsupervised_loss(torch.tensor(lu), torch.tensor(lg))
    assert abs(float(got) - expected) < 1e-12
    fr, ff = rng.standard_normal((6, 4)), rng.standard_normal((7, 4))
    assert abs(float(ssl.feature_matching_loss(torch.tensor(fr), torch.tensor(ff)))
               - np.mean((fr.mean(0) - ff.mean(0)) ** 2)) < 1e-12
    y = torch.tensor([1, 0, 3, 2, 9])
    logp = lu - np.log(np.exp(lu).sum(1, keepdims=True))
    assert abs(float(ssl.supervised_loss(torch.tensor(lu), y)) + logp[np.arange(5), y.numpy()].mean()) < 1e-12


def test_select_labeled_is_stratified_and_seeded():
    y = torch.arange(10).repeat(30)
    idx = ssl.select_labeled(y, 3, seed=4)
    assert idx.numel() == 30 and torch.equal(torch.bincount(y[idx]), torch.full((10,), 3))
    assert torch.equal(idx, ssl.select_labeled(y, 3, seed=4))
    assert not torch.equal(idx, ssl.select_labeled(y, 3, seed=5))
    with pytest.raises(ValueError, match="class"):
        ssl.select_labeled(y, 31)


def test_semi_supervised_training_runs_and_is_deterministic():
    images, labels = tiny_digits(100)
    x = gan.as_unit_images(images).reshape(-1, 784)
    idx = ssl.select_labeled(labels, 2, seed=0)
    hist = {}
    D, G = ssl.train_semi_supervised(x, x[idx], labels[idx], epochs=1, batch_size=50, progress=False,
                                     history=hist)
    D2, _ = ssl.train_semi_supervised(x, x[idx], labels[idx], epochs=1, batch_size=50, progress=False)
    assert len(hist["loss_gen"]) == 2 and all(math.isfinite(v) for v in hist["loss_unl"])
    assert all(torch.equal(a, b) for a, b in zip(D.state_dict().values(), D2.state_dict().values()))
    assert G(torch.rand(3, 100)).shape == (3, 784)
    acc = ssl.accuracy(D, x, labels)
    assert 0.0 <= acc <= 1.0
    base = ssl.train_supervised_baseline(x[idx], labels[idx], steps=2, batch_size=10, progress=False)
    assert type(base) is type(D)


# ---------------------------------------------------------------------------- CLI

def write_idx_dir(path, n=32):
    """A tiny IDX directory (train only) in the standard gzip format."""
    images, labels = tiny_digits(n)
    path.mkdir()
    with gzip.open(path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 0x08, 3, n, 28, 28) + images.numpy().tobytes())
    with gzip.open(path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 0x08, 1, n) + labels.numpy().astype(np.uint8).tobytes())
    return path


def parse(argv):
    from a3ext.gan.cli import register_cli
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_train_and_sample_on_an_idx_directory(tmp_path, capsys):
    data = write_idx_dir(tmp_path / "idx", n=60)
    out = tmp_path / "run"
    args = parse(["gan", "train", "--kind", "ls", "--data", str(data), "--epochs", "1", "--out", str(out),
                  "--batch-size", "16", "--noise-dim", "8", "--no-progress", "-q"])
    assert args.func(args) == 0
    assert (out / "checkpoint.pt").is_file() and (out / "samples_final.png").is_file()
    args = parse(["gan", "sample", "--checkpoint", str(out / "checkpoint.pt"), "--n", "12",
                  "--out", str(tmp_path / "grid.png"), "--nrow", "4"])
    assert args.func(args) == 0 and (tmp_path / "grid.png").stat().st_size > 0
    assert "12 samples of a ls GAN" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parse(["gan", "train", "--kind", "bogus", "--out", str(out)])
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    args = parse(["gan", "sample", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.png")])
    assert args.func(args) == 2
    assert "nope.pt" in capsys.readouterr().err
    args = parse(["gan", "train", "--data", str(tmp_path / "no_such_dir"), "--out", str(out), "-q"])
    assert args.func(args) == 2
    assert "no_such_dir" in capsys.readouterr().err


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_process_ddp_training(tmp_path):
    """`torchrun --nproc_per_node 2` (gloo, 127.0.0.1) trains data-parallel: both ranks
    exit cleanly, rank 0 writes the checkpoint, the generator moved."""
    data = write_idx_dir(tmp_path / "idx", n=64)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "a3ext.gan.cli", "train", "--kind", "dc",
           "--data", str(data), "--epochs", "1", "--out", str(out), "--batch-size", "8", "--noise-dim", "8",
           "--max-iterations", "2", "--no-progress", "-q", "--threads", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = gan.load_checkpoint(out / "checkpoint.pt")
    assert state["iteration"] == 2 and state["config"]["world_size"] == 2
    # 64 images, batch 8: 8 batches, 4 per rank; the model moved
    assert not torch.equal(state["G"]["0.weight"], gan.build_gan("dc", 8, seed=0)["G"][0].weight.detach())
