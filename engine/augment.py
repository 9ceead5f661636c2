"""On-the-fly data augmentation for batches of flattened 28x28 images.

Each image gets its own small random rotation, scaling and shift (and,
optionally, an elastic distortion), so the network sees a slightly different
digit every epoch. Everything is vectorised over the batch: the transform is
an inverse mapping (for every output pixel, where in the input to look) and
the lookups are one bilinear gather for the whole batch, with no Python loop
over images.
"""

from dataclasses import dataclass

import numpy as np

from engine.errors import ConfigError

SIDE = 28
PAD = 2                          # zero border, so lookups outside the image read 0
PADDED = SIDE + 2 * PAD
CENTRE = (SIDE - 1) / 2          # 13.5: rotate and scale about the middle of the field
ELASTIC_GRID = 4                 # coarse grid of the elastic displacement field

# Output pixel coordinates relative to the centre, flattened row by row.
_ys, _xs = np.mgrid[0:SIDE, 0:SIDE]
GRID_X = (_xs.ravel() - CENTRE).astype(np.float32)
GRID_Y = (_ys.ravel() - CENTRE).astype(np.float32)


@dataclass
class AugmentConfig:
    """How strong the random distortions are (0 switches one off).

    shift: largest translation in pixels; rotation: largest angle in degrees;
    scale: largest relative size change (0.1 = 90%..110%);
    elastic: largest elastic displacement in pixels.
    """

    shift: float = 2.0
    rotation: float = 10.0
    scale: float = 0.1
    elastic: float = 0.0

    def __post_init__(self):
        for name in ("shift", "rotation", "scale", "elastic"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ConfigError(f"Augmentation {name} must be a number >= 0, got {value!r}.")
        if self.scale >= 1:
            raise ConfigError(f"Augmentation scale must be below 1 (a fraction), got {self.scale!r}.")
        if self.shift > SIDE or self.elastic > SIDE or self.rotation > 180:
            raise ConfigError("Augmentation too strong: shift/elastic at most 28 px, rotation at most 180 degrees.")

    @property
    def is_identity(self):
        """True when the configuration changes nothing."""
        return self.shift == self.rotation == self.scale == self.elastic == 0


def augment_batch(images, config, rng):
    """Return a randomly distorted copy of a batch of images (n, 784) in [0, 1].

    `rng` is a numpy Generator (or a seed). The dtype is kept.
    """
    images = _check_batch(images)
    rng = np.random.default_rng(rng)
    n = len(images)
    if n == 0 or config.is_identity:
        return images.copy()
    angles = rng.uniform(-config.rotation, config.rotation, n)
    scales = 1 + rng.uniform(-config.scale, config.scale, n)
    shifts = rng.uniform(-config.shift, config.shift, (n, 2))
    displacement = None
    if config.elastic > 0:
        displacement = elastic_field(n, config.elastic, rng)
    return _warp(images, angles, scales, shifts, displacement)


def affine_batch(images, angles_deg, scales, shifts_xy):
    """Rotate, scale and shift each image of a batch (n, 784) deterministically.

    angles_deg: anticlockwise on screen, about the image centre; scales: > 1
    enlarges; shifts_xy: (n, 2) pixels, +x right and +y down. Scalars are
    broadcast to the batch. Zero angle, unit scale and zero shift is exactly
    the identity.
    """
    images = _check_batch(images)
    n = len(images)
    angles = np.broadcast_to(np.asarray(angles_deg, np.float64), (n,))
    scales = np.broadcast_to(np.asarray(scales, np.float64), (n,))
    shifts = np.broadcast_to(np.asarray(shifts_xy, np.float64), (n, 2))
    return _warp(images, angles, scales, shifts)


def elastic_field(n, alpha, rng):
    """A smooth random displacement field (n, 2, 784) of at most `alpha` px.

    Random displacements on a coarse 4x4 grid, bilinearly upsampled to 28x28:
    neighbouring pixels move together, so strokes bend instead of tearing.
    """
    coarse = rng.uniform(-alpha, alpha, (n, 2, ELASTIC_GRID, ELASTIC_GRID))
    up = _upsample_matrix(ELASTIC_GRID, SIDE)
    field = np.einsum("ij,nkjl,ml->nkim", up, coarse, up)
    return field.reshape(n, 2, SIDE * SIDE).astype(np.float32)


# ---------------------------------------------------------------- internals

def _check_batch(images):
    images = np.asarray(images)
    if images.ndim != 2 or images.shape[1] != SIDE * SIDE:
        raise ValueError(f"Expected a batch of flattened images (n, 784), got shape {images.shape}.")
    if images.dtype.kind != "f":
        raise ValueError(f"Expected float images in [0, 1], got dtype {images.dtype}.")
    return images


def _upsample_matrix(coarse, fine):
    """Linear interpolation weights (fine, coarse) from a coarse grid spanning the image."""
    position = np.arange(fine) * (coarse - 1) / (fine - 1)
    return np.maximum(0, 1 - np.abs(position[:, None] - np.arange(coarse)[None, :]))


def _warp(images, angles_deg, scales, shifts, displacement=None):
    """Resample each image at its inversely mapped coordinates (bilinear)."""
    src_x, src_y = _source_coordinates(angles_deg, scales, shifts)
    if displacement is not None:
        src_x += displacement[:, 0]
        src_y += displacement[:, 1]
    out = _bilinear(images, src_x, src_y)
    np.clip(out, 0, 1, out=out)
    return out


def _source_coordinates(angles_deg, scales, shifts):
    """For every output pixel, the input position it comes from: two (n, 784) arrays.

    Forward map: out = R(angle) * scale * (in - centre) + centre + shift.
    We invert it, because each output pixel must know where to look.
    """
    theta = np.radians(angles_deg).astype(np.float32)[:, None]
    cos, sin = np.cos(theta), np.sin(theta)
    inv_scale = (1 / np.asarray(scales, np.float64)).astype(np.float32)[:, None]
    u = GRID_X - shifts[:, :1].astype(np.float32)
    v = GRID_Y - shifts[:, 1:].astype(np.float32)
    # Inverse rotation; y points down, so this turns anticlockwise on screen.
    src_x = (cos * u - sin * v) * inv_scale + CENTRE
    src_y = (sin * u + cos * v) * inv_scale + CENTRE
    return src_x, src_y


def _bilinear(images, src_x, src_y):
    """Bilinear lookup of (n, 784) source positions in each image, zero outside."""
    n = len(images)
    padded = np.zeros((n, PADDED, PADDED), images.dtype)
    padded[:, PAD:-PAD, PAD:-PAD] = images.reshape(n, SIDE, SIDE)
    flat = padded.ravel()
    # Clamp into the zero border: any position outside the image reads zeros.
    px = np.clip(src_x + PAD, 0, PADDED - 2)
    py = np.clip(src_y + PAD, 0, PADDED - 2)
    x0 = px.astype(np.intp)  # floor, since px >= 0
    y0 = py.astype(np.intp)
    fx = (px - x0).astype(images.dtype)
    fy = (py - y0).astype(images.dtype)
    index = y0 * PADDED + x0 + (np.arange(n) * PADDED * PADDED)[:, None]
    top = flat[index] * (1 - fx) + flat[index + 1] * fx
    bottom = flat[index + PADDED] * (1 - fx) + flat[index + PADDED + 1] * fx
    return top * (1 - fy) + bottom * fy
