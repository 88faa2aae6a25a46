"""Reading an input image: decoding with orientation, colour profile, alpha and bit depth
preserved, and the checks that a file holds what it declares.

``load`` returns float pixels in [0, 1] plus what must travel to the output
(EXIF with the orientation reset, ICC profile, DPI) as a :class:`Picture`.

16-bit colour: Pillow holds 16-bit grey ("I;16") but no 16-bit RGB mode, so
it would silently keep only the high byte of each sample. batchsr reads such
PNG and TIFF files through Pillow's own decoders twice, once unpacking the
high bytes and once the low bytes of every sample (``_decode_deep``).
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
import struct
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from batchsr.config import DEFAULT_MAX_PIXELS
from batchsr.estimate import jpeg_quality
from batchsr.exif import carry_exif, parse_exif, read_exif, split_exif, transpose_method, transposed
from batchsr.formats import register_plugins, sniff
from batchsr.isolation import own_pixel_limit, warnings_into

# 16-bit colour layouts Pillow decodes to 8-bit RGB/RGBA, and the rawmode that
# unpacks the other byte of each sample ("N" is the machine's byte order).
_NATIVE = "L" if sys.byteorder == "little" else "B"


_OTHER_BYTE = {}


for _base in ("RGB", "RGBA"):
    for _order, _other in (("B", "L"), ("L", "B"), ("N", "B" if _NATIVE == "L" else "L")):
        _OTHER_BYTE[f"{_base};16{_order}"] = f"{_base};16{_other}"


# 16-bit grey+alpha PNG: 4 bytes a pixel, like 8-bit RGBA, so one decode with
# the plain "RGBA" unpacker yields (grey hi, grey lo, alpha hi, alpha lo).
_LA16 = "LA;16B"


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
    jpeg_quality: float | None = None  # estimate.jpeg_quality of a JPEG input, else None

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


# The creation date written into the sRGB profile's header (ICC.1 7.2.8: year, month, day, hours,
# minutes, seconds), fixed so that the same input gives the same output bytes on every run.
SRGB_PROFILE_DATE = (2026, 1, 1, 0, 0, 0)


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """The bytes of an sRGB ICC profile: littleCMS's built-in one, its creation date set to
    ``SRGB_PROFILE_DATE`` (littleCMS writes the time it was made; its profile ID stays 0)."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = struct.pack(">6H", *SRGB_PROFILE_DATE)
    return bytes(data)


def cmyk_to_rgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    """CMYK -> (RGB image, the ICC profile the RGB pixels are in).

    With an embedded profile the conversion goes through it to sRGB (relative
    colorimetric with black point compensation, as photo editors do) and the
    output is tagged sRGB: carrying the CMYK profile to RGB pixels would be
    wrong. Without one, Pillow's naive formula is all there is, and the
    report says so.
    """
    if icc:
        from PIL import ImageCms

        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            rgb = ImageCms.profileToProfile(
                im,
                src,
                dst,
                outputMode="RGB",
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
            )
            notes.append("CMYK converted to sRGB through its embedded ICC profile")
            return rgb, srgb_profile()
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            notes.append(
                f"CMYK ICC profile unusable ({str(exc).splitlines()[0] if str(exc) else 'invalid'}); "
                "converted to RGB without it"
            )
    else:
        notes.append("CMYK without an ICC profile converted to RGB by the plain formula")
    return im.convert("RGB"), None


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
    if mode == "CMYK":
        im, _ = cmyk_to_rgb(im, im.info.get("icc_profile"), notes)
        mode = "RGB"
    if mode in ("RGBX", "YCbCr", "LAB", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    if mode == "La":
        im, mode = im.convert("LA"), "LA"
    if mode == "RGBa":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise ImageError(f"unsupported image mode {mode}")
    a = np.asarray(im, dtype=np.float32)
    a /= 255.0  # in place: a big scan must not cost two float copies
    if a.ndim == 2:
        a = a[..., None]
    return a, 8


def _rawmodes(im: Image.Image) -> set[str]:
    out = set()
    for t in im.tile:
        args = t[3]
        out.add(args if isinstance(args, str) else args[0] if args else "")
    return out


def _deep_rawmodes(im: Image.Image) -> set[str] | None:
    """The rawmodes of a 16-bit colour image that Pillow would decode to 8 bits, else None.

    Raises ImageError for 16-bit colour layouts that cannot be read at full
    precision: writing them at 8 bits would silently lose what the archive kept.
    """
    if im.mode not in ("RGB", "RGBA"):
        return None
    raws = _rawmodes(im)
    if not any(";16" in r for r in raws):
        return None
    if raws <= set(_OTHER_BYTE) or raws == {_LA16}:
        return raws
    raise ImageError(
        f"16-bit layout {', '.join(sorted(raws))} of this {im.format} cannot be read at "
        "full precision; convert it to 16-bit RGB TIFF or PNG"
    )


def _retiled(path: Path, rawmode_for: Callable[[str], str]) -> Image.Image:
    """Open ``path`` again with each tile's rawmode replaced (same decoder, other unpacker)."""
    im = Image.open(path)
    tiles = []
    for t in im.tile:
        args = t[3]
        if isinstance(args, str):
            new_args = rawmode_for(args)
        else:
            new_args = (rawmode_for(args[0]), *args[1:])
        tiles.append(t._replace(args=new_args) if hasattr(t, "_replace") else (t[0], t[1], t[2], new_args))
    im.tile = tiles
    im.load()
    return im


def _decode_deep(path: Path, raws: set[str], high: Image.Image, method: Image.Transpose | None) -> np.ndarray:
    """Full-precision uint16 (H, W, C) pixels of a 16-bit colour file, upright.

    ``high`` is Pillow's normal (high-byte) decode of the same file, already
    loaded; every decode is turned by the same ``method`` (see :func:`transpose_method`).
    """
    if raws == {_LA16}:
        with _retiled(path, lambda r: "RGBA") as im:
            b = np.asarray(transposed(im, method)).astype(np.uint16)
        return np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    with _retiled(path, _OTHER_BYTE.__getitem__) as low:
        lo = np.asarray(transposed(low, method)).astype(np.uint16)
    hi = np.asarray(transposed(high, method)).astype(np.uint16)
    if hi.shape != lo.shape:
        raise ImageError("16-bit decode mismatch between the high and low bytes")
    return (hi << 8) | lo


# Beyond any scanner or printer; such a DPI is damage, and would overflow the output's
# resolution fields once multiplied by the scale.
MAX_DPI = 100_000


def _sane_dpi(dpi, notes: list[str]) -> tuple[float, float] | None:
    """The input's DPI if it is a plausible resolution, else None (with a note when one was given)."""
    if not dpi:
        return None
    try:
        x, y = float(dpi[0]), float(dpi[1])
    except (TypeError, ValueError, IndexError, OverflowError):
        notes.append("DPI unreadable: not carried over")
        return None
    if not x or not y:
        return None  # "no resolution", as Pillow reports an unset one
    if not (math.isfinite(x) and math.isfinite(y) and 0 < x <= MAX_DPI and 0 < y <= MAX_DPI):
        notes.append(f"DPI {x:.6g}x{y:.6g} is not a plausible resolution: not carried over")
        return None
    return x, y


# The most pixels a byte can hold in formats whose coding spends a floor of bits on
# every pixel; a header that declares more than file size x this is damaged or a bomb
# (a 632-byte JPEG declaring 13000x13000 decodes to 169 megapixels of grey in minutes).
# The ceilings and the most extreme real files (flat colour, measured with Pillow 13):
# - JPEG: Huffman coding spends >= 1 bit on each 8x8 block of a full-resolution
#   component (2 in a baseline scan), so <= 512 pixels a byte for one component and
#   <= 1024 for any sampling layout; a flat grey 8000x8000 at quality 1 with optimised
#   tables has 256 (RGB 4:2:0: 171). Arithmetic coding (rare, and Pillow cannot write
#   it) is not bounded; a blank arithmetic JPEG above 2048 pixels a byte is refused.
# - PNG: deflate expands 1 byte to at most 1032, and a 1-bit row is width/8 + 1
#   bytes, so <= 8256; flat 1-bit 30000x2000 at level 9: 5934.
# - GIF: an LZW code is <= 12 bits and stands for <= 4096 pixels, so <= 2731; flat
#   8000x8000: 1336.
# Other formats (TIFF's fax coding, WebP lossless, BMP's RLE) can hold far more, and
# only --max-pixels applies to them. Twice the ceiling, or more: no real file is refused.
MAX_PIXELS_PER_BYTE = {"JPEG": 2048, "MPO": 2048, "PNG": 16384, "GIF": 8192}


def _check_density(fmt: str, width: int, height: int, file_bytes: int) -> None:
    """Raise ImageError if a file of ``file_bytes`` cannot hold the ``width`` x ``height`` it declares."""
    ratio = MAX_PIXELS_PER_BYTE.get(fmt)
    if ratio and width * height > file_bytes * ratio:
        raise ImageError(
            f"{width}x{height} declared in a file of {file_bytes} bytes: more than a {fmt} can "
            f"hold (at most {ratio} pixels a byte); the file is corrupt or a decompression bomb"
        )


# libjpeg fills what the compressed data does not reach with flat grey (baseline)
# or leaves it at an earlier scan's coarser state (progressive), and Pillow
# decodes such a file without a word when it ends in an end marker: a cut file
# that a copy tool or "repair" closed, or any cut file once a caller sets
# LOAD_TRUNCATED_IMAGES. So the file is decoded a second time with filler bytes
# where its last scan's data ends: a complete scan ignores them (libjpeg skips
# bytes before a marker), one that ran short decodes them as pixels, and the two
# decodes differ from where the data ran out. That second decode is paid by
# progressive JPEGs (about the time of the first) and by baseline ones whose last
# pixel is the fill grey, the pixel that is always missing from a cut baseline scan.
_FILLER = bytes((i * 73 + 41) % 255 for i in range(256))  # never 0xFF: no marker in it


_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker other than a stuffed byte or a restart


def _jpeg_scan_end(data: bytes) -> int | None:
    """Where the entropy-coded data of the first image's last scan ends (at a marker or at the
    end of the data), by walking the marker segments; None if no scan was found."""
    pos, end, n = 2, None, len(data)
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return end  # not a marker where one must be: keep what was found
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1  # fill byte
        elif marker == 0xD9:
            return end
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 2  # no length field
        elif pos + 4 > n:
            return end
        else:
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            pos += 2 + length
            if marker == 0xDA:
                m = _SCAN_END.search(data, pos)
                end = pos = m.start() if m else n
    return end


def _check_jpeg_complete(path: Path, im: Image.Image, without_exif: bool) -> None:
    """Raise ImageError if the decoded JPEG ``im`` holds rows its compressed data did not reach
    (``without_exif``: ``im`` was opened without the file's EXIF, see :func:`_open`)."""
    if not (im.info.get("progressive") or im.info.get("progression")):
        corner = im.getpixel((im.width - 1, im.height - 1))
        if not all(v in (127, 128) for v in (corner if isinstance(corner, tuple) else (corner,))):
            return
    data = path.read_bytes()
    if without_exif:
        data = (split_exif(data) or (data,))[0]
    end = _jpeg_scan_end(data)
    if end is None:
        return
    probe = data[:end] + _FILLER + (data[end:] or b"\xff\xd9")
    try:
        with Image.open(io.BytesIO(probe)) as again:
            again.load()
            if again.size != im.size or again.mode != im.mode:
                return
            a, b = np.asarray(im), np.asarray(again)
    except Exception:
        return  # the probe is ours, not the file's: no verdict
    for r0 in range(0, a.shape[0], 256):  # in blocks of rows: no full-size temporary
        rows = np.flatnonzero((a[r0 : r0 + 256] != b[r0 : r0 + 256]).reshape(-1, a[0].size).any(axis=1))
        if rows.size:
            raise ImageError(
                f"corrupt or truncated JPEG data: the compressed data ends at about row {r0 + rows[0]} of {im.height}"
            )


def _open(path: Path, head: bytes, notes: list[str]) -> tuple[Image.Image, bytes | None]:
    """``Image.open(path)``, and the EXIF payload it had to be opened without, if any.

    Pillow parses a JPEG's EXIF while opening it (for its DPI), and some damage
    to it makes the whole file unreadable; such a file is opened again without
    its EXIF segments, which :func:`load` then parses on its own (and repairs).
    """
    try:
        return Image.open(path), None
    except Exception as exc:
        if head[:2] != b"\xff\xd8":
            raise
        split = split_exif(path.read_bytes())
        if split is None:
            raise
        try:
            im = Image.open(io.BytesIO(split[0]))
        except Exception:
            raise exc from None
        notes.append(f"Pillow cannot open this JPEG with its EXIF ({type(exc).__name__}): decoded without it")
        return im, split[1]


def declared_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file's header alone, whatever Pillow's own pixel limit, and
    without warnings; None if Pillow cannot read the header (:func:`load` says why)."""
    try:
        with own_pixel_limit(), warnings_into([]), Image.open(path) as im:
            return im.size
    except Exception:
        return None


def _decode(
    path: Path, im: Image.Image, exif_payload: bytes | None, max_pixels: int, file_bytes: int, notes: list[str]
) -> tuple[np.ndarray, int, str, bytes | None, bytes | None, tuple | None]:
    """:func:`load` once the file is open: the header checks, the decode, orientation and metadata."""
    w, h = im.size
    if w * h > max_pixels:
        raise ImageError(
            f"{w}x{h} is {w * h / 1e6:.0f} megapixels, over the limit of "
            f"{max_pixels / 1e6:.0f} (raise it with --max-pixels)"
        )
    fmt = im.format or "PNG"
    _check_density(fmt, w, h, file_bytes)
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"{fmt} has {frames} frames; only the first was upscaled")
    deep = _deep_rawmodes(im)
    im.load()
    if fmt in ("JPEG", "MPO"):
        _check_jpeg_complete(path, im, exif_payload is not None)
    icc = im.info.get("icc_profile")
    dpi = _sane_dpi(im.info.get("dpi"), notes)
    # The original's EXIF (a transposed copy loses a TIFF's tags), edited for
    # the output only once every decode has been turned.
    exif = read_exif(im, notes) if exif_payload is None else parse_exif(exif_payload, notes)
    method = transpose_method(exif, notes)
    if deep:
        pixels = _decode_deep(path, deep, im, method).astype(np.float32) / 65535.0
        bits = 16
    else:
        upright = transposed(im, method)
        if upright.mode == "CMYK":
            upright, icc = cmyk_to_rgb(upright, icc, notes)
        pixels, bits = to_array(upright, notes)
    exif_bytes = carry_exif(exif, notes)
    return pixels, bits, fmt, exif_bytes, icc, dpi


def load(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image file. Raises ImageError with a one-line reason for any bad input.

    EXIF orientation is applied once here and the tag reset to 1, so the
    output is upright in every viewer and is not rotated twice. The size is
    checked against ``max_pixels`` and against what the file's size can hold,
    from the header, before any pixel is decoded (decompression bombs); a JPEG
    whose compressed data stops before its last rows is an error. Damaged EXIF
    or DPI never costs the image: what cannot be used is dropped, with a note.
    Pillow's process-wide state (``Image.MAX_IMAGE_PIXELS``, the warnings
    filters) is left as the caller set it; Pillow's warnings about this file
    become its notes, whatever other threads do.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise ImageError("empty file (0 bytes)")
    if head[4:8] == b"ftyp":  # ISO media (HEIC, AVIF): only then pay pillow-heif's import (~10 ms)
        register_plugins()
    caught: list = []
    notes: list[str] = []
    try:
        with own_pixel_limit(), warnings_into(caught):
            im, exif_payload = _open(path, head, notes)
            with im:
                quality = jpeg_quality(im)  # from the file's own tables, before any transposed copy
                pixels, bits, fmt, exif_bytes, icc, dpi = _decode(path, im, exif_payload, max_pixels, size, notes)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(_unidentified(head)) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"corrupt or truncated image: {msg}") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError("image has no pixels")
    for warning in caught:
        if not isinstance(warning, Image.DecompressionBombWarning):
            text = " ".join(str(warning).split())
            if text and text not in notes:
                notes.append(text)
    return Picture(pixels, bits, fmt, exif_bytes, icc, dpi, notes, quality)


def _unidentified(head: bytes) -> str:
    kind = sniff(head)
    readable = kind in Image.OPEN or kind not in ("HEIF", "AVIF")
    if kind == "HEIF" and not readable:
        return "HEIC/HEIF needs the optional pillow-heif plugin: pip install 'batchsr[heic]'"
    if kind == "AVIF" and not readable:
        return "AVIF needs Pillow built with AVIF support (Pillow >= 11.3 wheels): pip install 'batchsr[avif]'"
    if kind:
        return f"corrupt {kind} file: Pillow cannot read its header"
    return "not an image Pillow can read (unknown format or corrupt header)"
