"""Optimizers that update a network's flat parameter buffer in place.

Every scalar is cast to the buffer's dtype first: a float64 scalar would silently turn a
float32 update into float64 arithmetic (slower, and not what the user asked for).
"""
import math

import numpy as np

from .errors import ConfigError
from .kernels import ScaledMoments


def _check_positive(name, value, allow_zero=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value}.")
    return value


def _check_fraction(name, value):
    value = _check_positive(name, value, allow_zero=True)
    if value >= 1:
        raise ConfigError(f"{name} must be in [0, 1), got {value}.")
    return value


class Optimizer:
    """Shared parts: learning rate, L2 weight decay, max-norm, state for saving."""

    name = "optimizer"

    def __init__(self, lr, weight_decay=0.0, max_norm=None):
        self.lr = _check_positive("Learning rate", lr)
        self.weight_decay = _check_positive("L2 weight decay", weight_decay, allow_zero=True)
        self.max_norm = None if max_norm in (None, 0) else _check_positive("Max-norm", max_norm)
        self.t = 0
        self._scratch = None

    def _scratch_like(self, params):
        """A work array shaped like `params`, kept between steps (no allocation per step)."""
        if self._scratch is None or self._scratch.shape != params.shape or self._scratch.dtype != params.dtype:
            self._scratch = np.empty_like(params)
        return self._scratch

    def step(self, network, lr=None):
        """Apply one update from `network.grads` to `network.params` (in place)."""
        if self.weight_decay:
            decay = network.dtype(self.weight_decay)
            for w, g in zip(network.weights, network.weight_grads):
                g += decay * w  # L2 on weights only, not on biases
        self.t += 1
        self._update(network.params, network.grads, float(self.lr if lr is None else lr))
        if self.max_norm:
            apply_max_norm(network, self.max_norm)

    def config(self):
        """Hyper-parameters as a plain dict (saved with a model)."""
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay,
                "max_norm": self.max_norm or 0.0}

    def state(self):
        """Arrays and counters needed to resume exactly (saved with a model)."""
        return {"t": np.array(self.t)}

    def load_state(self, state, size, dtype):
        self.t = int(state.get("t", 0))


class Adam(Optimizer):
    """Adam exactly as the notebook's (engine.reference.adam_step): bias-corrected step size,
    eps added to sqrt(v).

        m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
        w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    For speed the moments are kept scaled (engine.kernels.ScaledMoments); the arithmetic is the
    formula above up to float rounding, and `m`, `v` and `state()` give the true moments.
    """

    name = "adam"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, max_norm=None):
        super().__init__(lr, weight_decay, max_norm)
        self.beta1 = _check_fraction("beta1", beta1)
        self.beta2 = _check_fraction("beta2", beta2)
        self.eps = _check_positive("epsilon", eps)
        self._moments = None

    @property
    def m(self):
        """First moment (a new array), or None before the first step."""
        return None if self._moments is None else self._moments.m()

    @property
    def v(self):
        """Second moment (a new array), or None before the first step."""
        return None if self._moments is None else self._moments.v()

    def _update(self, params, grads, lr):
        if self._moments is None or not self._moments.fits(params):
            self._moments = ScaledMoments.zeros_like(params)
        self._moments.update(params, grads, self._scratch_like(params), lr, self.t, self.beta1, self.beta2, self.eps)

    def config(self):
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def state(self):
        """t and the true moments m, v (the live arrays: copy them to keep them).

        Reading the state folds the scales first, so an optimizer rebuilt from this state
        (load_state) continues with exactly the same numbers as this one.
        """
        state = super().state()
        if self._moments is not None:
            state.update(zip(("m", "v"), self._moments.folded()))
        return state

    def load_state(self, state, size, dtype):
        super().load_state(state, size, dtype)
        self._moments = None
        if "m" in state:
            self._moments = ScaledMoments(np.array(state["m"], dtype=dtype).reshape(size),
                                          np.array(state["v"], dtype=dtype).reshape(size))


class SGD(Optimizer):
    """Stochastic gradient descent with (classical) momentum."""

    name = "sgd"

    def __init__(self, lr=0.01, momentum=0.9, weight_decay=0.0, max_norm=None):
        super().__init__(lr, weight_decay, max_norm)
        self.momentum = _check_fraction("Momentum", momentum)
        self.velocity = None

    def _update(self, params, grads, lr):
        cast = params.dtype.type
        step = np.multiply(grads, cast(lr), out=self._scratch_like(params))
        if not self.momentum:
            params -= step
            return
        if self.velocity is None or self.velocity.shape != params.shape:
            self.velocity = np.zeros_like(params)
        self.velocity *= cast(self.momentum)
        self.velocity -= step
        params += self.velocity

    def config(self):
        return {**super().config(), "momentum": self.momentum}

    def state(self):
        state = super().state()
        if self.velocity is not None:
            state["velocity"] = self.velocity
        return state

    def load_state(self, state, size, dtype):
        super().load_state(state, size, dtype)
        self.velocity = None
        if "velocity" in state:
            self.velocity = np.array(state["velocity"], dtype=dtype).reshape(size)


def apply_max_norm(network, max_norm):
    """Rescale each hidden unit's incoming weights to norm <= max_norm (as in the dropout paper)."""
    limit = network.dtype(max_norm)
    for w in network.weights[:-1]:
        norms = np.sqrt(np.einsum("ij,ij->j", w, w))
        too_big = norms > limit
        if too_big.any():
            w[:, too_big] *= limit / norms[too_big]


def make_optimizer(name="adam", **settings):
    """Build an optimizer by name ('adam' or 'sgd'), ignoring settings that belong to the other."""
    name = str(name).lower()
    if name == "adam":
        keys = ("lr", "beta1", "beta2", "eps", "weight_decay", "max_norm")
        return Adam(**{k: v for k, v in settings.items() if k in keys})
    if name == "sgd":
        keys = ("lr", "momentum", "weight_decay", "max_norm")
        return SGD(**{k: v for k, v in settings.items() if k in keys})
    raise ConfigError(f"Unknown optimizer {name!r}; choose adam or sgd.")
