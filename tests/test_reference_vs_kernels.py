"""The readable reference (engine/reference.py) and the fast kernels that train
(engine/kernels.py, through Network.gradients and the optimizers) compute the same numbers:
the loss, every gradient, every layer's activations and ten training steps, for every
activation, with and without biases, with dropout, in float32 and float64, on a short batch."""
import itertools
import time

import numpy as np
import pytest

from engine import reference
from engine.layers import ACTIVATIONS, accuracy
from engine.network import Network
from engine.optimizers import SGD, Adam

CASES = list(itertools.product(sorted(ACTIVATIONS), (True, False), ("float32", "float64"), (1.0, 0.7)))
TOLERANCE = {"float32": dict(rtol=2e-4, atol=2e-6), "float64": dict(rtol=1e-10, atol=1e-13)}


def batch(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)).astype(dtype), rng.integers(0, 10, n)


def name(case):
    activation, use_bias, dtype, keep_prob = case
    return f"{activation}-{'bias' if use_bias else 'nobias'}-{dtype}-keep{keep_prob}"


@pytest.mark.parametrize("case", CASES, ids=[name(c) for c in CASES])
def test_one_step_gives_the_same_loss_gradients_and_activations(case):
    activation, use_bias, dtype, keep_prob = case
    net = Network([784, 24, 16, 10], activation, use_bias, dtype, seed=3)
    x, y = batch(37, dtype)  # 37: like a short last batch, no round size
    loss, acc, flat = net.gradients(x, y, keep_prob, np.random.default_rng(5))  # the kernels
    kernel_grads = [g.copy() for g in net.weight_grads], [None if g is None else g.copy() for g in net.bias_grads]
    ref_loss, fp, weight_grads, bias_grads = reference.loss_and_gradients(
        net.weights, net.biases, x, y, activation, keep_prob, np.random.default_rng(5))  # the same draws
    assert loss == pytest.approx(ref_loss, rel=TOLERANCE[dtype]["rtol"])
    assert acc == accuracy(fp.probabilities, y)
    for kernel, ref in zip(kernel_grads[0] + kernel_grads[1], weight_grads + bias_grads):
        assert (kernel is None) == (ref is None)
        if ref is not None:
            assert kernel.dtype == ref.dtype == np.dtype(dtype)
            np.testing.assert_allclose(kernel, ref, **TOLERANCE[dtype])
    # every layer's activations: the kernels' buffers after the step hold what the reference kept
    workspace = net._workspaces[len(x)]
    for i, hidden in enumerate(fp.hidden):
        width = net.sizes[i + 1]
        kept = workspace.inputs[i + 1] if fp.masks[i] is None else workspace.pre_dropout[i]
        np.testing.assert_allclose(kept[:, :width], hidden, **TOLERANCE[dtype])


@pytest.mark.parametrize("case", CASES, ids=[name(c) for c in CASES])
def test_ten_training_steps_with_adam_end_at_the_same_weights(case):
    activation, use_bias, dtype, keep_prob = case
    net = Network([784, 24, 16, 10], activation, use_bias, dtype, seed=4)
    weights = [w.copy() for w in net.weights]
    biases = [None if b is None else b.copy() for b in net.biases]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in weights + [b for b in biases if b is not None]]
    optimizer = Adam(lr=0.01)
    kernel_rng, ref_rng = np.random.default_rng(9), np.random.default_rng(9)
    for t in range(1, 11):
        x, y = batch(50 if t < 10 else 13, dtype, seed=t)  # the last one short
        net.gradients(x, y, keep_prob, kernel_rng)
        optimizer.step(net)
        _, _, weight_grads, bias_grads = reference.loss_and_gradients(weights, biases, x, y, activation, keep_prob,
                                                                      ref_rng)
        params = weights + [b for b in biases if b is not None]
        grads = weight_grads + [g for g in bias_grads if g is not None]
        for k, (p, g) in enumerate(zip(params, grads)):
            new, moments[k][0], moments[k][1] = reference.adam_step(p, g, *moments[k], t, lr=0.01)
            p[...] = new
    for kernel, ref in zip(net.weights + [b for b in net.biases if b is not None],
                           weights + [b for b in biases if b is not None]):
        # Adam divides by sqrt(v): where a gradient is near 0, float32 rounding moves a step by a
        # part of lr (0.01); float64 agrees to 1e-9.
        np.testing.assert_allclose(kernel, ref, **({"rtol": 1e-3, "atol": 1e-4} if dtype == "float32"
                                                   else {"rtol": 1e-9, "atol": 1e-12}))
    np.testing.assert_allclose(optimizer.m[:net.weights[0].size], moments[0][0].ravel(), **TOLERANCE[dtype])


def test_sgd_with_momentum_follows_the_reference_step():
    net = Network([784, 16, 10], seed=1, dtype="float64")
    w = net.params.copy()
    velocity = np.zeros_like(w)
    optimizer = SGD(lr=0.05, momentum=0.9)
    for t in range(10):
        x, y = batch(20, "float64", seed=t)
        net.gradients(x, y)
        g = net.grads.copy()
        optimizer.step(net)
        w, velocity = reference.sgd_step(w, g, velocity, lr=0.05, momentum=0.9)
    np.testing.assert_allclose(net.params, w, rtol=1e-12, atol=1e-15)


def test_the_kernels_are_faster_than_the_reference(capsys):
    """Not a timing assertion on the machine: the kernels must at least not lose (they exist
    to be faster); the figures are printed for the README."""
    figures = []
    for sizes in ([784, 64, 32, 10], [784, 512, 256, 10]):
        net = Network(sizes, seed=0)
        x, y = batch(100, "float32")
        net.gradients(x, y)

        def best(action, repeats=15):
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                action()
                times.append(time.perf_counter() - began)
            return min(times)

        kernel = best(lambda: net.gradients(x, y))
        ref = best(lambda: reference.loss_and_gradients(net.weights, net.biases, x, y))
        figures.append((sizes, ref * 1e3, kernel * 1e3))
    with capsys.disabled():
        for sizes, ref_ms, kernel_ms in figures:
            print(f"\n{'-'.join(map(str, sizes))} batch 100 float32: reference step {ref_ms:.2f} ms, "
                  f"kernels {kernel_ms:.2f} ms ({ref_ms / kernel_ms:.1f}x)")
    assert all(kernel_ms < ref_ms * 1.1 for _, ref_ms, kernel_ms in figures), figures
