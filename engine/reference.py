"""The engine's readable reference: one training step, in the notebook's shape.

    forward      a = x;  z = a W + b;  h = act(z);  a = h * mask  ...  p = softmax(a W + b)
    backward     delta = (p - y) / n;  dW = a.T delta;  db = sum(delta);  delta = delta W.T * mask * act'(h)
    adam_step    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  w -= lr_t m / (sqrt(v) + eps)

This is what the pages teach from and what the gradient check and the walkthrough call. The
fast step that trains (engine/kernels.py) computes the same numbers in preallocated buffers;
tests/test_reference_vs_kernels.py proves them equal.
"""
from dataclasses import dataclass, field

import numpy as np

from .layers import ACTIVATIONS, cross_entropy, dropout, softmax

# Ways to break backprop on purpose, so a user can see what a failing gradient check looks like.
FAULTS = {
    "activation_derivative": "Activation derivative replaced by 1 (ReLU treated as linear)",
    "dropout_scale": "Dropout's 1/keep_prob scale left out of backprop",
    "bias_gradient": "Bias gradients forgotten (left at zero)",
    "batch_mean": "Loss gradient not divided by the batch size",
}


@dataclass
class ForwardPass:
    """What the forward pass keeps for backprop."""
    inputs: list            # inputs[i]: what layer i multiplies (after dropout); inputs[0] is x
    hidden: list            # hidden[i]: hidden layer i's activation output (before dropout)
    masks: list             # dropout masks, one per hidden layer (None where no dropout)
    probabilities: np.ndarray = field(default=None)   # softmax output, (n, classes)
    pre_activations: list = field(default_factory=list)  # z of every layer, the output's logits last


def dense(a, w, b):
    """One layer's pre-activation: z = a W + b (no bias when b is None)."""
    z = a @ w
    if b is not None:
        z += b
    return z


def forward(weights, biases, x, activation="relu", keep_prob=1.0, rng=None, masks=None):
    """The forward pass: every hidden layer dense -> activation -> dropout, then softmax.

    masks: one per hidden layer, to reuse fixed dropout masks (a gradient check needs the
    same network at every nudge); otherwise masks are drawn with `rng` when keep_prob < 1.
    """
    act, _ = ACTIVATIONS[activation]
    a = x
    inputs, hidden, used_masks, zs = [x], [], [], []
    for i in range(len(weights) - 1):
        zs.append(dense(a, weights[i], biases[i]))
        h = act(zs[-1])
        if masks is not None:
            mask = masks[i]
            a = h if mask is None else h * mask
        else:
            a, mask = dropout(h, keep_prob, rng if rng is not None else np.random.default_rng())
        hidden.append(h)
        used_masks.append(mask)
        inputs.append(a)
    zs.append(dense(a, weights[-1], biases[-1]))
    return ForwardPass(inputs, hidden, used_masks, softmax(zs[-1]), zs)


def output_delta(probabilities, targets, fault=None):
    """Gradient of the mean cross-entropy at the logits, softmax fused in: (p - y) / n."""
    delta = probabilities.copy()
    if targets.ndim == 1:  # integer labels: subtract 1 at each row's true class
        delta[np.arange(len(delta)), targets] -= 1
    else:                  # one-hot rows
        delta -= targets
    if fault != "batch_mean":
        delta *= delta.dtype.type(1 / len(delta))
    return delta


def delta_to_previous(delta, i, fp, weights, activation="relu", fault=None):
    """The error at layer i's pre-activation, passed back to layer i-1's: through the weights,
    the dropout mask (the same one, the same 1/keep_prob) and the activation's slope."""
    _, slope = ACTIVATIONS[activation]
    delta = delta @ weights[i].T              # to hidden layer i-1's (dropped) output
    mask = fp.masks[i - 1]
    if mask is not None:
        delta *= (mask != 0) if fault == "dropout_scale" else mask
    if fault != "activation_derivative":      # its slope, read off the activation's output
        delta *= slope(fp.hidden[i - 1])
    return delta


def backward(fp, targets, weights, activation="relu", use_bias=True, fault=None):
    """Backprop through a kept forward pass: (weight gradients, bias gradients), one per layer
    (bias gradients None without biases). `fault` names a deliberate mistake (see FAULTS)."""
    if fault is not None and fault not in FAULTS:  # a misspelled fault would pass a check unnoticed
        raise ValueError(f"Unknown fault {fault!r}; choose one of {', '.join(FAULTS)}.")
    n_layers = len(weights)
    weight_grads, bias_grads = [None] * n_layers, [None] * n_layers
    delta = output_delta(fp.probabilities, targets, fault)
    for i in range(n_layers - 1, -1, -1):
        weight_grads[i] = fp.inputs[i].T @ delta
        if use_bias:
            bias_grads[i] = np.zeros(delta.shape[1], delta.dtype) if fault == "bias_gradient" else delta.sum(axis=0)
        if i == 0:
            break  # training needs nothing for the input pixels
        delta = delta_to_previous(delta, i, fp, weights, activation, fault)
    return weight_grads, bias_grads


def input_gradient(fp, delta, weights, activation="relu"):
    """How a score changes with each input pixel: `delta` (the score's gradient at the logits,
    one row per image) carried back by the same backprop, through every layer to the input."""
    for i in range(len(weights) - 1, 0, -1):
        delta = delta_to_previous(delta, i, fp, weights, activation)
    return delta @ weights[0].T


def loss_and_gradients(weights, biases, x, targets, activation="relu", keep_prob=1.0, rng=None, masks=None,
                       fault=None):
    """One step's forward and backward: (loss, forward pass, weight gradients, bias gradients)."""
    fp = forward(weights, biases, x, activation, keep_prob, rng, masks)
    use_bias = biases[0] is not None
    weight_grads, bias_grads = backward(fp, targets, weights, activation, use_bias, fault)
    return cross_entropy(fp.probabilities, targets), fp, weight_grads, bias_grads


def adam_step(w, g, m, v, t, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam as the notebook writes it (bias-corrected step size, eps added to sqrt(v)); t is
    this step's number, from 1. Returns the new (w, m, v)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    lr_t = lr * np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    w = w - lr_t * m / (np.sqrt(v) + eps)
    return w, m, v


def sgd_step(w, g, velocity, lr=0.01, momentum=0.9):
    """SGD with classical momentum: velocity = momentum velocity - lr g; w += velocity."""
    velocity = momentum * velocity - lr * g
    return w + velocity, velocity
