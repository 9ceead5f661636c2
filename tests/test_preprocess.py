"""Tests for engine.preprocess: canvas drawings and photos become MNIST-like digits."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from engine.errors import EngineError
from engine.preprocess import DigitPreparation, ImageError, prepare_digit

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared/data/mnist-sample.npz"


def canvas(size=280):
    """An opaque black RGBA canvas, as streamlit-drawable-canvas returns it."""
    image = np.zeros((size, size, 4), np.uint8)
    image[..., 3] = 255
    return image


def corner_stroke():
    """A thick '7'-like stroke in the top-left corner of a canvas."""
    image = canvas()
    image[10:30, 10:110, :3] = 255        # bar
    image[10:130, 90:110, :3] = 255       # down stroke
    return image


def centre_of_mass(digit):
    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    return (ys * digit).sum() / mass, (xs * digit).sum() / mass


def ink_box(digit, level=0.05):
    rows = np.flatnonzero((digit > level).any(axis=1))
    cols = np.flatnonzero((digit > level).any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def encode(array, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt)
    return buf.getvalue()


def check_digit(result):
    assert isinstance(result, DigitPreparation)
    digit = result.digit
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert digit.min() >= 0 and digit.max() == pytest.approx(1.0)
    assert result.reason == "" and not result.is_blank


# ---------------------------------------------------------------- the MNIST recipe

def test_corner_drawing_is_centred():
    result = prepare_digit(corner_stroke())
    check_digit(result)
    cy, cx = centre_of_mass(result.digit)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert max(ink_box(result.digit)) == 20
    assert not result.inverted
    assert [title for title, _ in result.steps] == ["grey", "cropped", "scaled to 20 px", "centred 28x28"]
    assert all(image.ndim == 2 for _, image in result.steps)


def test_aspect_ratio_is_kept():
    tall = canvas()
    tall[200:270, 240:250, :3] = 255       # 70 x 10 px stroke, bottom-right corner
    height, width = ink_box(prepare_digit(tall).digit)
    assert height == 20 and width <= 5

    wide = canvas()
    wide[5:12, 0:140, :3] = 255
    height, width = ink_box(prepare_digit(wide).digit)
    assert width == 20 and height <= 3


def test_photo_dark_on_light_is_inverted():
    drawing = prepare_digit(corner_stroke())
    photo = 255 - corner_stroke()[..., :3]          # black ink on white paper, RGB
    result = prepare_digit(photo)
    check_digit(result)
    assert result.inverted
    assert "inverted" in [title for title, _ in result.steps]
    assert np.abs(result.digit - drawing.digit).max() < 0.02


def test_noisy_jpeg_photo():
    rng = np.random.default_rng(0)
    photo = (230 - corner_stroke()[..., :3].astype(int) * 0.7 + rng.normal(0, 4, (280, 280, 3)))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    result = prepare_digit(encode(photo, "JPEG"))
    assert result.inverted
    reference = prepare_digit(corner_stroke()).digit
    assert np.corrcoef(result.digit.ravel(), reference.ravel())[0, 1] > 0.95


def test_png_bytes_equal_array():
    image = corner_stroke()
    assert np.array_equal(prepare_digit(encode(image)).digit, prepare_digit(image).digit)


@pytest.mark.parametrize("ink_value", [255, 0])
def test_transparent_background(ink_value):
    # Strokes on a transparent background: white ink or black ink both work.
    image = np.zeros((280, 280, 4), np.uint8)
    image[..., :3] = 255 - ink_value
    mask = corner_stroke()[..., 0] > 0
    image[mask, :3] = ink_value
    image[mask, 3] = 255
    result = prepare_digit(image)
    reference = prepare_digit(corner_stroke()).digit
    assert np.abs(result.digit - reference).max() < 0.02


def test_grey_float_and_uint8_agree():
    grey = corner_stroke()[..., 0]
    a = prepare_digit(grey).digit
    b = prepare_digit(grey.astype(np.float32) / 255).digit
    c = prepare_digit(grey[..., None]).digit
    assert np.allclose(a, b, atol=1e-5) and np.array_equal(a, c)


def test_real_mnist_digit_survives_the_round_trip():
    """A real digit blown up into a canvas corner comes back close to itself."""
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    with np.load(SAMPLE, allow_pickle=False) as d:
        digits = d["x_test"][:20]
    for digit in digits:
        big = np.asarray(Image.fromarray(digit).resize((168, 168), Image.Resampling.BILINEAR))
        image = canvas(400)
        image[200:368, 10:178, :3] = big[..., None]
        result = prepare_digit(image).digit
        # Centring by mass is to the nearest pixel, in MNIST and here alike.
        assert best_shifted_correlation(result, digit) > 0.9


def best_shifted_correlation(a, b):
    """Highest correlation of a and b over shifts of at most one pixel."""
    return max(np.corrcoef(np.roll(a, (dy, dx), axis=(0, 1)).ravel(), b.ravel())[0, 1]
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


# ---------------------------------------------------------------- blanks and errors

@pytest.mark.parametrize("image, words", [
    (canvas(), "draw a digit"),
    (np.zeros((280, 280), np.uint8), "draw a digit"),
    (np.full((280, 280, 3), 255, np.uint8), "blank"),
    (np.ones((50, 60), np.float32), "blank"),
    (np.zeros((1, 1), np.uint8), "single pixel"),
    (np.zeros((0, 0), np.uint8), "empty"),
    (np.zeros((280, 280, 4), np.uint8), "draw a digit"),     # fully transparent
])
def test_blank_images(image, words):
    result = prepare_digit(image)
    assert result.digit is None and result.is_blank
    assert words in result.reason


def test_blank_png_bytes():
    assert prepare_digit(encode(np.full((40, 40), 255, np.uint8))).digit is None


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, encode(corner_stroke())[:200]])
def test_non_image_bytes(data):
    with pytest.raises(ImageError, match="PNG or JPEG"):
        prepare_digit(data)


def png_header(width, height):
    """A PNG that declares a size but holds no pixel data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (5000, 10), (4097, 1), (1, 4097)])
def test_huge_images_refused_before_decoding(width, height):
    with pytest.raises(ImageError, match="larger than the limit"):
        prepare_digit(png_header(width, height))


def test_huge_array_refused():
    with pytest.raises(ImageError, match="larger than the limit"):
        prepare_digit(np.zeros((4097, 3), np.uint8))


@pytest.mark.parametrize("image", [
    np.zeros((5, 5, 5), np.uint8),
    np.zeros((2, 5, 5, 3), np.uint8),
    np.zeros(10, np.uint8),
    np.full((5, 5), 2.0),
    np.full((5, 5), np.nan),
    np.full((5, 5), 300, np.int32),
    np.array([["a", "b"]]),
    np.zeros((5, 5), complex),
    [[1, 2], [3]],
])
def test_bad_arrays(image):
    with pytest.raises(ImageError):
        prepare_digit(image)


def test_image_error_is_an_engine_error():
    assert issubclass(ImageError, EngineError)


# ---------------------------------------------------------------- fuzzing

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def prepare_or_refuse(image):
    try:
        result = prepare_digit(image)
    except ImageError:
        return
    if result.digit is None:
        assert result.reason
    else:
        assert result.digit.shape == (28, 28) and np.isfinite(result.digit).all()
        assert result.digit.min() >= 0 and result.digit.max() == pytest.approx(1.0)


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_bytes(data):
    prepare_or_refuse(data)


@FUZZ
@given(st.sampled_from([encode(corner_stroke()[::4, ::4]), encode(255 - corner_stroke()[::4, ::4, :3], "JPEG")]),
       st.data())
def test_fuzz_damaged_files(data, draw):
    data = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 6))):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    prepare_or_refuse(bytes(data[: draw.draw(st.integers(1, len(data)))]))


shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40),
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.sampled_from([1, 2, 3, 4, 5])),
    hnp.array_shapes(min_dims=0, max_dims=4, max_side=4),
)
dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.bool_])


@FUZZ
@given(hnp.arrays(dtypes, shapes))
def test_fuzz_arrays(image):
    prepare_or_refuse(image)


@FUZZ
@given(hnp.arrays(np.uint8, st.tuples(st.integers(2, 60), st.integers(2, 60)),
                  elements=st.sampled_from([0, 0, 0, 40, 128, 255])))
def test_fuzz_sparse_drawings(image):
    prepare_or_refuse(image)


def test_marks_too_small_for_a_digit_are_refused_only_when_asked():
    canvas = np.zeros((280, 280), np.float32)
    canvas[130:150, 130:150] = 1.0  # a dot, as a click on the canvas leaves it
    small = prepare_digit(canvas, min_extent=0.15)
    assert small.digit is None and "Too small" in small.reason and "7%" in small.reason
    assert prepare_digit(canvas).digit is not None  # photos and the CLI take any size
    canvas[60:220, 136:144] = 1.0   # now a tall stroke through it: a "1"
    assert prepare_digit(canvas, min_extent=0.15).digit is not None


def test_a_photo_under_uneven_light_is_cropped_to_the_ink():
    # Paper shading from 235 to 185 across and down the page, with sensor noise: the darker
    # side of the sheet must not count as ink (it used to widen the crop to the whole page).
    from PIL import ImageDraw
    rng = np.random.default_rng(0)
    h, w = 300, 400
    paper = np.linspace(235, 200, w)[None, :] + np.linspace(0, -15, h)[:, None]
    image = Image.fromarray(np.clip(paper + rng.normal(0, 3, (h, w)), 0, 255).astype(np.uint8))
    ImageDraw.Draw(image).line([(200, 75), (200, 225)], fill=40, width=12)  # a "1", 150 px tall
    result = prepare_digit(np.asarray(image))
    cropped = dict(result.steps)["cropped"]
    assert result.inverted and result.digit is not None
    assert 140 <= cropped.shape[0] <= 165 and cropped.shape[1] <= 20, cropped.shape
    height, width = ink_box(result.digit)
    assert height >= 18 and width <= 6  # a tall thin stroke, as drawn
