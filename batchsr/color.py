"""The single definition of luma (Y) and chroma used by batchsr.

Everything that measures, trains or upscales goes through these functions, so
training, evaluation and the runtime can never disagree about what "Y" is.

Colour space: ITU-R BT.601, *studio range*, as in the super-resolution
literature's evaluation protocol:

    Y  =  16 +  65.481 R + 128.553 G +  24.966 B
    Cb = 128 -  37.797 R -  74.203 G + 112.000 B
    Cr = 128 + 112.000 R -  93.786 G -  18.214 B

with R, G, B in [0, 1] and Y, Cb, Cr in 8-bit units. The model works on
``Y / 255`` (so its input lies in [16/255, 235/255]); this module's float
helpers use that same unit-scaled convention for all three channels.
"""

from __future__ import annotations

import numpy as np

from batchsr.resample import resize_rows

_FORWARD = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=np.float64,
)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float64)
# The inverse is derived, not typed in, so both directions stay consistent.
_INVERSE = np.linalg.inv(_FORWARD)


def rgb_to_plane(rgb: np.ndarray, channel: int) -> np.ndarray:
    """One channel (0 Y, 1 Cb, 2 Cr) of RGB in [0, 1] (..., 3) as YCbCr scaled by 1/255, float32
    (Y in [16/255, 235/255] for in-gamut input; Cb and Cr centre on 128/255)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    out = rgb @ (_FORWARD[channel] / 255.0).astype(np.float32)
    out += np.float32(_OFFSET[channel] / 255.0)
    return out


def planes_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_plane`: three YCbCr/255 (H, W) planes -> RGB in [0, 1]
    (H, W, 3), not clipped (callers quantise with :func:`to_uint`), without stacking them first.

    Three fused plane sums instead of a (H*W, 3) x (3, 3) matmul: about 3x
    faster on wide bands. The one implementation of the inverse transform.
    """
    m = (_INVERSE * 255.0).astype(np.float32)
    o = (_OFFSET / 255.0).astype(np.float32)
    y, cb, cr = y - o[0], cb - o[1], cr - o[2]
    out = np.empty(y.shape + (3,), np.float32)
    for c in range(3):
        plane = m[c, 0] * y
        plane += m[c, 1] * cb
        plane += m[c, 2] * cr
        out[..., c] = plane
    return out


def _fused_constants():
    """Constants of the 8-bit merge (:func:`merge_u8`), derived from ``_INVERSE``.

    An 8-bit output value is ``v_c = A[c] . (Y, Cb, Cr) + K[c]`` (planes in
    the /255 units above, ``+ 0.5`` so that truncation rounds). All three
    channels weigh Y alike, and R's Cb and B's Cr terms are below 1/1000 of
    a level over the whole chroma range (zero but for the rounding of the
    published coefficients), so they are dropped; with
    ``yk = s Y + cY``, ``CR = bR Cr + cR`` and ``CB = aB Cb + cB`` (the
    chroma planes are scaled at low resolution, before the resize, which is
    linear with weights summing to one):

        R = yk + CR,   B = yk + CB,   G = yk + gB CB + gR CR

    where cY, cR, cB solve the three constant terms.
    """
    a = _INVERSE * 255.0 * 255.0
    k = -(a @ (_OFFSET / 255.0)) + 0.5
    if not (np.allclose(a[:, 0], a[0, 0], rtol=1e-12) and abs(a[0, 1]) < 1e-3 and abs(a[2, 2]) < 1e-3):
        raise AssertionError("the fused merge assumes BT.601's inverse structure")
    s, b_r, a_b = a[0, 0], a[0, 2], a[2, 1]
    g_b, g_r = a[1, 1] / a_b, a[1, 2] / b_r
    c_y = (k[1] - g_b * k[2] - g_r * k[0]) / (1.0 - g_b - g_r)
    return {
        name: np.float32(v)
        for name, v in dict(s=s, cy=c_y, br=b_r, cr=k[0] - c_y, ab=a_b, cb=k[2] - c_y, gb=g_b, gr=g_r).items()
    }


_FUSED = _fused_constants()


def chroma_for_merge_u8(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (CB, CR) planes :func:`merge_u8` takes, from RGB in [0, 1] (H, W, 3), float32.

    Affine functions of Cb and Cr, so their bicubic upscale is the affine
    function of the upscaled Cb and Cr.
    """
    f = _FUSED
    cb = rgb_to_plane(rgb, 1)
    cb *= f["ab"]
    cb += f["cb"]
    cr = rgb_to_plane(rgb, 2)
    cr *= f["br"]
    cr += f["cr"]
    return cb, cr


def merge_u8(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, out: np.ndarray) -> None:
    """Y/255 (H, W) and upscaled :func:`chroma_for_merge_u8` planes -> 8-bit RGB into ``out`` (H, W, 3).

    The same values as ``to_uint(clip(planes_to_rgb(y, Cb, Cr)), 8)`` up to
    float rounding and ties (half rounds up here): at most one level apart,
    rarely. The three channels are summed straight into one interleaved float
    buffer, clipped in one pass and cast in one copy: a third of the time of
    clipping each channel into its strided place, and far fewer passes than
    the float path, which is why 8-bit outputs, by far the common case, take it.
    """
    f = _FUSED
    rgb = np.empty(y.shape + (3,), np.float32)
    yk = np.multiply(y, f["s"], dtype=np.float32)
    yk += f["cy"]
    np.add(yk, cr, out=rgb[..., 0])
    np.add(yk, cb, out=rgb[..., 2])
    g = np.multiply(cb, f["gb"], dtype=np.float32)
    g += yk
    np.multiply(cr, f["gr"], out=yk)
    np.add(g, yk, out=rgb[..., 1])
    np.clip(rgb, 0, 255, out=rgb)
    np.copyto(out, rgb, casting="unsafe")  # truncation after +0.5: rounding


def unit_to_u8(x: np.ndarray, out: np.ndarray, scale: float = 255.0, offset: float = 0.0) -> None:
    """``round(clip(x * scale + offset))`` into the uint8 ``out``; ties round up, like :func:`merge_u8`."""
    t = np.multiply(x, np.float32(scale), dtype=np.float32)
    t += np.float32(offset + 0.5)
    np.clip(t, 0, 255, out=out, casting="unsafe")


def y_to_gray_u8(y: np.ndarray, out: np.ndarray) -> None:
    """:func:`y_to_gray` quantised to 8 bits into ``out``."""
    unit_to_u8(y, out, 255.0 * 255.0 / 219.0, -16.0 * 255.0 / 219.0)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """Luma only, RGB in [0, 1] (..., 3) -> Y/255 (...), float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    w = (_FORWARD[0] / 255.0).astype(np.float32)
    return rgb @ w + np.float32(16.0 / 255.0)


def gray_to_y(gray: np.ndarray) -> np.ndarray:
    """A grey level in [0, 1] -> Y/255, i.e. rgb_to_y of (g, g, g)."""
    return np.asarray(gray, dtype=np.float32) * np.float32(219.0 / 255.0) + np.float32(16.0 / 255.0)


def y_to_gray(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gray_to_y` (not clipped)."""
    return (np.asarray(y, dtype=np.float32) - np.float32(16.0 / 255.0)) * np.float32(255.0 / 219.0)


def y_metric(rgb_u8: np.ndarray) -> np.ndarray:
    """Y in 8-bit units [16, 235] (float64) of an 8-bit RGB (H, W, 3) or grey (H, W) image.

    This is the quantity PSNR and SSIM are computed on (evaluation protocol).
    """
    a = np.asarray(rgb_u8, dtype=np.float64) / 255.0
    if a.ndim == 2:
        return 16.0 + 219.0 * a
    return 16.0 + a @ _FORWARD[0]


def cbcr_metric(rgb_u8: np.ndarray) -> np.ndarray:
    """Cb and Cr in 8-bit units [16, 240] (float64, (..., 2)) of an 8-bit RGB image:
    the chroma counterpart of :func:`y_metric`."""
    a = np.asarray(rgb_u8, dtype=np.float64) / 255.0
    return _OFFSET[1:] + a @ _FORWARD[1:].T


def to_uint(x: np.ndarray, bits: int = 8) -> np.ndarray:
    """Float in [0, 1] -> rounded, clipped unsigned integers of ``bits`` (8 or 16)."""
    peak = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    if isinstance(x, np.ndarray) and x.dtype == np.uint8 and bits == 8:
        return x  # already 8-bit (upscale_bands(bits=8)): travels as is
    t = np.multiply(x, np.float32(peak), dtype=np.float32)  # one temporary, then in place
    np.rint(t, out=t)
    np.clip(t, 0, peak, out=t)
    return t.astype(dtype)


def resize_plane_rows(plane: np.ndarray, width: int, row0: int, row1: int, scale: int) -> np.ndarray:
    """Output rows for LR rows ``row0:row1`` of the x``scale`` bicubic resize of a float
    (H, W) plane to ``width`` columns: the same rows as the whole resize's."""

    return resize_rows(plane, width, plane.shape[0] * scale, row0 * scale, row1 * scale)
