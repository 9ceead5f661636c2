"""The walkthrough of one training step (engine/walkthrough.py) computes what training does;
saliency and the nudge (engine/explain.py) are the engine's backprop carried to the pixels."""
import itertools

import numpy as np
import pytest

from engine import explain, reference
from engine.layers import ACTIVATIONS
from engine.network import Network
from engine.optimizers import SGD, Adam
from engine.walkthrough import gradient_step_key, matches_training, walk_step

CASES = list(itertools.product(sorted(ACTIVATIONS), (True, False), (False, True)))


def digit(seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros(784)
    x[rng.choice(784, 120, replace=False)] = rng.random(120)
    return x


def trained_optimizer(net, kind="adam", steps=3):
    """An optimizer with state (moments, step count), as the lab's is after some training."""
    optimizer = Adam(lr=0.01, weight_decay=1e-3) if kind == "adam" else SGD(lr=0.05, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(steps):
        net.gradients(rng.random((8, 784)), rng.integers(0, 10, 8))
        optimizer.step(net)
    return optimizer


@pytest.mark.parametrize("activation,use_bias,dropout", CASES,
                         ids=[f"{a}-{'bias' if b else 'nobias'}-{'dropout' if d else 'full'}" for a, b, d in CASES])
def test_the_walked_step_equals_training_to_float64_precision(activation, use_bias, dropout):
    net = Network([784, 20, 12, 10], activation, use_bias, "float64", seed=2)
    optimizer = trained_optimizer(net)
    masks = None
    if dropout:
        rng = np.random.default_rng(3)
        masks = [(rng.random((1, w)) < 0.7) / 0.7 for w in (20, 12)]
    before = net.params.copy()
    walk = walk_step(net, optimizer, digit(), 7, masks=masks)
    np.testing.assert_array_equal(net.params, before)  # the lab's network is left as it was
    grad_diff, weight_diff = matches_training(net, optimizer, digit(), 7, walk, masks=masks)
    assert grad_diff < 1e-12 and weight_diff < 1e-12, (grad_diff, weight_diff)
    assert walk.loss == pytest.approx(reference.loss_and_gradients(net.weights, net.biases, digit()[None], np.array([7]),
                                                                   activation, masks=masks or [None, None])[0])


def test_sgd_and_max_norm_walk_as_they_train():
    net = Network([784, 16, 10], seed=1, dtype="float64")
    optimizer = trained_optimizer(net, "sgd")
    optimizer.max_norm = 0.5  # small enough to bite
    walk = walk_step(net, optimizer, digit(1), 3)
    assert max(matches_training(net, optimizer, digit(1), 3, walk)) < 1e-12


def test_the_steps_come_in_order_forward_backward_update_with_every_layer():
    net = Network([784, 20, 12, 10], seed=0, dtype="float64")
    masks = [np.ones((1, 20)), None]
    walk = walk_step(net, Adam(), digit(), 1, masks=masks)
    phases = [s.phase for s in walk.steps]
    assert phases == sorted(phases, key=["forward", "backward", "update"].index)
    keys = [s.key for s in walk.steps]
    assert keys[0] == "forward-0-input" and "forward-1-dropout" in keys and "forward-2-dropout" not in keys
    for layer in (1, 2, 3):
        step = walk.steps[walk.index(gradient_step_key(layer))]
        assert step.arrays["dW"].shape == net.weights[layer - 1].shape and step.function is reference.backward
    assert walk.steps[-1].key == "update-1-weights" and walk.steps[-1].function is reference.adam_step


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_saliency_is_the_gradient_of_the_class_score_by_central_differences(activation):
    net = Network([784, 24, 10], activation, seed=4, dtype="float64")
    x = digit(2).reshape(28, 28)
    grad = explain.saliency(net, x, 5)
    assert grad.shape == (28, 28)

    def logit(image):
        fp = reference.forward(net.weights, net.biases, image.reshape(1, -1), activation, masks=[None])
        return fp.pre_activations[-1][0, 5]

    eps = 1e-6
    for pixel in np.random.default_rng(0).choice(784, 40, replace=False):
        up, down = x.copy(), x.copy()
        up.flat[pixel] += eps
        down.flat[pixel] -= eps
        assert grad.flat[pixel] == pytest.approx((logit(up) - logit(down)) / (2 * eps), rel=1e-5, abs=1e-8)


def test_the_loss_gradient_matches_central_differences_too():
    net = Network([784, 24, 10], "tanh", seed=4, dtype="float64")
    x = digit(3)
    grad = explain.loss_gradient(net, x, 2)

    def loss(image):
        return reference.loss_and_gradients(net.weights, net.biases, image[None], np.array([2]), "tanh",
                                            masks=[None])[0]

    eps = 1e-6
    for pixel in np.random.default_rng(1).choice(784, 30, replace=False):
        up, down = x.copy(), x.copy()
        up[pixel] += eps
        down[pixel] -= eps
        assert grad[pixel] == pytest.approx((loss(up) - loss(down)) / (2 * eps), rel=1e-5, abs=1e-9)


def test_the_nudge_makes_a_trained_network_read_another_digit_within_the_epsilon_shown(sample_arrays):
    from engine.trainer import TrainConfig, train
    net = Network([784, 64, 10], seed=0)
    train(net, Adam(), sample_arrays["x_train"], sample_arrays["y_train"], TrainConfig(epochs=4, batch_size=50))
    for index in range(5):
        image = sample_arrays["x_test"][index].reshape(-1) / 255
        result = explain.nudge(net, image)
        assert result.found, f"test digit {index}: no nudge up to 0.3 changed the reading"
        assert result.new_class != result.original_class == int(net.predict_proba(image[None]).argmax())
        assert int(net.predict_proba(result.image[None]).argmax()) == result.new_class
        assert np.abs(result.image - image).max() <= result.epsilon + 1e-6 <= 0.3 + 1e-6
        assert result.image.min() >= 0 and result.image.max() <= 1
        assert result.probabilities.sum() == pytest.approx(1, abs=1e-5)
