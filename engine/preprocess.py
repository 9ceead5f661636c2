"""Turn a drawing or a photo of a digit into an MNIST-like 28x28 image.

MNIST's own recipe: crop to the ink, scale the longer side to 20 px keeping
the aspect ratio (anti-aliased, so grey levels appear), place it in a 28x28
field and shift it so its centre of mass sits at the centre. A network trained
on MNIST misreads a digit drawn in a corner unless it goes through the same
steps, so `prepare_digit` does exactly that and keeps each step for display.

One step MNIST did not need: its digits were written with pens in proportion to the
digit, so after scaling to the 20 px box their strokes are 1-3 px wide. A canvas pen has
a fixed width (20 px on a 280 px canvas), so a small drawing scaled up comes out as a
blob (a small "3" read as 8). When the strokes would come out wider than any of MNIST's,
`prepare_digit` thins the ink (erodes it evenly, "thinned" step) until they come out at
MNIST's bold end, and when a digit is so small for its pen that its strokes have likely
run together, it says so (`warning`) while still reading it. A canvas also reports its pen's
paths: `prepare_drawing` draws a small digit again from them with a pen scaled to the digit
(`canvas_strokes`, `draw_strokes`), so it comes out as the same digit drawn large does; loops
the fixed pen had filled in are open again (benchmarks/small_drawings.py: 300 test digits drawn
40-90 px tall, 55% read right with the plain recipe, 78% thinned, 96% drawn again; 98% drawn large).
"""

import io
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from engine.errors import EngineError

SIDE = 28
BOX = 20                      # MNIST fits each digit into a 20x20 box
MAX_SIDE = 4096
MAX_PIXELS = 20_000_000
INK_THRESHOLD = 0.1           # fraction of the strongest ink that counts as ink
MIN_CONTRAST = 0.05           # below this the image is treated as blank
UNEVEN_BORDER = 0.06          # border brightness spread (10th-90th percentile) that means uneven light
UNEVEN_MIN_SIDE = 32          # smaller images are taken as evenly lit
BACKGROUND_SIDE = 96          # the paper's light is estimated on a copy this size
RESAMPLE = Image.Resampling.LANCZOS
# Stroke widths are in pixels of the 28x28 digit (`stroke_width`: the median width along the
# ink's skeleton). MNIST's own: median 2.0 px, quartiles 1.6-2.5, 90th percentile 2.9, 99th 4.1
# (the 1,000 test digits of data/mnist-sample.npz). Canvas drawings with the 20 px pen: 1.9 px
# when 180-220 px tall, 4.5 px at 80-90 px, 10 px at 40-50 px (benchmarks/small_drawings.py).
MNIST_STROKE = 3.0            # thinned strokes come out this wide: the bold side of MNIST's range,
                              # which read best (2.0 read 2 points worse, on held-out training digits)
THIN_ABOVE = 4.0              # thin only strokes wider than 99% of MNIST's
SMALL_ABOVE = 5.5             # wider than this, strokes have likely run together: warn (a digit
                              # under about 75 px tall with the 20 px pen, a quarter of the canvas)
WORK_SIDE = 8 * BOX           # strokes are measured and thinned on a copy this size (longer side)
STROKE_PERCENTILE = 50        # a digit's stroke width: this percentile of the widths along its skeleton
PEN_PERCENTILE = 10           # the pen's width (how deep to erode): the narrow end of those widths
SMALL_WARNING = ("This digit is small: draw it bigger, filling most of the box, "
                 "for a reliable reading.")


class ImageError(EngineError):
    """An image could not be read (not an image, damaged, too large, wrong shape)."""


@dataclass
class DigitPreparation:
    """The result of `prepare_digit`.

    digit: 28x28 float32 in [0, 1], ink high; None when nothing was found.
    steps: (title, 2-D image) pairs in order, for showing the pipeline; the
        full-size steps are uint8 (to keep memory low), the small ones float32.
    inverted: True when dark ink on a light background was inverted.
    reason: why `digit` is None ("" otherwise).
    warning: a friendly caution when a digit was prepared but may be misread (drawn so
        small for its pen that its strokes may have run together); "" otherwise.
    stroke: the ink's stroke width as found (`stroke_width`), in pixels of the 28x28 digit,
        before any thinning (MNIST's: median 2, 99% under 4.1); 0.0 when not measured.
    """

    digit: np.ndarray = None
    steps: list = field(default_factory=list)
    inverted: bool = False
    reason: str = ""
    warning: str = ""
    stroke: float = 0.0

    @property
    def is_blank(self):
        """True when no digit was found."""
        return self.digit is None


def prepare_digit(image, min_extent=0.0, thin=True):
    """Prepare a canvas drawing or photo for an MNIST network.

    `image` is a NumPy array (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA,
    uint8 or float in [0, 1], or the bytes of an image file (PNG, JPEG...).
    min_extent: marks whose longer side is below this fraction of the image's shorter side
    are too small to be a digit (a dot on a canvas would otherwise be read as one); 0 takes
    any size. thin: strokes that would come out wider than MNIST's widest (a small drawing
    with a thick pen) are thinned to MNIST's width first; False gives the plain MNIST recipe.
    Raises ImageError when the input is not a usable image.
    """
    grey = to_grey(image)
    steps = [("grey", _as_uint8(grey))]
    if grey.size == 0 or np.ptp(grey) < MIN_CONTRAST:
        return DigitPreparation(None, steps, False, _blank_reason(grey))

    inverted = _background_level(grey) > 0.5
    if inverted:  # dark ink on light paper: MNIST wants light ink on black
        grey = 1.0 - grey
        steps.append(("inverted", _as_uint8(grey)))

    background = _background(grey)
    ink = np.clip(grey - background, 0, None)
    if np.ndim(background):  # uneven light (a photo): its noise must not pass for specks of ink
        ink = np.asarray(Image.fromarray(_as_uint8(ink)).filter(ImageFilter.MedianFilter(3)), np.float32) / 255
    if ink.max() < MIN_CONTRAST:
        reason = "No ink found: the image has no marks that stand out from the background."
        return DigitPreparation(None, steps, inverted, reason)

    cropped = _crop_to_ink(ink)
    steps.append(("cropped", cropped))
    extent = max(cropped.shape) / min(grey.shape)
    if extent < min_extent:
        reason = (f"Too small to read: the marks span {math.floor(extent * 100)}% of the image; "
                  f"a digit needs at least {min_extent:.0%}.")
        return DigitPreparation(None, steps, inverted, reason)
    warning, stroke = "", 0.0
    if thin:
        thinned, stroke = _thin_strokes(cropped)
        if thinned is not None:
            cropped = thinned
            steps.append(("thinned", thinned))
        if stroke > SMALL_ABOVE:
            warning = SMALL_WARNING
    scaled = _scale_to_box(cropped, BOX)
    steps.append((f"scaled to {BOX} px", scaled))
    if scaled.max() <= 0:  # only possible for a speck that resampling wiped out
        reason = "No ink found: the marks are too faint or too small."
        return DigitPreparation(None, steps, inverted, reason, warning, stroke)
    digit = _centre_by_mass(scaled, SIDE)
    digit /= digit.max()
    steps.append((f"centred {SIDE}x{SIDE}", digit))
    return DigitPreparation(digit, steps, inverted, "", warning, stroke)


# ---------------------------------------------------------------- reading input

def to_grey(image):
    """Convert bytes or an array to a 2-D float32 grey image in [0, 1]."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = decode_image(bytes(image))
    try:
        array = np.asarray(image)
    except Exception as exc:  # ragged lists and other oddities
        raise ImageError(f"Cannot read this as an image array ({exc}).") from exc
    pixels = _check_array(array)
    if pixels.ndim == 2:
        return pixels
    channels = pixels.shape[2]
    if channels in (2, 4):
        pixels = _composite_alpha(pixels[..., :-1], pixels[..., -1])
    if pixels.shape[2] == 3:
        # ITU-R 601 luma, the same weights as Pillow's convert("L").
        return (pixels @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
    return pixels[..., 0]


def decode_image(data):
    """Decode image file bytes with Pillow into an array (L, LA, RGB or RGBA)."""
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as im:
            # Our own size limit below is stricter than Pillow's "decompression bomb" warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Image.open reads only the header: refuse huge images before decoding.
            _check_size(im.height, im.width)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = im.convert("RGBA")
            elif im.mode != "L":
                im = im.convert("RGB")
            return np.array(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own, much higher limit
        raise ImageError(f"The image is larger than the limit of {MAX_SIDE}x{MAX_SIDE} pixels: crop or shrink it first.") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("This file is not an image format Pillow can read: upload a PNG or JPEG.") from exc
    except Exception as exc:  # Pillow's decoders raise many types on bad input
        raise ImageError(
            f"This file is not a readable image ({type(exc).__name__}: {exc}). "
            "Upload a PNG or JPEG."
        ) from exc


def _check_size(height, width):
    if height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise ImageError(
            f"The image is {width}x{height} pixels, larger than the limit of "
            f"{MAX_SIDE}x{MAX_SIDE} and {MAX_PIXELS // 1_000_000} megapixels: "
            "crop or shrink it first."
        )


def _check_array(array):
    """Validate shape and dtype; return float32 pixels in [0, 1]."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(
            f"An image array must be (H, W), (H, W, 3) or (H, W, 4); got shape {array.shape}."
        )
    _check_size(array.shape[0], array.shape[1])
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageError("Integer image values must be in 0-255.")
        return array.astype(np.float32) / 255
    if array.dtype.kind == "f":
        if array.size and not np.isfinite(array).all():
            raise ImageError("The image contains NaN or infinite values.")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise ImageError("Float image values must be in [0, 1] (use uint8 for 0-255).")
        return array.astype(np.float32)
    raise ImageError(f"Image arrays must be uint8 or float in [0, 1], not {array.dtype}.")


def _composite_alpha(colour, alpha):
    """Flatten a transparent image onto a background that contrasts with its ink.

    A canvas with an opaque background has constant alpha: then alpha carries
    no information and the colour is used as is. Otherwise the image is
    composited over black, unless its opaque parts are dark (dark ink on a
    transparent background), in which case over white.
    """
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if alpha.size == 0 or np.ptp(alpha) == 0:
        return colour
    opaque = alpha > 0.5
    dark_ink = opaque.any() and colour[opaque].mean() < 0.5
    background = 1.0 if dark_ink else 0.0
    a = alpha[..., None]
    return colour * a + background * (1 - a)


def _as_uint8(grey):
    return (np.clip(grey, 0, 1) * 255).round().astype(np.uint8)


def _blank_reason(grey):
    if grey.size == 0:
        return "The image is empty (0 pixels)."
    if grey.size == 1:
        return "The image is a single pixel: there is no digit to read."
    if grey.mean() < 0.5:
        return "The canvas is empty: draw a digit."
    return "The image is blank (a single light colour): there is no digit to read."


# ---------------------------------------------------------------- MNIST recipe

def _border(grey):
    """The outermost pixels, where the background usually is (all of a tiny image)."""
    if min(grey.shape) < 3:
        return grey.ravel()
    return np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])


def _background_level(grey):
    """Median brightness of the border."""
    return float(np.median(_border(grey)))


def _background(grey):
    """The background under each pixel (ink is light by now): the border's level where that is
    even (a canvas, a clean scan); on a photo with uneven light, a smooth map of the paper, so
    the darker side of a sheet does not count as ink."""
    border = _border(grey)
    low, high = np.percentile(border, [10, 90])
    if min(grey.shape) < UNEVEN_MIN_SIDE or high - low < UNEVEN_BORDER:
        return float(np.median(border))
    # Work on a small copy (the light changes slowly): an opening (min then max filter) wider
    # than any stroke removes the ink and keeps the paper; a blur smooths the filters' blocks.
    h, w = grey.shape
    scale = BACKGROUND_SIDE / max(h, w)
    small = Image.fromarray(_as_uint8(grey)).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                    Image.Resampling.BOX)
    size = max(3, (min(small.size) // 3) | 1)  # odd, about a third of the shorter side
    paper = small.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size))
    paper = paper.filter(ImageFilter.GaussianBlur(size / 2)).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(paper, dtype=np.float32) / 255


def _crop_to_ink(ink):
    """Crop to the bounding box of the ink; faint specks below the threshold go."""
    ink = np.where(ink > INK_THRESHOLD * ink.max(), ink, 0).astype(np.float32)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _scale_to_box(image, box):
    """Resize so the longer side is `box` px, keeping the aspect ratio."""
    h, w = image.shape
    factor = box / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))  # Pillow: (w, h)
    resized = Image.fromarray(np.ascontiguousarray(image, np.float32)).resize(size, RESAMPLE)
    # Lanczos overshoots a little around sharp edges; ink cannot be negative.
    return np.clip(np.asarray(resized, dtype=np.float32), 0, None)


def _centre_by_mass(image, side):
    """Place `image` in a side x side field with its centre of mass at (side/2, side/2).

    The shift is an integer number of pixels, limited so no ink leaves the field.
    """
    h, w = image.shape
    ys, xs = np.indices(image.shape)
    mass = image.sum()
    cy, cx = (ys * image).sum() / mass, (xs * image).sum() / mass
    top = int(np.clip(round(side / 2 - cy), 0, side - h))
    left = int(np.clip(round(side / 2 - cx), 0, side - w))
    out = np.zeros((side, side), np.float32)
    out[top:top + h, left:left + w] = image
    return out


# ---------------------------------------------------------------- stroke width

def stroke_width(image):
    """The typical stroke width of the ink in `image` (2-D, ink high), in the image's own
    pixels; 0.0 for no ink.

    Measured on a copy of the ink enlarged or reduced to WORK_SIDE (so a 28x28 digit is measured
    as finely as a canvas), where the ink is at least half its peak: the ink is thinned to its
    skeleton, and at each skeleton pixel the distance to the nearest background pixel is half
    the stroke's width there plus half a pixel; the median over the skeleton is taken. Where
    strokes ran together into a blob the skeleton runs through the blob, so this grows.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or image.size == 0 or not image.max() > 0:
        return 0.0
    cropped = _crop_to_ink(image)
    measured = _measure_strokes(cropped)
    if measured is None:
        return 0.0
    _, widths = measured
    return float(np.percentile(widths, STROKE_PERCENTILE)) * max(cropped.shape) / WORK_SIDE


def _measure_strokes(cropped):
    """(ink mask of a WORK_SIDE copy, stroke widths at its skeleton's pixels in its pixels)
    for ink cropped to its bounding box, or None when there is nothing to measure."""
    h, w = cropped.shape
    factor = WORK_SIDE / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    work = np.asarray(Image.fromarray(np.ascontiguousarray(cropped, np.float32)).resize(size, RESAMPLE),
                      np.float32)
    peak = float(work.max())
    if not peak > 0:
        return None
    mask = work >= 0.5 * peak
    skeleton = _skeleton(mask)
    points = np.argwhere(skeleton)
    if len(points) == 0:  # Zhang-Suen can erase a 2x2 speck
        return None
    distances = _distance_to_background(mask, points)
    # Spurs (skeleton twigs into bumps and corners of the outline) and the tips of strokes run
    # out to the edge, where the distances fall to nothing: trim every loose end by about half
    # a stroke before measuring. Loops have no loose ends and keep their full length.
    trimmed = _trim_loose_ends(skeleton, round(float(np.median(distances))))
    if trimmed.sum() >= max(3, len(points) // 4):
        keep = trimmed[points[:, 0], points[:, 1]]
        distances = distances[keep]
    return mask, np.maximum(2 * distances - 1, 1.0)


def _trim_loose_ends(skeleton, rounds):
    """The skeleton with `rounds` pixels taken off each loose end (one at a time)."""
    s = np.pad(skeleton, 1)
    for _ in range(rounds):
        centre = s[1:-1, 1:-1]
        neighbours = sum(s[1 + dy:s.shape[0] - 1 + dy, 1 + dx:s.shape[1] - 1 + dx].astype(np.uint8)
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        ends = centre & (neighbours <= 1)
        if not ends.any():
            break
        centre[ends] = False
    return s[1:-1, 1:-1]


def _thin_strokes(cropped):
    """(thinned ink or None, stroke width) for ink cropped to its bounding box.

    The stroke width is `stroke_width`'s, in pixels of the 20 px box the ink will be scaled to
    (as in the 28x28 digit). Above THIN_ABOVE the ink is eroded (each edge moved inwards by the
    same distance, anti-aliased) until the pen's strokes would come out MNIST_STROKE wide once
    scaled; otherwise it is left as it is (None). Erosion keeps every part of the pen's path (a
    disc of the pen's width around each point of it was inked) and widens any hole that
    survived the thick pen, so it loses nothing a thinner pen would have shown. The depth is
    set by the pen's width, the narrow end of the widths (PEN_PERCENTILE), so strokes that are
    only one pen wide are not eroded away.
    """
    measured = _measure_strokes(cropped)
    if measured is None:
        return None, 0.0
    mask, widths = measured
    ys, xs = np.nonzero(mask)
    span = max(ys.max() - ys.min(), xs.max() - xs.min()) + 1
    stroke = float(np.percentile(widths, STROKE_PERCENTILE)) * BOX / span
    if stroke <= THIN_ABOVE:
        return None, stroke
    # Moving the edges in by `depth` leaves the pen's strokes pen - 2 depth wide over a span of
    # span - 2 depth; scaled to BOX that must be MNIST_STROKE.
    pen = float(np.percentile(widths, PEN_PERCENTILE))
    depth = (pen * BOX - MNIST_STROKE * span) / (2 * (BOX - MNIST_STROKE))
    if depth <= 0:
        return None, stroke
    inside = _distance_to_background(mask, np.stack([ys, xs], axis=1)) - 0.5  # to the ink's edge
    thinned = np.zeros(mask.shape, np.float32)
    thinned[ys, xs] = np.clip(inside - depth + 0.5, 0, 1)
    if not thinned.max() > 0:
        return None, stroke
    return _crop_to_ink(thinned) * cropped.max(), stroke


def _skeleton(mask):
    """Zhang-Suen thinning of a boolean image to 1-pixel-wide lines with the same topology."""
    m = np.pad(np.asarray(mask, np.uint8), 1)
    centre = m[1:-1, 1:-1]  # a view: deletions write through to m
    while True:
        changed = False
        for first in (True, False):
            p2, p3, p4, p5 = m[:-2, 1:-1], m[:-2, 2:], m[1:-1, 2:], m[2:, 2:]
            p6, p7, p8, p9 = m[2:, 1:-1], m[2:, :-2], m[1:-1, :-2], m[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(p.astype(np.uint8) for p in ring[:8])
            rises = sum(((a == 0) & (b == 1)).astype(np.uint8) for a, b in zip(ring[:8], ring[1:]))
            if first:
                side = ((p2 & p4 & p6) == 0) & ((p4 & p6 & p8) == 0)
            else:
                side = ((p2 & p4 & p8) == 0) & ((p2 & p6 & p8) == 0)
            delete = (centre == 1) & (neighbours >= 2) & (neighbours <= 6) & (rises == 1) & side
            if delete.any():
                centre[delete] = 0
                changed = True
        if not changed:
            return centre.astype(bool)


def _distance_to_background(mask, points, chunk=128):
    """Euclidean distance from each (row, col) point to the nearest background pixel
    (outside the image counts as background)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1]
    near_ink = np.zeros_like(padded)
    near_ink[1:-1, 1:-1] = inner
    near_ink[:-2, 1:-1] |= inner
    near_ink[2:, 1:-1] |= inner
    near_ink[1:-1, :-2] |= inner
    near_ink[1:-1, 2:] |= inner
    edge = (np.argwhere(near_ink & ~padded) - 1).astype(np.float32)  # background pixels touching ink
    points = np.asarray(points, np.float32)
    out = np.empty(len(points), np.float32)
    for start in range(0, len(points), chunk):
        p = points[start:start + chunk]
        d2 = (p[:, :1] - edge[None, :, 0]) ** 2 + (p[:, 1:] - edge[None, :, 1]) ** 2
        out[start:start + chunk] = np.sqrt(d2.min(axis=1))
    return out


# ---------------------------------------------------------------- drawings as strokes

SUPERSAMPLE = 4               # strokes are drawn 4x larger, then reduced: anti-aliased edges
REDRAWN_STROKE = 2.5          # a drawing drawn again comes out with strokes this wide at 28x28
CURVE_STEPS = 8               # points per quadratic curve of a canvas path


def canvas_strokes(canvas_json):
    """The pen's paths of a canvas drawing, from the fabric.js JSON that streamlit-drawable-canvas
    returns (`json_data`): a list of (n, 2) float arrays of (x, y) canvas points, its curves
    sampled. Objects that are not pen paths, or carry no path, are skipped ([] if none)."""
    strokes = []
    for obj in (canvas_json or {}).get("objects") or []:
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), list):
            continue
        points, here = [], None
        for command in obj["path"]:
            try:
                op, values = command[0], [float(v) for v in command[1:]]
            except (TypeError, ValueError, IndexError):
                continue
            if op in ("M", "L") and len(values) >= 2:
                here = values[-2:]
                points.append(here)
            elif op == "Q" and len(values) >= 4 and here is not None:
                (cx, cy), (ex, ey) = values[:2], values[2:4]
                for t in np.linspace(0, 1, CURVE_STEPS + 1)[1:]:  # the quadratic Bezier from `here`
                    points.append([(1 - t) ** 2 * here[0] + 2 * (1 - t) * t * cx + t * t * ex,
                                   (1 - t) ** 2 * here[1] + 2 * (1 - t) * t * cy + t * t * ey])
                here = [ex, ey]
        if points:
            strokes.append(np.asarray(points, dtype=np.float64))
    return strokes


def draw_strokes(strokes, pen, size=(280, 280)):
    """White strokes on black, `pen` px wide with round caps and joins, anti-aliased: an (h, w)
    float32 image in [0, 1] (`size` is (width, height), as the canvas's)."""
    from PIL import ImageDraw
    width, height = size
    image = Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    pencil = ImageDraw.Draw(image)
    r = pen * SUPERSAMPLE / 2
    for stroke in strokes:
        xy = [tuple(p) for p in np.asarray(stroke, dtype=np.float64) * SUPERSAMPLE]
        if len(xy) > 1:
            pencil.line(xy, fill=255, width=max(1, round(pen * SUPERSAMPLE)), joint="curve")
        for x, y in (xy[0], xy[-1]) if len(xy) > 1 else xy:  # round ends (and a dot for a tap)
            pencil.ellipse((x - r, y - r, x + r, y + r), fill=255)
    return np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32) / 255


def pen_for(strokes, pen):
    """The pen that gives a drawing MNIST's stroke width once its ink is scaled to the 20 px box
    (pen * BOX / (span + pen) = REDRAWN_STROKE), never wider than the pen it was drawn with."""
    points = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in strokes])
    span = float(np.ptp(points, axis=0).max())
    return min(pen, REDRAWN_STROKE * span / (BOX - REDRAWN_STROKE))


def prepare_drawing(image, strokes, pen, min_extent=0.0):
    """Prepare a canvas drawing for an MNIST network, from its pixels and its pen's paths.

    The pen is as wide however small the digit: a digit drawn small would come out of MNIST's
    recipe with strokes run together. Where the paths are known, the drawing is drawn again with
    a pen scaled to it (`pen_for`), so it comes out as the same digit drawn large does; then
    `prepare_digit`. Without paths (an image only), `prepare_digit` alone (it thins what it can).
    Too-small marks (min_extent) are judged on the drawing as the user made it.
    """
    grey = to_grey(image)
    if not strokes:
        return prepare_digit(grey, min_extent)
    thinner = pen_for(strokes, pen)
    if thinner >= 0.9 * pen:  # drawn large enough for its pen: as it is
        return prepare_digit(grey, min_extent)
    as_drawn = prepare_digit(grey, min_extent)
    if as_drawn.is_blank:  # blank, or too small: said about what the user drew
        return as_drawn
    height, width = grey.shape
    redrawn = draw_strokes(strokes, thinner, (width, height))
    result = prepare_digit(redrawn, 0.0, thin=False)
    result.steps[:1] = [("as drawn", _as_uint8(grey)), (f"drawn again, pen {thinner:.0f} px", _as_uint8(redrawn))]
    result.stroke = as_drawn.stroke
    return result
