"""Forward pass, loss and gradients against TensorFlow's autodiff on the same float64 weights."""
import os
import zlib

import numpy as np
import pytest

from engine import Network, layers
from engine.layers import LEAKY_SLOPE, cross_entropy

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")

TOLERANCE = 1e-9

TF_ACTIVATIONS = {
    "relu": tf.nn.relu,
    "leaky_relu": lambda z: tf.nn.leaky_relu(z, alpha=LEAKY_SLOPE),
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
}


def test_tensorflow_applies_the_engines_leaky_relu_slope():
    """Measured, not read off the constant: the slope below zero of the engine's leaky ReLU and
    of its derivative, and of the TensorFlow activation the reference uses, value and gradient.
    (tf.nn.leaky_relu keeps alpha as a float32 attribute even for float64 inputs: its slope is
    float32(0.01), 2e-8 away in relative terms.)"""
    z = np.array([-4.0, -0.5, -1e-3])
    engine_values = layers.leaky_relu(z) / z
    engine_slopes = layers.leaky_relu_derivative(layers.leaky_relu(z))
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        out = TF_ACTIVATIONS["leaky_relu"](zt)
    tf_values, tf_slopes = out.numpy() / z, tape.gradient(out, zt).numpy()
    for measured in (engine_values, engine_slopes):
        np.testing.assert_allclose(measured, 0.01, rtol=1e-12)
    for measured in (tf_values, tf_slopes):
        np.testing.assert_allclose(measured, np.float32(0.01), rtol=1e-12)
        np.testing.assert_allclose(measured, engine_slopes, rtol=1e-7)
    assert LEAKY_SLOPE == 0.01
    np.testing.assert_array_equal(layers.leaky_relu(np.array([0.5, 3.0])), [0.5, 3.0])   # above zero: identity


def tf_reference(net, x, labels, masks):
    """Probabilities, mean loss and gradients (same order as net.params) from tf.GradientTape."""
    weights = [tf.Variable(w.copy()) for w in net.weights]
    biases = [tf.Variable(b.copy()) if b is not None else None for b in net.biases]
    act = TF_ACTIVATIONS[net.activation]
    with tf.GradientTape() as tape:
        a = tf.constant(x)
        for i, (w, b) in enumerate(zip(weights, biases)):
            z = a @ w
            if b is not None:
                z = z + b
            if i < len(weights) - 1:
                a = act(z)
                if masks[i] is not None:
                    a = a * masks[i]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=z))
    variables = [v for pair in zip(weights, biases) for v in pair if v is not None]
    grads = tape.gradient(loss, variables)
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    return tf.nn.softmax(z).numpy(), float(loss.numpy()), flat


def rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@pytest.mark.parametrize("activation", sorted(TF_ACTIVATIONS))
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("keep_prob", [1.0, 0.7])
def test_forward_loss_and_gradients_equal_tensorflows_autodiff(activation, use_bias, keep_prob):
    rng = np.random.default_rng(zlib.crc32(f"{activation}-{use_bias}-{keep_prob}".encode()))
    sizes = [20, 16, 12, 8, 10]
    net = Network(sizes, activation, use_bias, "float64", seed=int(rng.integers(1000)))
    for b in net.biases:
        if b is not None:
            b[...] = rng.normal(0, 0.2, b.shape)
    n = 32
    x = rng.random((n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    masks = [(rng.random((n, w)) < keep_prob) / keep_prob if keep_prob < 1 else None for w in sizes[1:-1]]

    fp = net.forward(x, masks=masks)
    loss = cross_entropy(fp.probabilities, labels)
    net.backward(fp, labels)

    tf_probabilities, tf_loss, tf_grads = tf_reference(net, x, labels, masks)
    assert rel_diff(fp.probabilities, tf_probabilities) < TOLERANCE
    assert abs(loss - tf_loss) / abs(tf_loss) < TOLERANCE
    assert rel_diff(net.grads, tf_grads) < TOLERANCE
    # per array too, so a small layer's error cannot hide behind a large one
    offset = 0
    for name, g in net.parameter_arrays(grads=True):
        part = tf_grads[offset:offset + g.size].reshape(g.shape)
        offset += g.size
        assert rel_diff(g, part) < TOLERANCE, name
    # the trainer's fused step (reused buffers, bias inside the product) agrees as well
    step_loss, _, step_grads = net.gradients(x, labels, masks=masks)
    assert abs(step_loss - tf_loss) / abs(tf_loss) < TOLERANCE
    assert rel_diff(step_grads, tf_grads) < TOLERANCE
    # prediction path (no dropout) agrees with TensorFlow's forward without masks
    if keep_prob == 1.0:
        assert rel_diff(net.predict_proba(x), tf_probabilities) < TOLERANCE
