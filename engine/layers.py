"""Math layers: the notebook's small named functions, made numerically safe.

Activation derivatives take the activation's *output* y (as the notebook's
`dReLU(z)` does with the ReLU output): every activation here is monotone, so
its slope can be read off y without keeping the pre-activation in memory.
"""
import numpy as np

LEAKY_SLOPE = 0.01


def softmax(x):
    """Row-wise softmax; shifting by the row max keeps exp() from overflowing."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def cross_entropy(probabilities, targets):
    """Mean cross-entropy over the batch; finite even where a probability is 0.

    `targets` is one-hot (n, k) or integer labels (n,).
    """
    n = probabilities.shape[0]
    if n == 0:
        return float("nan")
    tiny = np.finfo(probabilities.dtype).tiny
    if targets.ndim == 1:
        picked = probabilities[np.arange(n), targets]
        return float(-np.log(np.maximum(picked, tiny)).sum() / n)
    return float(-(targets * np.log(np.maximum(probabilities, tiny))).sum() / n)


def accuracy(probabilities, targets):
    """Share of rows whose largest probability is the true class (one-hot or labels)."""
    labels = targets if targets.ndim == 1 else targets.argmax(axis=1)
    return float(np.count_nonzero(probabilities.argmax(axis=1) == labels)) / len(labels)


def relu(x):
    return np.maximum(x, 0)


def relu_derivative(y):
    """Slope of ReLU given its output y (1 where y > 0, else 0)."""
    return (y > 0).astype(y.dtype)


def leaky_relu(x):
    return np.where(x > 0, x, x * x.dtype.type(LEAKY_SLOPE))


def leaky_relu_derivative(y):
    return np.where(y > 0, y.dtype.type(1), y.dtype.type(LEAKY_SLOPE))


def tanh(x):
    return np.tanh(x)


def tanh_derivative(y):
    return 1 - y * y


def sigmoid(x):
    # Split by sign so exp() never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1 / (1 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1 + e)
    return out


def sigmoid_derivative(y):
    return y * (1 - y)


# name -> (function, derivative from output)
ACTIVATIONS = {
    "relu": (relu, relu_derivative),
    "leaky_relu": (leaky_relu, leaky_relu_derivative),
    "tanh": (tanh, tanh_derivative),
    "sigmoid": (sigmoid, sigmoid_derivative),
}


def dropout_mask(shape, keep_prob, rng, dtype=np.float32):
    """Per-sample inverted-dropout mask: kept units are scaled by 1/keep_prob, dropped are 0.

    The same mask multiplies the gradient in backprop, so the scale is applied there too.
    """
    keep = rng.random(shape, dtype=np.float32 if dtype == np.float32 else np.float64) < keep_prob
    return keep.astype(dtype) * dtype(1 / keep_prob)


def dropout(x, keep_prob, rng):
    """Apply per-sample inverted dropout; returns (dropped x, mask). keep_prob 1 is the identity."""
    if keep_prob >= 1:
        return x, None
    mask = dropout_mask(x.shape, keep_prob, rng, x.dtype.type)
    return x * mask, mask
