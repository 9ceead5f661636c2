"""Gradient check: backprop's gradients against central finite differences, in float64.

Each checked entry w is nudged to w+eps and w-eps and the loss recomputed; the numeric slope
(L+ - L-) / 2 eps is compared with backprop's. To keep a full check fast, the nudge is applied
where it enters the network (one column of the layer's pre-activation) and only the layers
after it are recomputed, for many entries at once as one batched forward pass. The losses are
true recomputations, not a reuse of backprop's algebra.
"""
from dataclasses import dataclass, field

import numpy as np

from .data import scale_images
from .layers import LEAKY_SLOPE, softmax
from .network import Network

# Verdicts on the usual scale (CS231n): kinks of ReLU explain errors up to ~1e-4.
VERDICTS = ((1e-7, "excellent"), (1e-4, "fine (kinks)"), (1e-2, "suspicious"), (np.inf, "wrong"))
TINY = 1e-12
CHUNK_FLOATS = 2_000_000  # working-set size of one batched recomputation


def verdict(max_relative_error):
    """'excellent' (< 1e-7), 'fine (kinks)' (< 1e-4), 'suspicious' (< 1e-2) or 'wrong'."""
    if not np.isfinite(max_relative_error):
        return "wrong"
    return next(name for bound, name in VERDICTS if max_relative_error < bound)


def relative_error(analytic, numeric, tiny=TINY):
    """|a - n| / max(|a| + |n|, tiny): 0 when both are 0, never a division by zero."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), tiny)


@dataclass
class LayerCheck:
    name: str                # W1, b1, ...
    shape: tuple
    checked: int             # entries compared
    max_error: float
    mean_error: float
    errors: np.ndarray       # relative error per entry, NaN where not checked (for heatmaps)
    analytic: np.ndarray     # the compared entries' backprop values
    numeric: np.ndarray      # ... and finite-difference values
    kinks: int = 0           # entries left out of max/mean: their nudge crossed a ReLU kink

    @property
    def verdict(self):
        return verdict(self.max_error)


@dataclass
class GradCheckResult:
    layers: list = field(default_factory=list)
    tolerance: float = 1e-4
    eps: float = 1e-5
    samples: int = 0

    @property
    def max_relative_error(self):
        return max((layer.max_error for layer in self.layers), default=0.0)

    @property
    def passed(self):
        return bool(self.max_relative_error < self.tolerance)

    @property
    def verdict(self):
        return verdict(self.max_relative_error)

    def summary(self):
        """Plain dict (JSON-ready) of the per-layer figures."""
        return {
            "max_relative_error": self.max_relative_error,
            "passed": self.passed,
            "verdict": self.verdict,
            "tolerance": self.tolerance,
            "eps": self.eps,
            "samples": self.samples,
            "layers": [{"name": l.name, "shape": list(l.shape), "checked": l.checked,
                        "max_relative_error": l.max_error, "mean_relative_error": l.mean_error,
                        "kinks": l.kinks,
                        "verdict": l.verdict} for l in self.layers],
        }


def gradient_check(network, x, y, eps=1e-5, entries_per_layer=None, keep_prob=1.0, seed=0,
                   fault=None, tolerance=1e-4, on_progress=None, masks=None):
    """Compare backprop with central differences on a float64 copy of `network`.

    x: a few samples (floats already scaled, or uint8 pixels), y: labels or one-hot.
    entries_per_layer: None checks every parameter, k checks k random entries per array.
    keep_prob < 1 draws one fixed dropout mask (seeded) used by both sides; or pass `masks`
    (one (samples, width) array per hidden layer, 0 or 1/keep_prob, None for no dropout).
    fault: a deliberate backprop bug from network.FAULTS, to show what failing looks like.
    on_progress(done, total) is called as entries are checked. Prints nothing.
    """
    net = Network(network.sizes, network.activation, network.use_bias, "float64", seed=0)
    net.params[...] = network.params
    x = np.asarray(x)
    x = scale_images(x, np.float64) if x.dtype == np.uint8 else x.reshape(len(x), -1).astype(np.float64)
    labels = y if y.ndim == 1 else y.argmax(axis=1)
    rng = np.random.default_rng(seed)
    if masks is not None:
        if len(masks) != net.num_layers - 1:
            raise ValueError(f"masks needs one entry per hidden layer ({net.num_layers - 1}), got {len(masks)}.")
        masks = [None if m is None else np.asarray(m, dtype=np.float64) for m in masks]
    elif keep_prob < 1:
        masks = [(rng.random((len(x), w)) < keep_prob) / keep_prob for w in net.sizes[1:-1]]
    fp = net.forward(x, masks=masks or [None] * (net.num_layers - 1))  # engine.reference, in float64
    net.backward(fp, y, fault)
    logits = fp.pre_activations[-1]

    plan = []  # (name, layer index, param array, grad array, flat entries to check)
    for layer, (w, b, gw, gb) in enumerate(zip(net.weights, net.biases, net.weight_grads, net.bias_grads)):
        for name, p, g in ((f"W{layer + 1}", w, gw), (f"b{layer + 1}", b, gb)):
            if p is None:
                continue
            entries = np.arange(p.size)
            if entries_per_layer is not None and entries_per_layer < p.size:
                entries = np.sort(rng.choice(p.size, int(entries_per_layer), replace=False))
            plan.append((name, layer, p, g, entries))

    total, done = sum(len(e) for *_, e in plan), 0
    result = GradCheckResult(tolerance=tolerance, eps=eps, samples=len(x))
    for name, layer, p, g, entries in plan:
        numeric = np.empty(len(entries))
        kinked = np.zeros(len(entries), dtype=bool)
        chunk = max(1, CHUNK_FLOATS // (len(x) * max(net.sizes[layer + 1:])))
        for start in range(0, len(entries), chunk):
            part = entries[start:start + chunk]
            numeric[start:start + len(part)], kinked[start:start + len(part)] = _numeric_slopes(
                net, fp, logits, masks, labels, layer, name[0] == "b", part, eps)
            done += len(part)
            if on_progress is not None:
                on_progress(done, total)
        analytic = g.ravel()[entries].copy()
        err = relative_error(analytic, numeric)
        full = np.full(p.shape, np.nan)
        full.ravel()[entries] = err
        # Entries whose nudge crossed a ReLU kink are shown but kept out of the verdict: there
        # the finite difference is not a derivative (shrinking eps makes them rarer).
        smooth = err[~kinked]
        result.layers.append(LayerCheck(name, p.shape, len(entries), float(smooth.max(initial=0.0)),
                                        float(smooth.mean()) if len(smooth) else 0.0, full, analytic, numeric,
                                        int(kinked.sum())))
    return result


def _numeric_slopes(net, fp, logits, masks, labels, layer, is_bias, entries, eps):
    """Central differences for several entries of one parameter array, batched.

    L(w+e) - L(w-e) is taken as [L(w+e) - L(w)] - [L(w-e) - L(w)], each change propagated
    forward as a difference (no subtraction of two nearly equal losses), so the numeric slope
    stays accurate even where the gradient is tiny.
    """
    a_in = fp.inputs[layer]
    fan_out = net.sizes[layer + 1]
    cols = entries if is_bias else entries % fan_out
    # Nudging entry (row, col) moves only column `col` of this layer's pre-activation: (k, n)
    nudge = np.full((len(entries), len(a_in)), eps) if is_bias else eps * a_in[:, entries // fan_out].T
    (up, kink_up), (down, kink_down) = (
        _loss_change(net, fp, logits, sign * nudge, cols, layer, masks, labels) for sign in (1.0, -1.0))
    return (up - down) / (2 * eps), kink_up | kink_down


def activation_change(name, z, dz):
    """act(z + dz) - act(z), written so that no two nearly equal numbers are subtracted."""
    if name in ("relu", "leaky_relu"):
        slope = 0.0 if name == "relu" else LEAKY_SLOPE
        moved = z + dz
        same_side = (z > 0) == (moved > 0)
        exact = np.where(z > 0, dz, slope * dz)  # linear piece: the change is slope * dz
        crossed = np.where(moved > 0, moved, slope * moved) - np.where(z > 0, z, slope * z)
        return np.where(same_side, exact, crossed)
    if name == "tanh":  # tanh(a+d) - tanh(a) = tanh(d) (1 - tanh(a) tanh(a+d))
        return np.tanh(dz) * (1 - np.tanh(z) * np.tanh(z + dz))
    if name == "sigmoid":  # sigmoid(x) = (1 + tanh(x/2)) / 2
        return 0.5 * activation_change("tanh", z / 2, dz / 2)
    raise ValueError(name)


def crosses_kink(name, z, dz):
    """Where moving z by dz crosses the kink at 0 of a piecewise-linear activation (there a
    finite difference measures a mix of two slopes, not the derivative); None if smooth."""
    if name in ("relu", "leaky_relu"):
        return (z > 0) != (z + dz > 0)
    return None


def _loss_change(net, fp, logits, dz_col, cols, layer, masks, labels):
    """Change of the mean cross-entropy when column cols[k] of layer `layer`'s pre-activation
    moves by dz_col[k] (one perturbed copy of the batch per k), and whether the move crossed
    an activation kink anywhere (k,)."""
    k, n = dz_col.shape
    samples = np.arange(n)
    kinked = np.zeros(k, dtype=bool)
    if layer == net.num_layers - 1:  # the output layer itself: one logit column moves
        dz = np.zeros((k, n, net.sizes[-1]))
        dz[np.arange(k), :, cols] = dz_col
    else:
        # First hidden layer after the nudge: only one unit changes, so its effect on the
        # next layer is an outer product with that unit's outgoing weights.
        z = fp.pre_activations[layer][:, cols].T
        dh = activation_change(net.activation, z, dz_col)
        crossed = crosses_kink(net.activation, z, dz_col)
        if crossed is not None:
            kinked |= crossed.any(axis=1)
        if masks is not None and masks[layer] is not None:
            dh *= masks[layer][:, cols].T
        dz = dh[:, :, None] * net.weights[layer + 1][cols][:, None, :]  # biases cancel
        for i in range(layer + 1, net.num_layers - 1):
            dh = activation_change(net.activation, fp.pre_activations[i], dz)
            crossed = crosses_kink(net.activation, fp.pre_activations[i], dz)
            if crossed is not None:
                kinked |= crossed.any(axis=(1, 2))
            if masks is not None and masks[i] is not None:
                dh *= masks[i]
            dz = (dh.reshape(k * n, -1) @ net.weights[i + 1]).reshape(k, n, -1)
    # Cross-entropy change per sample: log(sum p exp(dz)) - dz_label, via log1p/expm1 (no cancellation).
    p = softmax(logits)
    change = np.log1p((p * np.expm1(dz)).sum(axis=2)) - dz[:, samples, labels]
    return change.mean(axis=1), kinked
