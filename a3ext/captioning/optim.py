"""The assignment's first-order update rules (its ``optim.py``), in numpy.

Every rule has the signature ``rule(w, dw, config=None) -> (next_w, config)``:
``w`` the current weights, ``dw`` the gradient of the loss with respect to them (numpy
arrays of one shape), ``config`` a dict of hyperparameters and of the rule's state
(moving averages, step count), filled with the defaults below when missing and
returned for the next call. As in the assignment, ``sgd`` and ``adam`` update ``w`` in
place and return it; ``sgd_momentum`` and ``rmsprop`` return a new array.

:class:`a3ext.captioning.CaptioningSolver` accepts these names (or any function of
this signature) as ``update_rule``; for ``'adam'`` and ``'sgd'`` it runs torch's
(fused) optimizers, which compute the same update (tested against these functions).

May import: numpy only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["sgd", "sgd_momentum", "rmsprop", "adam", "RULES"]


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: ``w -= learning_rate * dw``.

    config: ``learning_rate`` (default 1e-2)."""
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    w -= config["learning_rate"] * dw
    return w, config


def sgd_momentum(w, dw, config=None):
    """Stochastic gradient descent with momentum:
    ``v = momentum * v - learning_rate * dw``; ``next_w = w + v``.

    config: ``learning_rate`` (1e-2), ``momentum`` (0.9; 0 is plain sgd),
    ``velocity`` (same shape as ``w``; zeros at first)."""
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    v = config["momentum"] * v - config["learning_rate"] * dw
    next_w = w + v
    config["velocity"] = v
    return next_w, config


def rmsprop(x, dx, config=None):
    """RMSProp: a moving average of squared gradients sets per-parameter step sizes:
    ``cache = decay_rate * cache + (1 - decay_rate) * dx**2``;
    ``next_x = x - learning_rate * dx / (sqrt(cache) + epsilon)``.

    config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8),
    ``cache`` (zeros at first)."""
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(x))
    cache = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * dx * dx
    next_x = x - config["learning_rate"] * dx / (np.sqrt(cache) + config["epsilon"])
    config["cache"] = cache
    return next_x, config


def adam(x, dx, config=None):
    """Adam (Kingma and Ba 2015) with bias correction, as the assignment writes it:
    ``m = beta1 m + (1 - beta1) dx``, ``v = beta2 v + (1 - beta2) dx**2``, ``t += 1``,
    ``x -= learning_rate * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + epsilon)``.

    config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon``
    (1e-8), ``m``, ``v`` (zeros at first), ``t`` (0)."""
    if config is None:
        config = {}
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(x))
    config.setdefault("v", np.zeros_like(x))
    config.setdefault("t", 0)
    beta1, beta2, eps = config["beta1"], config["beta2"], config["epsilon"]
    t, m, v = config["t"], config["m"], config["v"]
    m = beta1 * m + (1 - beta1) * dx
    v = beta2 * v + (1 - beta2) * (dx * dx)
    t += 1
    alpha = config["learning_rate"] * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    x -= alpha * (m / (np.sqrt(v) + eps))
    config["t"], config["m"], config["v"] = t, m, v
    return x, config


#: The rules by name (``CaptioningSolver(update_rule=NAME)``).
RULES = {"sgd": sgd, "sgd_momentum": sgd_momentum, "rmsprop": rmsprop, "adam": adam}
