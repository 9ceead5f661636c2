"""Tests for engine.augment: vectorised random affine and elastic distortions."""


import numpy as np
import pytest

from engine.augment import AugmentConfig, affine_batch, augment_batch
from engine.data import make_synthetic_dataset, scale_images
from engine.errors import ConfigError


@pytest.fixture(scope="module")
def digits():
    """45 flattened synthetic digits: more than two chunks of the batch loop."""
    return scale_images(make_synthetic_dataset(n_train=45, n_test=10, seed=5).x_train)


def blob(cy=14.0, cx=14.0, sigma=2.0):
    """A smooth Gaussian spot, well inside the frame."""
    ys, xs = np.indices((28, 28))
    return np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2)).astype(np.float32).reshape(1, 784)


def centre_of_mass(batch):
    images = batch.reshape(-1, 28, 28)
    ys, xs = np.indices((28, 28))
    mass = images.sum(axis=(1, 2))
    return np.stack([(images * xs).sum(axis=(1, 2)) / mass, (images * ys).sum(axis=(1, 2)) / mass], axis=1)


def test_identity_is_exact(digits):
    assert np.array_equal(affine_batch(digits, 0, 1, (0, 0)), digits)
    assert np.array_equal(augment_batch(digits, AugmentConfig(0, 0, 0, 0), np.random.default_rng(0)), digits)
    as64 = digits.astype(np.float64)
    assert np.array_equal(affine_batch(as64, 0, 1, (0, 0)), as64)


@pytest.mark.parametrize("shift", [(3, -2), (1.5, 0.5), (-2.25, 1.0), (0, 4)])
def test_a_shift_moves_the_centre_of_mass_by_that_many_pixels(shift):
    image = blob()
    moved = affine_batch(image, 0, 1, [shift])
    delta = centre_of_mass(moved)[0] - centre_of_mass(image)[0]
    assert np.allclose(delta, shift, atol=0.5)
    assert np.allclose(delta, shift, atol=0.02)  # bilinear shifts are exact for interior ink


def test_each_image_of_a_batch_moves_by_its_own_shift(digits):
    # Digits with a 4 px margin: shifts of up to 3 px keep all ink inside.
    batch = affine_batch(digits, 0, 0.7, (0, 0))
    shifts = np.random.default_rng(1).uniform(-3, 3, (len(batch), 2))
    delta = centre_of_mass(affine_batch(batch, 0, 1, shifts)) - centre_of_mass(batch)
    assert np.allclose(delta, shifts, atol=0.05)


def test_rotation_is_anticlockwise_about_the_centre(digits):
    turned = affine_batch(digits, 90, 1, (0, 0)).reshape(-1, 28, 28)
    expected = np.rot90(digits.reshape(-1, 28, 28), k=1, axes=(1, 2))
    assert np.allclose(turned, expected, atol=1e-5)


def test_scaling_spreads_the_ink():
    image = blob(13.5, 13.5, sigma=2.0)     # 13.5: the centre of the 28x28 pixel grid
    bigger = affine_batch(image, 0, 2, (0, 0))
    assert np.allclose(centre_of_mass(bigger), [[13.5, 13.5]], atol=0.01)
    assert bigger.sum() / image.sum() == pytest.approx(4, rel=0.05)  # area grows with scale^2


def test_batch_is_resampled_per_image(digits):
    """Chunking must not mix images up: one batch equals images done one by one."""
    rng = np.random.default_rng(2)
    angles, scales = rng.uniform(-30, 30, 45), rng.uniform(0.8, 1.2, 45)
    shifts = rng.uniform(-2, 2, (45, 2))
    together = affine_batch(digits, angles, scales, shifts)
    for i in (0, 19, 20, 21, 40, 44):
        alone = affine_batch(digits[i:i + 1], angles[i:i + 1], scales[i:i + 1], shifts[i:i + 1])
        assert np.array_equal(together[i:i + 1], alone)


@pytest.mark.parametrize("config", [AugmentConfig(), AugmentConfig(shift=3, rotation=20, scale=0.2, elastic=2)])
def test_augmented_digits_keep_shape_dtype_range_and_about_their_ink(digits, config):
    out = augment_batch(digits, config, np.random.default_rng(0))
    assert out.shape == digits.shape and out.dtype == digits.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not np.array_equal(out, digits)
    # Small distortions keep roughly the same amount of ink.
    assert np.allclose(out.sum(1), digits.sum(1), rtol=0.5)
    assert augment_batch(digits.astype(np.float64), config, 0).dtype == np.float64


def test_input_is_not_modified(digits):
    before = digits.copy()
    augment_batch(digits, AugmentConfig(elastic=1), np.random.default_rng(0))
    assert np.array_equal(digits, before)


def test_the_same_seed_repeats_the_distortions_and_another_seed_does_not(digits):
    config = AugmentConfig(elastic=1.5)
    a = augment_batch(digits, config, np.random.default_rng(7))
    b = augment_batch(digits, config, np.random.default_rng(7))
    c = augment_batch(digits, config, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_elastic_is_bounded_and_smooth():
    image = blob()
    config = AugmentConfig(shift=0, rotation=0, scale=0, elastic=1.0)
    out = augment_batch(np.repeat(image, 20, axis=0), config, np.random.default_rng(3))
    moved = np.abs(centre_of_mass(out) - 14)
    assert moved.max() <= 1.0 and moved.max() > 0.01
    # A smooth field leaves a smooth spot: no torn pixels far above the original peak.
    assert out.max() <= image.max() + 1e-6


def test_unscaled_pixels_keep_their_range(digits):
    raw = digits * 255
    out = augment_batch(raw, AugmentConfig(), np.random.default_rng(0))
    assert out.max() > 200 and out.max() <= raw.max()


def test_an_empty_batch_comes_back_empty_with_its_dtype():
    empty = np.zeros((0, 784), np.float32)
    assert augment_batch(empty, AugmentConfig(), 0).shape == (0, 784)
    for dtype in (np.float32, np.float64):
        for config in (AugmentConfig(), AugmentConfig(elastic=2)):
            out = augment_batch(np.zeros((0, 784), dtype), config, np.random.default_rng(0))
            assert out.shape == (0, 784) and out.dtype == dtype
        out = affine_batch(np.zeros((0, 784), dtype), 10, 1.1, (1, 1))
        assert out.shape == (0, 784) and out.dtype == dtype


@pytest.mark.parametrize("kwargs, says", [
    (dict(shift=-1), "shift must be a number >= 0, got -1"),
    (dict(rotation=float("nan")), "rotation must be a number >= 0, got nan"),
    (dict(scale=1.0), r"scale must be below 1 \(a fraction\), got 1.0"),
    (dict(elastic=100), "too strong: shift/elastic at most 28 px"),
])
def test_an_impossible_augmentation_is_refused_naming_the_setting(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        AugmentConfig(**kwargs)


def test_a_batch_of_the_wrong_shape_or_dtype_or_a_zero_scale_is_refused():
    with pytest.raises(ValueError, match=r"flattened images \(n, 784\), got shape \(3, 28, 28\)"):
        augment_batch(np.zeros((3, 28, 28), np.float32), AugmentConfig(), 0)
    with pytest.raises(ValueError, match="float images in \\[0, 1\\], got dtype uint8"):
        augment_batch(np.zeros((3, 784), np.uint8), AugmentConfig(), 0)
    for scale in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="scales must be positive and finite"):
            affine_batch(np.zeros((1, 784), np.float32), 0, scale, (0, 0))


