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
from engine.preprocess import (MNIST_STROKE, SMALL_WARNING, THIN_ABOVE, DigitPreparation, ImageError,
                               prepare_digit, stroke_width)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = next((p for p in (ROOT / "data/mnist-sample.npz", ROOT.parent / "shared/data/mnist-sample.npz")
               if p.is_file()), ROOT / "data/mnist-sample.npz")


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

def test_a_drawing_in_a_corner_is_centred_and_scaled_to_20_px():
    result = prepare_digit(corner_stroke())
    check_digit(result)
    cy, cx = centre_of_mass(result.digit)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1
    assert max(ink_box(result.digit)) == 20
    assert not result.inverted
    assert [title for title, _ in result.steps] == ["grey", "cropped", "scaled to 20 px", "centred 28x28"]
    assert all(image.ndim == 2 for _, image in result.steps)


def test_a_tall_or_a_wide_stroke_keeps_its_aspect_ratio():
    tall = canvas()
    tall[200:270, 240:250, :3] = 255       # 70 x 10 px stroke, bottom-right corner
    height, width = ink_box(prepare_digit(tall).digit)
    assert height == 20 and width <= 5

    wide = canvas()
    wide[5:12, 0:140, :3] = 255
    height, width = ink_box(prepare_digit(wide).digit)
    assert width == 20 and height <= 3


def test_a_photo_of_dark_ink_on_light_paper_is_inverted():
    drawing = prepare_digit(corner_stroke())
    photo = 255 - corner_stroke()[..., :3]          # black ink on white paper, RGB
    result = prepare_digit(photo)
    check_digit(result)
    assert result.inverted
    assert "inverted" in [title for title, _ in result.steps]
    assert np.abs(result.digit - drawing.digit).max() < 0.02


def test_a_noisy_jpeg_photo_reads_like_the_drawing():
    rng = np.random.default_rng(0)
    photo = (230 - corner_stroke()[..., :3].astype(int) * 0.7 + rng.normal(0, 4, (280, 280, 3)))
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    result = prepare_digit(encode(photo, "JPEG"))
    assert result.inverted
    reference = prepare_digit(corner_stroke()).digit
    assert np.corrcoef(result.digit.ravel(), reference.ravel())[0, 1] > 0.95


def test_a_png_of_a_drawing_gives_the_same_digit_as_its_pixels():
    image = corner_stroke()
    assert np.array_equal(prepare_digit(encode(image)).digit, prepare_digit(image).digit)


@pytest.mark.parametrize("ink_value", [255, 0])
def test_strokes_on_a_transparent_background_read_like_the_drawing(ink_value):
    # Strokes on a transparent background: white ink or black ink both work.
    image = np.zeros((280, 280, 4), np.uint8)
    image[..., :3] = 255 - ink_value
    mask = corner_stroke()[..., 0] > 0
    image[mask, :3] = ink_value
    image[mask, 3] = 255
    result = prepare_digit(image)
    reference = prepare_digit(corner_stroke()).digit
    assert np.abs(result.digit - reference).max() < 0.02


def test_grey_uint8_float_and_one_channel_images_give_the_same_digit():
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
def test_a_blank_image_gives_no_digit_and_says_why(image, words):
    result = prepare_digit(image)
    assert result.digit is None and result.is_blank
    assert words in result.reason


def test_a_blank_png_gives_no_digit_and_says_it_is_blank():
    result = prepare_digit(encode(np.full((40, 40), 255, np.uint8)))
    assert result.digit is None and result.is_blank
    assert "blank" in result.reason
    assert result.reason == prepare_digit(np.full((40, 40), 255, np.uint8)).reason   # as the same pixels


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, encode(corner_stroke())[:200]])
def test_bytes_that_are_no_image_are_refused_asking_for_png_or_jpeg(data):
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


def test_a_huge_array_is_refused_as_larger_than_the_limit():
    with pytest.raises(ImageError, match="larger than the limit"):
        prepare_digit(np.zeros((4097, 3), np.uint8))


@pytest.mark.parametrize("image, says", [
    (np.zeros((5, 5, 5), np.uint8), r"\(H, W\), \(H, W, 3\) or \(H, W, 4\); got shape \(5, 5, 5\)"),
    (np.zeros((2, 5, 5, 3), np.uint8), r"got shape \(2, 5, 5, 3\)"),
    (np.zeros(10, np.uint8), r"got shape \(10,\)"),
    (np.full((5, 5), 2.0), r"Float image values must be in \[0, 1\]"),
    (np.full((5, 5), np.nan), "NaN or infinite"),
    (np.full((5, 5), 300, np.int32), "Integer image values must be in 0-255"),
    (np.array([["a", "b"]]), "must be uint8 or float in"),
    (np.zeros((5, 5), complex), "not complex128"),
    ([[1, 2], [3]], "Cannot read this as an image array"),
])
def test_an_array_that_is_no_image_is_refused_saying_why(image, says):
    with pytest.raises(ImageError, match=says):
        prepare_digit(image)


def test_a_bad_image_raises_an_image_error_that_engine_error_catches():
    assert issubclass(ImageError, EngineError)
    # `except EngineError` (as the CLI catches) catches each of these, and each is an ImageError (as the pages catch)
    for bad in (b"hello", np.full((5, 5), np.nan), png_header(5000, 10)):
        with pytest.raises(EngineError) as info:
            prepare_digit(bad)
        assert type(info.value) is ImageError and str(info.value)


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
def test_random_bytes_give_a_digit_or_a_clean_refusal(data):
    prepare_or_refuse(data)


@FUZZ
@given(st.sampled_from([encode(corner_stroke()[::4, ::4]), encode(255 - corner_stroke()[::4, ::4, :3], "JPEG")]),
       st.data())
def test_damaged_image_files_give_a_digit_or_a_clean_refusal(data, draw):
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
def test_random_arrays_give_a_digit_or_a_clean_refusal(image):
    prepare_or_refuse(image)


@FUZZ
@given(hnp.arrays(np.uint8, st.tuples(st.integers(2, 60), st.integers(2, 60)),
                  elements=st.sampled_from([0, 0, 0, 40, 128, 255])))
def test_sparse_random_drawings_give_a_digit_or_a_clean_refusal(image):
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


# ---------------------------------------------------------------- thick pens on small drawings

def pen_drawing(path, size, pen=20, origin=(10, 10), side=280, supersample=4):
    """A canvas with `path` (points, any units) drawn as the canvas draws: a round-capped,
    round-joined white pen `pen` px wide, anti-aliased, the ink's longer side `size` px."""
    from PIL import ImageDraw
    points = np.asarray(path, float)
    points = (points - points.min(0)) / np.ptp(points, axis=0).max() * (size - pen) + pen / 2 + origin
    image = Image.new("L", (side * supersample,) * 2, 0)
    draw = ImageDraw.Draw(image)
    xy = [tuple(p * supersample) for p in points]
    draw.line(xy, fill=255, width=round(pen * supersample))
    r = pen * supersample / 2
    for x, y in xy:  # round caps and joins
        draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    out = canvas(side)
    out[..., :3] = np.asarray(image.reduce(supersample))[..., None]
    return out


SEVEN = [(0, 0), (10, 0), (4, 16)]                      # (x, y) points of a "7"
FOUR = [(8, 16), (8, 0), (0, 11), (10, 11)]             # an open "4"
_t = np.linspace(0, 2 * np.pi, 48)
ZERO = np.stack([5 + 3.5 * np.cos(_t), 8 + 8 * np.sin(_t)], axis=1)


def titles(result):
    return [title for title, _ in result.steps]


def test_stroke_width_measures_the_pen():
    for pen in (6, 12, 24):
        image = canvas()[..., 0].copy()
        image[40:240, 140 - pen // 2:140 - pen // 2 + pen] = 255  # a bar `pen` px wide, 200 tall
        assert stroke_width(image) == pytest.approx(pen, abs=1.0)
    assert stroke_width(np.zeros((20, 20))) == 0.0


def test_a_small_digit_drawn_with_the_thick_pen_is_thinned_to_mnist_width():
    for path in (SEVEN, FOUR, ZERO):
        drawing = pen_drawing(path, size=70)
        plain, result = prepare_digit(drawing, thin=False), prepare_digit(drawing)
        check_digit(result)
        # As drawn, the strokes would be twice or more MNIST's width once scaled...
        assert result.stroke > THIN_ABOVE and stroke_width(plain.digit) > THIN_ABOVE
        # ...thinned, they land in MNIST's range (median 2 px, 99% under 4.1; the crossing of
        # the "4" stays a little wider).
        assert titles(result) == ["grey", "cropped", "thinned", "scaled to 20 px", "centred 28x28"]
        assert 2.0 <= stroke_width(result.digit) <= 4.5
        assert stroke_width(result.digit) < 0.7 * stroke_width(plain.digit)
        thinned, cropped = dict(result.steps)["thinned"], dict(result.steps)["cropped"]
        assert thinned.dtype == np.float32 and thinned.max() == pytest.approx(cropped.max())
        assert max(ink_box(result.digit)) == 20   # still fills MNIST's box


def test_thinning_opens_the_hole_the_thick_pen_nearly_closed():
    drawing = pen_drawing(ZERO, size=80)
    plain, result = prepare_digit(drawing, thin=False), prepare_digit(drawing)
    centre = (slice(11, 17), slice(12, 16))
    assert plain.digit[centre].mean() > 0.6          # a blob: the hole is a slit
    assert result.digit[centre].mean() < 0.5 * plain.digit[centre].mean()


def test_a_normal_size_drawing_is_left_alone():
    for path in (SEVEN, FOUR, ZERO):
        drawing = pen_drawing(path, size=200, origin=(40, 30))
        result = prepare_digit(drawing)
        assert "thinned" not in titles(result) and result.warning == ""
        assert 1.0 < result.stroke < THIN_ABOVE
        assert np.array_equal(result.digit, prepare_digit(drawing, thin=False).digit)


def test_a_small_digit_with_a_thin_pen_is_left_alone():
    # Small is fine when the pen is in proportion: it is the pen's width that matters.
    drawing = pen_drawing(SEVEN, size=60, pen=6)
    result = prepare_digit(drawing)
    assert "thinned" not in titles(result) and result.warning == ""
    assert np.array_equal(result.digit, prepare_digit(drawing, thin=False).digit)


def test_a_tiny_digit_is_read_with_a_warning():
    for path in (SEVEN, FOUR, ZERO):
        result = prepare_digit(pen_drawing(path, size=50), min_extent=0.15)
        check_digit(result)                              # still read: a caution, not a refusal
        assert result.warning == SMALL_WARNING and "bigger" in result.warning
    for size in (120, 200):
        assert prepare_digit(pen_drawing(SEVEN, size=size)).warning == ""


def test_refusals_carry_no_warning():
    dot = canvas()
    dot[130:150, 130:150, :3] = 255
    result = prepare_digit(dot, min_extent=0.15)
    assert result.digit is None and "Too small" in result.reason and result.warning == ""


def test_thinning_is_off_on_request():
    drawing = pen_drawing(SEVEN, size=60)
    result = prepare_digit(drawing, thin=False)
    assert "thinned" not in titles(result) and result.warning == "" and result.stroke == 0.0


def test_photos_with_normal_strokes_are_unaffected():
    from PIL import ImageDraw
    rng = np.random.default_rng(0)
    shaded = np.linspace(235, 200, 400)[None, :] + np.linspace(0, -15, 300)[:, None]
    shaded = Image.fromarray(np.clip(shaded + rng.normal(0, 3, (300, 400)), 0, 255).astype(np.uint8))
    ImageDraw.Draw(shaded).line([(200, 75), (200, 225)], fill=40, width=12)
    noisy = np.clip(230 - corner_stroke()[..., :3].astype(int) * 0.7 + rng.normal(0, 4, (280, 280, 3)), 0, 255)
    photos = [np.asarray(shaded), encode(noisy.astype(np.uint8), "JPEG"), 255 - corner_stroke()[..., :3]]
    for photo in photos:
        result = prepare_digit(photo)
        assert result.inverted and "thinned" not in titles(result) and result.warning == ""
        assert np.array_equal(result.digit, prepare_digit(photo, thin=False).digit)


def test_real_mnist_digits_are_left_alone_but_the_boldest():
    if not SAMPLE.is_file():
        pytest.skip(f"{SAMPLE} not present")
    with np.load(SAMPLE, allow_pickle=False) as d:
        digits = d["x_test"][:100]
    widths = np.array([stroke_width(digit) for digit in digits])
    assert 1.5 <= np.median(widths) <= 2.5           # MNIST's typical stroke
    assert MNIST_STROKE < THIN_ABOVE
    assert (widths > THIN_ABOVE).sum() <= 3          # about 1% of MNIST is bolder than that
    for digit, width in zip(digits[:30], widths):
        big = np.asarray(Image.fromarray(digit).resize((168, 168), Image.Resampling.BILINEAR))
        result = prepare_digit(big)
        assert ("thinned" in titles(result)) == (result.stroke > THIN_ABOVE)
        assert result.warning == "" or width > 5


# ---------------------------------------------------------------- drawings as strokes

def fabric_path(points):
    """A fabric.js canvas object (as streamlit-drawable-canvas returns it) through `points`."""
    path = [["M", *points[0]]] + [["Q", *a, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2] for a, b in zip(points, points[1:])]
    return {"type": "Path", "path": path + [["L", *points[-1]]], "strokeWidth": 20}


SEVEN = [(0.0, 0.0), (1.0, 0.0), (0.45, 1.0)]  # a "7", in units of its height


def seven(size, left=20.0, top=20.0):
    return [(left + x * size, top + y * size) for x, y in SEVEN]


def test_canvas_strokes_reads_the_pen_paths_and_skips_the_rest():
    from engine.preprocess import canvas_strokes
    drawing = {"objects": [fabric_path(seven(100)), {"type": "rect"}, {"type": "Path", "path": "M 0 0"},
                           {"type": "Path", "path": [["Q", 1, 2]], "note": "a curve with no start"}, 7]}
    strokes = canvas_strokes(drawing)
    assert len(strokes) == 1 and strokes[0].shape[1] == 2
    np.testing.assert_allclose(strokes[0][0], (20, 20)) and np.testing.assert_allclose(strokes[0][-1], (65, 120))
    assert strokes[0][:, 0].max() <= 120.0 + 1e-9  # curves stay inside their control points
    for nothing in (None, {}, {"objects": None}, {"objects": [{}]}, {"objects": [{"path": [[None, "x"]]}]}):
        assert canvas_strokes(nothing) == []


def test_a_digit_drawn_small_comes_out_as_the_same_digit_drawn_large():
    from engine.preprocess import canvas_strokes, draw_strokes, prepare_drawing, stroke_width
    large_strokes = canvas_strokes({"objects": [fabric_path(seven(200))]})
    small_strokes = canvas_strokes({"objects": [fabric_path(seven(45, left=200, top=200))]})  # in a corner
    large = prepare_drawing(draw_strokes(large_strokes, 20), large_strokes, 20, min_extent=0.15)
    small = prepare_drawing(draw_strokes(small_strokes, 20), small_strokes, 20, min_extent=0.15)
    from_pixels = prepare_digit(draw_strokes(small_strokes, 20), min_extent=0.15)
    assert [t for t, _ in small.steps][:2] == ["as drawn", "drawn again, pen 6 px"]  # 2.5/17 of its 45 px
    assert 1.5 <= stroke_width(small.digit) <= 3.0 < stroke_width(from_pixels.digit)  # MNIST's range, not the pen's
    assert np.abs(small.digit - large.digit).mean() < np.abs(from_pixels.digit - large.digit).mean()
    assert not small.warning


def test_a_large_drawing_and_a_dot_are_prepared_as_before():
    from engine.preprocess import canvas_strokes, draw_strokes, prepare_drawing
    strokes = canvas_strokes({"objects": [fabric_path(seven(200))]})
    image = draw_strokes(strokes, 20)
    np.testing.assert_array_equal(prepare_drawing(image, strokes, 20, 0.15).digit, prepare_digit(image, 0.15).digit)
    dot = canvas_strokes({"objects": [fabric_path([(140.0, 140.0), (141.0, 141.0)])]})
    refused = prepare_drawing(draw_strokes(dot, 20), dot, 20, min_extent=0.15)
    assert refused.digit is None and refused.reason.startswith("Too small to read")
    assert prepare_drawing(np.zeros((280, 280)), [], 20).reason  # an empty canvas says so, as before
