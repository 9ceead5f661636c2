"""Math layers: softmax, cross-entropy, accuracy, activations and their derivatives, dropout."""
import numpy as np
import pytest

from engine import layers
from engine.layers import ACTIVATIONS, LEAKY_SLOPE, accuracy, cross_entropy, dropout, dropout_mask, softmax


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_are_distributions_even_for_huge_logits(dtype):
    x = np.array([[1000.0, 0.0, -1000.0], [-5.0, -5.0, -5.0], [3.0, 1.0, 0.2]], dtype=dtype)
    p = softmax(x)
    assert p.dtype == dtype
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)
    e = np.exp(np.array([3.0, 1.0, 0.2]))
    np.testing.assert_allclose(p[2], e / e.sum(), rtol=1e-6)
    assert p[0, 0] == pytest.approx(1.0)


def test_cross_entropy_is_the_batch_mean_and_labels_equal_one_hot():
    rng = np.random.default_rng(0)
    p = softmax(rng.normal(size=(7, 4)))
    labels = rng.integers(0, 4, 7)
    expected = -np.log(p[np.arange(7), labels]).mean()
    assert cross_entropy(p, labels) == pytest.approx(expected, rel=1e-12)
    assert cross_entropy(p, np.eye(4)[labels]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_finite_when_a_probability_is_zero(dtype):
    p = np.array([[1.0, 0.0], [0.5, 0.5]], dtype=dtype)
    for y in (np.array([1, 0]), np.array([[0.0, 1.0], [1.0, 0.0]])):
        loss = cross_entropy(p, y)
        assert np.isfinite(loss)
        assert loss > 10  # a confident mistake is expensive, but not infinite


def test_cross_entropy_of_nothing_is_nan_not_a_crash():
    assert np.isnan(cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=int)))


def test_accuracy_is_the_share_of_rows_whose_top_class_is_the_label():
    p = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 0])
    assert accuracy(p, labels) == 0.75
    assert accuracy(p, np.eye(2)[labels]) == 0.75


def test_each_activation_gives_its_textbook_values():
    x = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(layers.relu(x), [0, 0, 0, 0.5, 2])
    np.testing.assert_allclose(layers.leaky_relu(x), [-2 * LEAKY_SLOPE, -0.5 * LEAKY_SLOPE, 0, 0.5, 2])
    np.testing.assert_allclose(layers.tanh(x), np.tanh(x))
    np.testing.assert_allclose(layers.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)


def test_sigmoid_does_not_overflow():
    x = np.array([-1000.0, -50.0, 50.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise"):
        y = layers.sigmoid(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0, 1 / (1 + np.exp(50.0)), 1, 1], atol=1e-30)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_derivative_from_output_matches_the_slope(name, dtype):
    f, df = ACTIVATIONS[name]
    x = np.linspace(-3, 3, 61)
    x = x[np.abs(x) > 1e-3]              # stay off the ReLU kink
    h = 1e-6
    slope = (f(x + h) - f(x - h)) / (2 * h)
    y = f(x.astype(dtype))
    assert y.dtype == dtype
    d = df(y)
    assert d.dtype == dtype
    np.testing.assert_allclose(d, slope, rtol=1e-5 if dtype == np.float32 else 1e-8, atol=1e-6)


def test_dropout_is_per_sample_inverted_and_identity_at_keep_prob_one():
    rng = np.random.default_rng(0)
    x = np.ones((2000, 50), dtype=np.float32)
    same, mask = dropout(x, 1.0, rng)
    assert same is x and mask is None
    out, mask = dropout(x, 0.8, rng)
    assert out.dtype == np.float32 and mask.dtype == np.float32
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.8)}
    np.testing.assert_array_equal(out, x * mask)
    # per sample: the rows do not all drop the same units (the notebook dropped whole columns)
    assert not (mask == mask[0]).all(axis=1).all()
    assert (mask == 0).mean() == pytest.approx(0.2, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.01)   # inverted: expectation kept


def test_dropout_mask_is_reproducible_from_the_rng():
    a = dropout_mask((5, 7), 0.5, np.random.default_rng(3), np.float64)
    b = dropout_mask((5, 7), 0.5, np.random.default_rng(3), np.float64)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float64
    assert set(np.unique(a)) <= {0.0, 2.0}                          # dropped, or kept and scaled by 1/0.5
    other = dropout_mask((5, 7), 0.5, np.random.default_rng(4), np.float64)
    assert not np.array_equal(a, other)                              # another seed, another mask
    # the mask is the rng's own draw: kept exactly where the uniform number is below keep_prob
    expected = (np.random.default_rng(3).random((5, 7)) < 0.5) * 2.0
    np.testing.assert_array_equal(a, expected)
