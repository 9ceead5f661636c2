"""What a network looks like while it learns: the pictures and numbers the live view draws and
a run's replay keeps.

- the first hidden layer's weights as 28x28 images (its first units);
- a fixed strip of test digits with the digit read now and its probability;
- the confusion matrix of a fixed test subset;
- per layer: the gradient's norm, the last update's size against the weights' (the usual rule
  of thumb wants about 1e-3), the share of dead ReLUs, a histogram of the weights.

Each costs little next to a training step (the strip is 24 digits, the confusion subset 500,
histograms read at most HISTOGRAM_SAMPLE weights of a layer). The trainer itself takes only
`training_stats` (what needs its gradients and last batch: a few norms); the rest is drawn from
a copy of its weights, by the app's server (ui/training.py), off the training's time.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .data import scale_images
from .metrics import confusion_matrix

STRIP = 24                 # test digits in the strip
WEIGHT_UNITS = 16          # first-layer units drawn as images
CONFUSION_SAMPLES = 500    # test digits in the live confusion matrix
HISTOGRAM_BINS = 24
HISTOGRAM_SAMPLE = 20_000  # weights of a layer read for its histogram, at most
UPDATE_RULE = 1e-3         # update / weight ratio the rule of thumb wants


@dataclass
class Probe:
    """The fixed test digits the panels are about (the same all run long, so changes show)."""
    strip_x: np.ndarray        # (STRIP, features) floats in [0, 1]
    strip_y: np.ndarray
    subset_x: np.ndarray       # (CONFUSION_SAMPLES, features)
    subset_y: np.ndarray
    num_classes: int

    @classmethod
    def from_test_set(cls, x_test, y_test, num_classes=10, seed=0):
        order = np.random.default_rng(seed).permutation(len(y_test))
        strip, subset = order[:STRIP], order[:CONFUSION_SAMPLES]
        scale = (lambda x: scale_images(x)) if np.asarray(x_test).dtype == np.uint8 else (
            lambda x: np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        return cls(scale(x_test[strip]), np.asarray(y_test[strip]), scale(x_test[subset]), np.asarray(y_test[subset]),
                   num_classes)


def first_layer_images(network, units=WEIGHT_UNITS):
    """The first `units` hidden units' incoming weights, one row of 784 each (float32)."""
    return np.ascontiguousarray(network.weights[0][:, :units].T, dtype=np.float32)


def strip_readings(network, probe):
    """(digit read, its probability) for each digit of the strip."""
    p = network.predict_proba(probe.strip_x)
    read = p.argmax(axis=1)
    return read.astype(np.int64), p[np.arange(len(read)), read].astype(np.float32)


def subset_confusion(network, probe):
    """counts[true, read] over the probe's test subset."""
    read = network.predict_proba(probe.subset_x).argmax(axis=1)
    return confusion_matrix(probe.subset_y, read, probe.num_classes)


@lru_cache(maxsize=64)
def _histogram_sample(size):
    """HISTOGRAM_SAMPLE positions of a layer's `size` weights, drawn once (the same sample each
    time, so histograms compare; drawing them each time cost ~0.5 ms a layer), in order."""
    positions = np.sort(np.random.default_rng(0).choice(size, HISTOGRAM_SAMPLE, replace=False))
    positions.flags.writeable = False  # shared by every call
    return positions


def training_stats(network, previous_params=None):
    """What only the training process can measure, per layer: the last gradient's norm, the last
    update's norm / the weights' norm (when the parameters before the last step are given) and
    the share of dead ReLUs on the last batch. A few norms: cheap enough to take between batches."""
    grad_norms, ratios = [], []
    before = None if previous_params is None else network.layer_weights(previous_params)
    for i, (w, g) in enumerate(zip(network.weights, network.weight_grads)):
        grad_norms.append(float(np.linalg.norm(g)))
        if before is not None:
            norm = float(np.linalg.norm(w))
            ratios.append(float(np.linalg.norm(w - before[i])) / norm if norm else float("nan"))
    return {"grad_norm": grad_norms, "update_ratio": ratios or None, "dead_share": network.dead_share()}


def weight_histograms(network):
    """Per layer, (counts, bin edges) of its weights (at most HISTOGRAM_SAMPLE of them read)."""
    histograms = []
    for w in network.weights:
        flat = w.reshape(-1)
        sample = flat if flat.size <= HISTOGRAM_SAMPLE else flat[_histogram_sample(flat.size)]
        limit = float(np.abs(sample).max()) or 1.0
        counts, edges = np.histogram(sample, bins=HISTOGRAM_BINS, range=(-limit, limit))
        histograms.append((counts.tolist(), edges.tolist()))
    return histograms


def layer_stats(network, previous_params=None):
    """Per layer: training_stats and the weights' histograms, in one dict."""
    return {**training_stats(network, previous_params), "histograms": weight_histograms(network)}
