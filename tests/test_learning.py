"""The network learns: always on a separable synthetic problem, and on the real MNIST sample."""
import time

import numpy as np
import pytest

from conftest import require_sample
from engine import Adam, Network, SGD, TrainConfig, evaluate, train


def blobs(seed, n_train=600, n_test=300, classes=4, features=10, spread=0.6):
    """Gaussian blobs around well-separated centres (a separable problem): train and test sets."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, features)) * 3

    def draw(n):
        labels = rng.integers(0, classes, n)
        return centres[labels] + rng.normal(size=(n, features)) * spread, labels

    return draw(n_train), draw(n_test)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("seed", [0, 1])
def test_separable_blobs_are_learned(activation, seed):
    (x, y), (xt, yt) = blobs(seed)
    net = Network([10, 16, 8, 4], activation, True, "float32", seed=seed)
    untrained = evaluate(net, xt, yt)[1]
    end = train(net, Adam(lr=0.01), x, y, TrainConfig(epochs=15, batch_size=32, seed=seed))
    assert end.reason == "completed"
    loss, acc = evaluate(net, xt, yt)
    assert acc >= 0.97, (activation, seed, untrained, acc)
    assert net.history[-1]["loss"] < net.history[0]["loss"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_adam_and_sgd_each_learn_separable_blobs(optimizer):
    (x, y), (xt, yt) = blobs(3)
    net = Network([10, 16, 4], "relu", True, "float32", seed=0)
    opt = Adam(lr=0.01) if optimizer == "adam" else SGD(lr=0.1, momentum=0.9)
    train(net, opt, x, y, TrainConfig(epochs=10, batch_size=32))
    assert evaluate(net, xt, yt)[1] >= 0.97


def test_synthetic_digits_are_learned(synthetic):
    net = Network([784, 64, 32, 10], seed=0)
    train(net, Adam(), synthetic.x_train, synthetic.y_train, TrainConfig(epochs=10, batch_size=50))
    assert evaluate(net, synthetic.x_test, synthetic.y_test)[1] >= 0.85


def test_mnist_sample_784_64_32_10_reaches_91_percent(sample_arrays):
    """The notebook's network (with biases, scaled inputs, shuffling) on 4,000 real digits."""
    d = sample_arrays
    net = Network([784, 64, 32, 10], "relu", True, "float32", seed=0)
    untrained = evaluate(net, d["x_test"], d["y_test"])[1]
    start = time.perf_counter()
    end = train(net, Adam(), d["x_train"], d["y_train"], TrainConfig(epochs=10, batch_size=100, seed=0))
    seconds = time.perf_counter() - start
    loss, acc = evaluate(net, d["x_test"], d["y_test"])
    print(f"mnist-sample 784-64-32-10: untrained {untrained:.4f}, trained {acc:.4f} in {seconds:.2f} s")
    assert end.reason == "completed"
    assert untrained < 0.3
    assert acc >= 0.91
