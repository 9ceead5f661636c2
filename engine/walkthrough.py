"""One training step of a network on one digit, walked through in order: forward, backward,
update. Each step keeps the arrays it used and made, and names the engine function that
computes it (engine/reference.py), so the Inside backprop page can show the formula, the
numbers and the code, and the walked step can be checked against what training does
(`matches_training`).

    walk = walk_step(network, optimizer, x, label)
    for step in walk.steps: print(step.title, {k: v.shape for k, v in step.arrays.items()})
"""
import copy
from dataclasses import dataclass, field

import numpy as np

from . import reference
from .data import scale_images
from .layers import ACTIVATIONS, cross_entropy, softmax


@dataclass
class Step:
    key: str                # e.g. "forward-2-activation": stable, for links to a step
    title: str
    phase: str              # forward | backward | update
    layer: int = None       # 1-based layer the step belongs to (None: the whole network)
    arrays: dict = field(default_factory=dict)   # name -> array, what the step used and made
    function: object = None  # the engine function computing it (its source is shown)


@dataclass
class Walk:
    steps: list
    loss: float
    weight_grads: list
    bias_grads: list
    new_weights: list
    new_biases: list

    def index(self, key):
        """Position of the step with this key (or the first whose key starts with it)."""
        return next(i for i, s in enumerate(self.steps) if s.key == key or s.key.startswith(key))


def gradient_step_key(layer):
    """The key of the step where layer `layer`'s (1-based) weight and bias gradients are made."""
    return f"backward-{layer}-gradients"


def walk_step(network, optimizer, x, label, masks=None):
    """Walk one training step of `network` with `optimizer` (its current state; both are left
    as they are) on one input row `x` (floats, already scaled) with true class `label`.
    masks: a fixed dropout mask per hidden layer (None for no dropout)."""
    act, slope = ACTIVATIONS[network.activation]
    weights, biases = network.weights, network.biases
    n = len(weights)
    x = np.asarray(x, dtype=network.dtype).reshape(1, -1)
    y = np.array([int(label)])
    masks = list(masks) if masks is not None else [None] * (n - 1)
    steps = [Step("forward-0-input", "The input: pixels scaled to [0, 1]", "forward", None, {"x": x}, scale_images)]

    # forward: what reference.forward does, one layer at a time
    a, inputs, hidden, zs = x, [x], [], []
    for i in range(n):
        z = reference.dense(a, weights[i], biases[i])
        zs.append(z)
        layer = i + 1
        if i == n - 1:
            steps.append(Step(f"forward-{layer}-dense", f"Output layer {layer}: logits z = a W + b", "forward", layer,
                              {"a": a, "W": weights[i], "b": biases[i], "z": z}, reference.dense))
            break
        steps.append(Step(f"forward-{layer}-dense", f"Layer {layer}: z = a W + b", "forward", layer,
                          {"a": a, "W": weights[i], "b": biases[i], "z": z}, reference.dense))
        h = act(z)
        hidden.append(h)
        steps.append(Step(f"forward-{layer}-activation", f"Layer {layer}: h = {network.activation}(z)", "forward",
                          layer, {"z": z, "h": h}, act))
        a = h if masks[i] is None else h * masks[i]
        if masks[i] is not None:
            steps.append(Step(f"forward-{layer}-dropout", f"Layer {layer}: dropout, a = h * mask", "forward", layer,
                              {"h": h, "mask": masks[i], "a": a}, reference.forward))
        inputs.append(a)
    p = softmax(zs[-1])
    steps.append(Step("forward-softmax", "Softmax: p = exp(z) / sum exp(z)", "forward", n, {"z": zs[-1], "p": p},
                      softmax))
    loss = cross_entropy(p, y)
    steps.append(Step("forward-loss", "Cross-entropy: L = -log p[label]", "forward", n,
                      {"p": p, "label": y, "L": np.array([[loss]])}, cross_entropy))

    # backward: what reference.backward does, one layer at a time
    fp = reference.ForwardPass(inputs, hidden, masks, p, zs)
    delta = reference.output_delta(p, y)
    steps.append(Step("backward-output-delta", "The error at the output: delta = p - y (over the batch of 1)",
                      "backward", n, {"p": p, "y": np.eye(p.shape[1], dtype=p.dtype)[y], "delta": delta},
                      reference.output_delta))
    weight_grads, bias_grads = [None] * n, [None] * n
    for i in range(n - 1, -1, -1):
        layer = i + 1
        weight_grads[i] = inputs[i].T @ delta
        bias_grads[i] = delta.sum(axis=0) if network.use_bias else None
        steps.append(Step(gradient_step_key(layer), f"Layer {layer}: dW = a^T delta, db = delta", "backward", layer,
                          {"a": inputs[i], "delta": delta, "dW": weight_grads[i], "db": bias_grads[i]},
                          reference.backward))
        if i == 0:
            break
        carried = reference.delta_to_previous(delta, i, fp, weights, network.activation)
        steps.append(Step(f"backward-{layer}-delta", f"The error passed back to layer {i}: delta W^T * mask * "
                          f"{network.activation}'(h)", "backward", i,
                          {"delta": delta, "W": weights[i], "h": hidden[i - 1], "slope": slope(hidden[i - 1]),
                           "mask": masks[i - 1], "carried": carried}, reference.delta_to_previous))
        delta = carried

    new_weights, new_biases = _update(network, optimizer, weight_grads, bias_grads, steps)
    return Walk(steps, loss, weight_grads, bias_grads, new_weights, new_biases)


def _update(network, optimizer, weight_grads, bias_grads, steps):
    """The optimizer's step on each array (engine.reference.adam_step / sgd_step), from its state
    as it is now: the same update Network training applies, array by array."""
    state = {k: np.asarray(v) for k, v in copy.deepcopy(optimizer.state()).items()}
    t = int(state.get("t", 0)) + 1
    params, grads, offsets = [], [], []
    offset = 0
    for w, b, gw, gb in zip(network.weights, network.biases, weight_grads, bias_grads):
        if optimizer.weight_decay:
            gw = gw + network.dtype(optimizer.weight_decay) * w   # L2 on weights only
        for p, g in ((w, gw), (b, gb)):
            if p is None:
                continue
            params.append(p)
            grads.append(g.astype(p.dtype))
            offsets.append(offset)
            offset += p.size
    news = []
    for k, (p, g, start) in enumerate(zip(params, grads, offsets)):
        part = slice(start, start + p.size)
        if optimizer.name == "adam":
            m = state["m"][part].reshape(p.shape) if "m" in state else np.zeros_like(p)
            v = state["v"][part].reshape(p.shape) if "v" in state else np.zeros_like(p)
            new, m, v = reference.adam_step(p, g, m, v, t, optimizer.lr, optimizer.beta1, optimizer.beta2, optimizer.eps)
            arrays = {"w": p, "g": g, "m": m, "v": v, "new w": new}
            function = reference.adam_step
        else:
            velocity = state["velocity"][part].reshape(p.shape) if "velocity" in state else np.zeros_like(p)
            new, velocity = reference.sgd_step(p, g, velocity, optimizer.lr, optimizer.momentum)
            arrays = {"w": p, "g": g, "velocity": velocity, "new w": new}
            function = reference.sgd_step
        news.append(new.astype(p.dtype))
        if k == 0:  # the first layer's weights stand for all: the same formula on every array
            steps.append(Step("update-1-weights", f"{optimizer.name.upper()}: the new weights of layer 1 (step {t})",
                              "update", 1, arrays, function))
    if optimizer.max_norm:
        _max_norm(network, news, optimizer.max_norm)
    it = iter(news)
    new_weights, new_biases = [], []
    for b in network.biases:
        new_weights.append(next(it))
        new_biases.append(None if b is None else next(it))
    return new_weights, new_biases


def _max_norm(network, news, limit):
    index = 0
    for layer, b in enumerate(network.biases[:-1]):
        w = news[index]
        norms = np.sqrt(np.einsum("ij,ij->j", w, w))
        too_big = norms > limit
        w[:, too_big] *= network.dtype(limit) / norms[too_big]
        index += 1 if b is None else 2


def matches_training(network, optimizer, x, label, walk, masks=None):
    """The largest difference between the walked step and what training does (Network.gradients
    and optimizer.step on copies): (largest gradient difference, largest weight difference)."""
    net, opt = network.copy(), copy.deepcopy(optimizer)
    x = np.asarray(x, dtype=network.dtype).reshape(1, -1)
    net.gradients(x, np.array([int(label)]), masks=masks if any(m is not None for m in (masks or [])) else None)
    walked_grads = [g for pair in zip(walk.weight_grads, walk.bias_grads) for g in pair if g is not None]
    trained_grads = [g for pair in zip(net.weight_grads, net.bias_grads) for g in pair if g is not None]
    grad_diff = max(float(np.abs(a - b).max()) for a, b in zip(walked_grads, trained_grads))
    opt.step(net)
    walked = [p for pair in zip(walk.new_weights, walk.new_biases) for p in pair if p is not None]
    trained = [p for pair in zip(net.weights, net.biases) for p in pair if p is not None]
    return grad_diff, max(float(np.abs(a - b).max()) for a, b in zip(walked, trained))
