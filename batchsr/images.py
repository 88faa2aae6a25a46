"""Image files in and out: decoding with orientation, colour profile, alpha and
bit depth preserved, and atomic writes.

``load`` returns float pixels in [0, 1] plus what must travel to the output
(EXIF with the orientation reset, ICC profile, DPI). ``save_atomic`` writes a
temporary file beside the destination and renames it, so no final path ever
holds a partial image.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from batchsr.config import DEFAULT_MAX_PIXELS

ORIENTATION = 0x0112

# Pillow format -> (format to write, file suffix when the format changes)
WRITABLE = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WEBP", "BMP": "BMP"}
SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}
LOSSY = {"JPEG", "WEBP"}


class ImageError(Exception):
    """An input that cannot be used; the message is one line, fit for a report."""


@dataclass
class Picture:
    """Decoded pixels, float32 (H, W, C) in [0, 1]: C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA."""

    pixels: np.ndarray
    bits: int  # 8 or 16: the precision to write back
    format: str  # Pillow's name of the input format
    exif: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


def to_array(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, int]:
    """A Pillow image in any common mode -> (float32 (H, W, C) in [0, 1], bits)."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        notes.append("palette image converted to " + im.mode)
        mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im).astype(np.float32) / 65535.0
        return a[..., None], 16
    if mode == "I":
        a = np.asarray(im).astype(np.float32)
        # 16-bit greyscale PNG/TIFF decode to "I" in some Pillow versions.
        return np.clip(a / 65535.0, 0.0, 1.0)[..., None], 16
    if mode in ("RGBX", "YCbCr", "LAB", "HSV", "CMYK"):
        if mode == "CMYK":
            notes.append("CMYK converted to RGB")
        im, mode = im.convert("RGB"), "RGB"
    if mode == "La":
        im, mode = im.convert("LA"), "LA"
    if mode == "RGBa":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"unsupported image mode {mode}")
    a = np.asarray(im, dtype=np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    return a, 8


def load(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image file. Raises ImageError with a one-line reason for any bad input.

    EXIF orientation is applied once here and the tag reset to 1, so the
    output is upright in every viewer and is not rotated twice.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror}") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, before decoding
            try:
                with Image.open(path) as im:
                    w, h = im.size
                    if w * h > max_pixels:
                        raise ImageError(f"{w}x{h} is {w * h / 1e6:.0f} megapixels, over the limit of "
                                         f"{max_pixels / 1e6:.0f} (raise it with --max-pixels)")
                    fmt = im.format or "PNG"
                    notes: list[str] = []
                    if getattr(im, "n_frames", 1) > 1:
                        notes.append(f"{fmt} has {im.n_frames} frames; only the first was upscaled")
                    im.load()
                    icc = im.info.get("icc_profile")
                    dpi = im.info.get("dpi")
                    upright = ImageOps.exif_transpose(im)
                    exif = upright.getexif()
                    exif_bytes = None
                    if len(exif):
                        if ORIENTATION in exif:
                            exif[ORIENTATION] = 1
                        exif_bytes = exif.tobytes()
                    pixels, bits = to_array(upright, notes)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can read (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"corrupt or truncated image: {msg}") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError("image has no pixels")
    dpi_t = (float(dpi[0]), float(dpi[1])) if dpi else None
    return Picture(pixels, bits, fmt, exif_bytes, icc, dpi_t, notes)


def output_format(input_format: str, requested: str = "keep") -> str:
    """Pillow format to write for an input format and a --format choice."""
    if requested != "keep":
        return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP",
                "tiff": "TIFF", "tif": "TIFF", "bmp": "BMP"}[requested.lower()]
    return WRITABLE.get(input_format, "PNG")


def to_pillow(pixels: np.ndarray, bits: int, fmt: str) -> Image.Image:
    """Float (H, W, C) in [0, 1] -> a Pillow image the format can hold."""
    from batchsr.color import to_uint

    c = pixels.shape[2]
    if bits == 16 and c == 1 and fmt in ("PNG", "TIFF"):
        return Image.fromarray(to_uint(pixels[..., 0], 16))  # mode I;16
    u8 = to_uint(pixels, 8)
    if fmt == "JPEG" and c in (2, 4):
        u8 = u8[..., :-1]  # JPEG has no alpha; only reachable with --format jpg
        c -= 1
    return Image.fromarray(u8[..., 0] if c == 1 else u8)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_atomic(image: Image.Image, dst: Path, fmt: str, *, exif: bytes | None = None,
                icc: bytes | None = None, dpi: tuple[float, float] | None = None,
                quality: int = 95, png_level: int = 6) -> None:
    """Write ``image`` to ``dst`` via a temporary file in the same folder and a rename.

    A crash at any moment leaves either the previous file or the complete new
    one at ``dst``, never a partial file; the temporary file is removed on error.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    kw: dict = {}
    if exif and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        kw["exif"] = exif
    if icc and fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        kw["icc_profile"] = icc
    if dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        kw["dpi"] = dpi
    if fmt in LOSSY:
        kw["quality"] = quality
    if fmt == "JPEG":
        kw["subsampling"] = 0  # 4:4:4: do not blur the chroma we just upscaled
    if fmt == "PNG":
        kw["compress_level"] = png_level
    if fmt == "TIFF":
        kw["compression"] = "tiff_lzw"
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".batchsr-tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=fmt, **kw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal permissions
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
