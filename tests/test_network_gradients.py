"""Backprop against a plain finite-difference reference, for architectures drawn by hypothesis.

The reference is deliberately naive: nudge one entry of `net.params`, run the forward pass,
take the mean cross-entropy, and form a five-point central difference. Nothing of backprop's
algebra is reused. Where a ReLU/leaky-ReLU pre-activation changes sign inside the stencil the
loss is not differentiable there, so that entry is left out (the test reports how many).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import FAULTS, Network, gradient_check
from engine.layers import cross_entropy

H = 1e-3          # five-point stencil: truncation ~H^4, rounding ~1e-16 / H
FLOOR = 1e-5      # entries with |a| + |n| below this are judged by their absolute error / FLOOR
TOLERANCE = 1e-6
ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid"]


def mean_loss(net, x, y, masks):
    return cross_entropy(net.forward(x, masks=masks).probabilities, y)


def signs(net, x, masks):
    return [h > 0 for h in net.forward(x, masks=masks).hidden]


def reference_gradient(net, x, y, masks):
    """(numeric gradient of the mean loss for every parameter, which entries are comparable)."""
    kinked = net.activation in ("relu", "leaky_relu")
    base = signs(net, x, masks) if kinked else None
    grad = np.zeros(net.params.size)
    ok = np.ones(net.params.size, dtype=bool)
    for j in range(net.params.size):
        saved = net.params[j]
        losses = []
        for k in (-2, -1, 1, 2):
            net.params[j] = saved + k * H
            losses.append(mean_loss(net, x, y, masks))
            if kinked and any((a != b).any() for a, b in zip(base, signs(net, x, masks))):
                ok[j] = False
        net.params[j] = saved
        grad[j] = (losses[0] - 8 * losses[1] + 8 * losses[2] - losses[3]) / (12 * H)
    return grad, ok


def relative_errors(a, n):
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), FLOOR)


def make_case(sizes, activation, use_bias, n, keep_prob, seed, one_hot):
    rng = np.random.default_rng(seed)
    net = Network(sizes, activation, use_bias, "float64", seed=seed)
    for b in net.biases:
        if b is not None:
            b[...] = rng.normal(0, 0.3, b.shape)       # non-zero biases, so their gradients matter
    x = rng.normal(size=(n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    y = np.eye(sizes[-1])[labels] if one_hot else labels
    masks = [(rng.random((n, w)) < keep_prob) / keep_prob if keep_prob < 1 else None for w in sizes[1:-1]]
    return net, x, y, masks


architectures = st.tuples(
    st.integers(1, 8),                                        # inputs
    st.lists(st.integers(1, 12), min_size=1, max_size=4),     # hidden widths
    st.integers(2, 5),                                        # classes
)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=architectures, use_bias=st.booleans(), n=st.integers(1, 5),
       keep_prob=st.sampled_from([1.0, 0.5, 0.8]), seed=st.integers(0, 2**32 - 1), one_hot=st.booleans())
def test_backprop_matches_finite_differences(activation, arch, use_bias, n, keep_prob, seed, one_hot):
    inputs, hidden, classes = arch
    sizes = [inputs, *hidden, classes]
    net, x, y, masks = make_case(sizes, activation, use_bias, n, keep_prob, seed, one_hot)

    # Two routes to the same gradient: forward() + backward() keep every intermediate array;
    # gradients() is the trainer's step, in reused buffers with the bias folded into the product.
    fp = net.forward(x, masks=masks)
    net.backward(fp, y)
    step_by_step = net.grads.copy()
    loss, _, grads = net.gradients(x, y, masks=masks)
    fused = grads.copy()
    assert loss == pytest.approx(mean_loss(net, x, y, masks), rel=1e-13)

    numeric, ok = reference_gradient(net, x, y, masks)
    assert ok.mean() >= 0.5, f"too many entries sit on a ReLU kink ({(~ok).sum()} of {ok.size})"
    for analytic in (step_by_step, fused):
        err = relative_errors(analytic, numeric)[ok]
        assert err.max() < TOLERANCE, f"{net.describe()}: max relative error {err.max():.3g}"

    # The engine's own gradient check agrees: it passes, and its numeric slopes match ours.
    check = gradient_check(net, x, y, masks=masks)
    assert check.passed, check.summary()
    engine_numeric = np.concatenate([layer.numeric for layer in check.layers])
    assert len(engine_numeric) == net.params.size                  # full check: every parameter
    assert relative_errors(engine_numeric, numeric)[ok].max() < TOLERANCE


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_training_step_equals_forward_backward_with_drawn_dropout(activation, dtype, use_bias):
    """gradients() draws the same dropout masks from the rng as forward() does."""
    net, x, y, _ = make_case([9, 8, 7, 4], activation, use_bias, 6, 1.0, 7, False)
    net = Network(net.sizes, activation, use_bias, dtype, seed=7)
    for keep_prob in (1.0, 0.6):
        fp = net.forward(x, keep_prob, np.random.default_rng(42))
        net.backward(fp, y)
        expected = net.grads.copy()
        loss, acc, grads = net.gradients(x, y, keep_prob, np.random.default_rng(42))
        assert grads.dtype == np.dtype(dtype)
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(grads, expected, rtol=tol, atol=tol * 1e-2)
        assert loss == pytest.approx(cross_entropy(fp.probabilities, y), rel=tol)
        # the short last batch of an epoch has its own buffers, and gives the same as a fresh call
        part = net.gradients(x[:4], y[:4], keep_prob, np.random.default_rng(1))[2].copy()
        fp = net.forward(x[:4], keep_prob, np.random.default_rng(1))
        net.backward(fp, y[:4])
        np.testing.assert_allclose(part, net.grads, rtol=tol, atol=tol * 1e-2)


def test_gradients_accumulate_nothing_between_calls():
    """A second backward pass overwrites the gradient buffer rather than adding to it."""
    net, x, y, masks = make_case([4, 6, 3], "tanh", True, 5, 1.0, 1, False)
    first = net.gradients(x, y)[2].copy()
    second = net.gradients(x, y)[2].copy()
    np.testing.assert_array_equal(first, second)


def test_float32_backprop_is_float32_and_close_to_float64():
    net64, x, y, _ = make_case([20, 16, 8, 10], "relu", True, 12, 1.0, 5, False)
    net32 = Network(net64.sizes, "relu", True, "float32")
    net32.params[...] = net64.params
    g64 = net64.gradients(x, y)[2].copy()
    g32 = net32.gradients(x.astype(np.float32), y)[2]
    assert g32.dtype == np.float32
    assert net32.forward(x).probabilities.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)


# --- deliberate faults make the engine's gradient check fail ------------------------------

def fault_case(fault):
    keep_prob = 0.5 if fault == "dropout_scale" else 1.0   # the scale only exists with dropout
    net, x, y, masks = make_case([6, 7, 5, 4], "relu", True, 6, keep_prob, 11, False)
    return net, x, y, masks


def test_each_of_the_four_faults_breaks_just_the_gradients_it_names():
    assert set(FAULTS) == {"activation_derivative", "dropout_scale", "bias_gradient", "batch_mean"}
    # Two hidden ReLU layers, dropout with keep_prob 0.5 (masks of 0 and 2), 6 samples.
    net, x, y, masks = make_case([6, 7, 5, 4], "relu", True, 6, 0.5, 11, False)

    def grads(fault):
        net.backward(net.forward(x, masks=masks), y, fault=fault)
        return {name: g.copy() for name, g in net.parameter_arrays(grads=True)}

    clean = grads(None)
    assert all(np.abs(g).max() > 0 for g in clean.values())
    # batch_mean: the loss gradient is not divided by the batch size, so every gradient is 6x
    for name, g in grads("batch_mean").items():
        np.testing.assert_allclose(g, 6 * clean[name], rtol=1e-12, err_msg=name)
    # bias_gradient: biases get zero, weights stay right
    for name, g in grads("bias_gradient").items():
        np.testing.assert_array_equal(g, 0 * g if name.startswith("b") else clean[name], err_msg=name)
    # dropout_scale: each mask passed back without its 1/keep_prob = 2 halves the error once more
    for name, g in grads("dropout_scale").items():
        factor = {"3": 1.0, "2": 0.5, "1": 0.25}[name[1]]
        np.testing.assert_allclose(g, factor * clean[name], rtol=1e-12, err_msg=name)
    # activation_derivative: the output layer is untouched, the hidden layers' gradients are not
    broken = grads("activation_derivative")
    for name in ("W3", "b3"):
        np.testing.assert_array_equal(broken[name], clean[name])
    for name in ("W1", "b1", "W2", "b2"):
        assert not np.allclose(broken[name], clean[name]), name


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_makes_the_gradient_check_fail(fault):
    net, x, y, masks = fault_case(fault)
    clean = gradient_check(net, x, y, masks=masks)
    assert clean.passed, clean.summary()
    broken = gradient_check(net, x, y, masks=masks, fault=fault)
    assert not broken.passed
    assert broken.verdict in ("suspicious", "wrong")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_changes_backprop_against_the_reference(fault):
    """The same faults, measured against the plain reference instead of the engine's check."""
    net, x, y, masks = fault_case(fault)
    numeric, ok = reference_gradient(net, x, y, masks)
    net.backward(net.forward(x, masks=masks), y, fault=fault)
    assert relative_errors(net.grads, numeric)[ok].max() > 1e-2


def test_gradient_checks_own_dropout_mask_also_exposes_the_missing_scale():
    """gradient_check's own seeded mask (keep_prob < 1) also exposes the missing dropout scale."""
    net, x, y, _ = make_case([6, 7, 5, 4], "tanh", True, 6, 1.0, 3, False)
    assert gradient_check(net, x, y, keep_prob=0.5).passed
    assert not gradient_check(net, x, y, keep_prob=0.5, fault="dropout_scale").passed


def test_a_misspelled_fault_is_refused_rather_than_passing_a_check_unnoticed():
    net = Network([784, 8, 10], seed=0, dtype="float64")
    x, y = np.random.default_rng(0).random((4, 784)), np.array([1, 2, 3, 4])
    with pytest.raises(ValueError, match="Unknown fault 'bias_gradients'.*bias_gradient"):
        gradient_check(net, x, y, fault="bias_gradients")
