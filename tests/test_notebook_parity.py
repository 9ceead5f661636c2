"""The engine, in its notebook settings (no biases, float64, no scaling, no shuffling,
no dropout), reproduces the functions of the original notebook, executed from its text."""
import re

import numpy as np
import pytest

from conftest import NOTEBOOK
from engine import Adam, Network, TrainConfig, train
from engine import network as engine_network
from engine.layers import accuracy, cross_entropy, relu, relu_derivative, softmax

NAMES = ("softmax", "accuracy", "cross_entropy", "ReLU", "dReLU", "drop", "fully_connected",
         "feed_forward", "back_propagation", "loss", "predict", "AdamOptimizer", "trainer")
# Cells that touch keras, matplotlib or data are never run: only cells that define the names above
# and import nothing.
FORBIDDEN = ("import", "keras", "load_data", "%matplotlib")


@pytest.fixture(scope="module")
def nb():
    if not NOTEBOOK.exists():
        pytest.skip(f"the original notebook is not at {NOTEBOOK} (it lives beside the project)")
    cells = re.findall(r"```python\n(.*?)```", NOTEBOOK.read_text(encoding="utf-8"), flags=re.S)
    namespace = {"np": np}
    for cell in cells:
        defines = set(re.findall(r"^(?:def|class) (\w+)", cell, flags=re.M))
        if defines & set(NAMES) and not any(word in cell for word in FORBIDDEN):
            exec(compile(cell, str(NOTEBOOK), "exec"), namespace)
    missing = [name for name in NAMES if name not in namespace]
    assert not missing, f"notebook cells not found: {missing}"
    return namespace


@pytest.fixture
def case():
    """A notebook-style network (no biases, float64) and a small unscaled batch (pixels 0-255)."""
    rng = np.random.default_rng(0)
    net = Network([12, 7, 5, 4], "relu", use_bias=False, dtype="float64", seed=3)
    x = rng.integers(0, 256, (9, 12)).astype(np.float64) / 40   # keep logits moderate
    labels = rng.integers(0, 4, 9)
    return net, x, labels, np.eye(4)[labels]


def test_softmax_relu_loss_accuracy_and_drop_equal_the_notebooks(nb):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 5)) * 5
    np.testing.assert_allclose(softmax(z), nb["softmax"](z), rtol=1e-15)
    np.testing.assert_array_equal(relu(z), nb["ReLU"](z))
    np.testing.assert_array_equal(relu_derivative(relu(z)), nb["dReLU"](nb["ReLU"](z)))
    p, y = softmax(z), np.eye(5)[rng.integers(0, 5, 6)]
    # the notebook sums the cross-entropy over the batch; the engine takes the mean
    assert cross_entropy(p, y) * len(y) == pytest.approx(nb["cross_entropy"](p, y), rel=1e-14)
    assert accuracy(p, y) == nb["accuracy"](p, y)
    np.testing.assert_array_equal(nb["drop"](z, 1), z)     # no dropout: the identity in both


def test_weights_are_drawn_from_the_notebooks_glorot_uniform_range(nb, monkeypatch):
    seen = {}

    def record(name):
        def uniform(low, high, size):
            seen[name] = (low, high, tuple(size))
            return np.zeros(size)
        return uniform

    class FakeRng:
        uniform = staticmethod(record("engine"))

    monkeypatch.setattr(np.random, "uniform", record("notebook"))
    for fan_in, fan_out in ((784, 64), (64, 32), (32, 10), (3, 1)):
        nb["fully_connected"](fan_in, fan_out)
        engine_network.fully_connected(fan_in, fan_out, FakeRng())
        assert seen["engine"] == seen["notebook"]
        assert seen["engine"][1] == pytest.approx(np.sqrt(6 / (fan_in + fan_out)), rel=1e-15)


def test_the_forward_pass_and_predict_equal_the_notebooks(nb, case):
    net, x, _, _ = case
    Ws = [w.copy() for w in net.weights]
    layers = nb["feed_forward"](Ws, x)
    fp = net.forward(x)
    for mine, theirs in zip(fp.inputs + [fp.probabilities], layers):
        np.testing.assert_allclose(mine, theirs, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(net.predict_proba(x), nb["predict"](Ws, x), rtol=1e-13)
    np.testing.assert_allclose(net.predict_proba(x[0]), nb["predict"](Ws, x[0]), rtol=1e-13)


def test_loss_and_backprop_equal_the_notebooks_summed_over_the_batch(nb, case):
    net, x, labels, y = case
    Ws = [w.copy() for w in net.weights]
    n = len(x)
    loss, acc, _ = net.gradients(x, y)
    assert loss * n == pytest.approx(nb["loss"](Ws, x, y), rel=1e-13)
    assert acc == nb["accuracy"](nb["predict"](Ws, x), y)
    theirs = nb["back_propagation"](Ws, x, y)
    # the engine's gradient is of the mean loss, the notebook's of the sum
    for g, t in zip(net.weight_grads, theirs):
        np.testing.assert_allclose(g * n, t, rtol=1e-12, atol=1e-12)
    net.gradients(x, labels)                      # integer labels give the same gradient
    for g, t in zip(net.weight_grads, theirs):
        np.testing.assert_allclose(g * n, t, rtol=1e-12, atol=1e-12)


def test_adam_updates_equal_the_notebooks_adam_optimizer(nb):
    net = Network([6, 5, 3], "relu", use_bias=False, dtype="float64", seed=0)
    Ws = [w.copy() for w in net.weights]
    opt, theirs = Adam(), nb["AdamOptimizer"]()
    rng = np.random.default_rng(2)
    for _ in range(20):
        grads = [rng.normal(size=w.shape) * 10.0 ** rng.uniform(-5, 0) for w in Ws]
        for W, dW in zip(Ws, theirs.send(grads)):
            W += dW
        for g_engine, g in zip(net.weight_grads, grads):
            g_engine[...] = g
        opt.step(net)
        for w, W in zip(net.weights, Ws):
            np.testing.assert_allclose(w, W, rtol=1e-13, atol=1e-16)
    assert opt.t == theirs.t
    np.testing.assert_allclose(opt.state()["m"], np.concatenate([m.ravel() for m in theirs.m]), rtol=1e-13)
    np.testing.assert_allclose(opt.state()["v"], np.concatenate([v.ravel() for v in theirs.v]), rtol=1e-13)


def test_training_loop_matches_the_notebooks_trainer(nb, case):
    """Three epochs of the notebook's trainer against the engine's trainer with shuffling and
    scaling off. Adam is invariant to the gradient's scale except for epsilon, so the engine
    (mean-loss gradient = notebook's sum / n) gets epsilon / n: the same update exactly."""
    net, _, _, _ = case
    rng = np.random.default_rng(5)
    n, batch = 60, 20
    x = rng.integers(0, 256, (n, 12)).astype(np.float64) / 40
    y = np.eye(4)[rng.integers(0, 4, n)]
    Ws = [w.copy() for w in net.weights]
    notebook_run = nb["trainer"](Ws, x, y, nb["AdamOptimizer"](), batch_size=batch)
    for step in notebook_run:
        if step == 3 * n // batch:
            break
    config = TrainConfig(epochs=3, batch_size=batch, shuffle=False, scale_inputs=False)
    end = train(net, Adam(eps=1e-8 / batch), x, y, config)
    assert end.reason == "completed"
    for w, W in zip(net.weights, Ws):
        np.testing.assert_allclose(w, W, rtol=1e-10, atol=1e-13)
