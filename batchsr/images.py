"""Image files in and out: decoding with orientation, colour profile, alpha and
bit depth preserved, and atomic writes.

``load`` returns float pixels in [0, 1] plus what must travel to the output
(EXIF with the orientation reset, ICC profile, DPI). ``save_bands`` writes a
temporary file beside the destination and renames it, so no final path ever
holds a partial image.

16-bit colour: Pillow holds 16-bit grey ("I;16") but no 16-bit RGB mode, so
it would silently keep only the high byte of each sample. batchsr reads such
PNG and TIFF files through Pillow's own decoders twice, once unpacking the
high bytes and once the low bytes of every sample (``_decode_deep``), and
writes them with small numpy writers (``_write_png16``, ``_write_tiff``):
no extra dependency, full precision.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import sys
import tempfile
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from batchsr.config import DEFAULT_MAX_PIXELS

try:
    # ISA-L's deflate writes the same zlib streams as zlib, several times
    # faster: on B100 outputs (Average-filtered) its level 2 took 1.6 ms an
    # image against zlib-ng's 5.2 ms and stock zlib's 11 ms at level 2, for
    # files 1-2 % larger. It has levels 0-3 only; stock zlib
    # does 0 (stored) and 4-9, and stays the fallback where the wheel is missing.
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - isal is a dependency; this is a safety net
    _isal = None


def _fast(level: int) -> bool:
    return _isal is not None and 1 <= level <= 3


def deflate_compressobj(level: int):
    """A streaming zlib-format compressor for a --compression level (0 stored ... 9 smallest)."""
    return _isal.compressobj(level) if _fast(level) else zlib.compressobj(level)


def deflate_compress(data: bytes, level: int) -> bytes:
    """``data`` as one zlib-format stream at a --compression level."""
    return _isal.compress(data, level) if _fast(level) else zlib.compress(data, level)


ORIENTATION = 0x0112
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION = 0xA002, 0xA003

# Which format each output is written in is decided by discover (Job.format).
LOSSY = {"JPEG", "WEBP", "AVIF", "HEIF"}
# Formats that can hold 16 bits per sample (batchsr writes them at full precision).
DEEP_FORMATS = {"PNG", "TIFF"}
# Formats that carry EXIF and ICC through Pillow's save().
METADATA_FORMATS = {"JPEG", "PNG", "TIFF", "WEBP", "AVIF", "HEIF"}

# TIFF tags that describe the pixel layout of the *input* file. For a TIFF
# input Pillow's getexif() returns the whole first IFD, and carrying these to
# another file would describe pixels that are not there (a CMYK photometric
# on an RGB output, strip offsets into nothing); each writer sets its own.
STRUCTURE_TAGS = frozenset({
    254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 290,
    291, 296, 297, 317, 318, 319, 320, 321, 322, 323, 324, 325, 330, 332, 338, 339, 340, 341, 347,
    513, 514, 529, 530, 531, 532, 34675,
})

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

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] in (2, 4)


_plugins_registered = False


def register_plugins() -> None:
    """Register optional Pillow plugins (HEIC via pillow-heif) once, if installed."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


def can_write(fmt: str) -> bool:
    """Whether this installation can encode ``fmt`` (AVIF and HEIF depend on optional parts)."""
    register_plugins()
    Image.init()
    return fmt in Image.SAVE


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """The bytes of an sRGB ICC profile (littleCMS's built-in one; made once, it embeds a date)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


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
            rgb = ImageCms.profileToProfile(im, src, dst, outputMode="RGB",
                                            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
            notes.append("CMYK converted to sRGB through its embedded ICC profile")
            return rgb, srgb_profile()
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as exc:
            notes.append(f"CMYK ICC profile unusable ({str(exc).splitlines()[0] if str(exc) else 'invalid'}); "
                         "converted to RGB without it")
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
    raise ImageError(f"16-bit layout {', '.join(sorted(raws))} of this {im.format} cannot be read at "
                     "full precision; convert it to 16-bit RGB TIFF or PNG")


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


def _decode_deep(path: Path, raws: set[str], high: Image.Image) -> np.ndarray:
    """Full-precision uint16 (H, W, C) pixels of a 16-bit colour file, upright.

    ``high`` is Pillow's normal (high-byte) decode of the same file, already
    loaded; orientation is applied to each decode the same way as to it.
    """
    if raws == {_LA16}:
        with _retiled(path, lambda r: "RGBA") as im:
            b = np.asarray(ImageOps.exif_transpose(im)).astype(np.uint16)
        return np.stack([(b[..., 0] << 8) | b[..., 1], (b[..., 2] << 8) | b[..., 3]], axis=-1)
    with _retiled(path, _OTHER_BYTE.__getitem__) as low:
        lo = np.asarray(ImageOps.exif_transpose(low)).astype(np.uint16)
    hi = np.asarray(ImageOps.exif_transpose(high)).astype(np.uint16)
    if hi.shape != lo.shape:
        raise ImageError("16-bit decode mismatch between the high and low bytes")
    return (hi << 8) | lo


def _carry_exif(exif: Image.Exif, notes: list[str]) -> bytes | None:
    """EXIF to write to the output: orientation reset to 1, input layout tags removed."""
    if not len(exif):
        return None
    try:
        for tag in [t for t in exif if t in STRUCTURE_TAGS]:
            del exif[tag]
        if not len(exif):
            return None
        # exif_transpose removed the tag; an explicit 1 tells every reader
        # that the pixels are upright as stored.
        exif[ORIENTATION] = 1
        for group in (EXIF_IFD, GPS_IFD):
            if group in exif:
                exif.get_ifd(group)  # parse the sub-IFD now, so tobytes() writes it back
        return exif.tobytes() if len(exif) else None
    except Exception as exc:  # malformed EXIF must not cost the image
        notes.append(f"EXIF could not be carried over ({type(exc).__name__})")
        return None


def load(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decode an image file. Raises ImageError with a one-line reason for any bad input.

    EXIF orientation is applied once here and the tag reset to 1, so the
    output is upright in every viewer and is not rotated twice. The size is
    checked against ``max_pixels`` from the header, before any pixel is
    decoded (decompression bombs).
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
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Pillow's warnings (corrupt EXIF, ...) go to the report's notes, not to stderr.
            warnings.simplefilter("always")
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
                    frames = getattr(im, "n_frames", 1)
                    if frames > 1:
                        notes.append(f"{fmt} has {frames} frames; only the first was upscaled")
                    deep = _deep_rawmodes(im)
                    im.load()
                    icc = im.info.get("icc_profile")
                    dpi = im.info.get("dpi")
                    upright = ImageOps.exif_transpose(im)
                    if deep:
                        pixels = _decode_deep(path, deep, im).astype(np.float32) / 65535.0
                        bits = 16
                    else:
                        if upright.mode == "CMYK":
                            upright, icc = cmyk_to_rgb(upright, icc, notes)
                        pixels, bits = to_array(upright, notes)
                    # The original's EXIF (a copy made by exif_transpose loses a TIFF's tags),
                    # edited only now that every decode has seen its orientation.
                    exif_bytes = _carry_exif(im.getexif(), notes)
            finally:
                Image.MAX_IMAGE_PIXELS = saved_limit
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(_unidentified(head)) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"corrupt or truncated image: {msg}") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError("image has no pixels")
    for w in caught:
        if not issubclass(w.category, Image.DecompressionBombWarning):
            text = " ".join(str(w.message).split())
            if text and text not in notes:
                notes.append(text)
    dpi_t = (float(dpi[0]), float(dpi[1])) if dpi and dpi[0] and dpi[1] else None
    return Picture(pixels, bits, fmt, exif_bytes, icc, dpi_t, notes)


def _unidentified(head: bytes) -> str:
    from batchsr.discover import sniff

    kind = sniff(head)
    readable = kind in Image.OPEN or kind not in ("HEIF", "AVIF")
    if kind == "HEIF" and not readable:
        return "HEIC/HEIF needs the optional pillow-heif plugin: pip install 'batchsr[heic]'"
    if kind == "AVIF" and not readable:
        return "AVIF needs Pillow built with AVIF support (Pillow >= 11.3 wheels): pip install 'batchsr[avif]'"
    if kind:
        return f"corrupt {kind} file: Pillow cannot read its header"
    return "not an image Pillow can read (unknown format or corrupt header)"


def to_pillow(pixels: np.ndarray, bits: int, fmt: str) -> Image.Image:
    """Float (H, W, C) in [0, 1] -> a Pillow image the format can hold (8 bits except 16-bit grey)."""
    from batchsr.color import to_uint

    c = pixels.shape[2]
    if bits == 16 and c == 1 and fmt in DEEP_FORMATS:
        return Image.fromarray(to_uint(pixels[..., 0], 16))  # mode I;16
    u8 = to_uint(pixels, 8)
    if fmt == "JPEG" and c in (2, 4):
        u8 = u8[..., :-1]  # JPEG has no alpha; only reachable with --format jpg
        c -= 1
    return Image.fromarray(u8[..., 0] if c == 1 else u8)


def save_notes(pixels: np.ndarray, bits: int, fmt: str) -> list[str]:
    """What writing these pixels as ``fmt`` loses, for the report."""
    notes = []
    if bits == 16 and fmt not in DEEP_FORMATS:
        notes.append(f"16-bit input written as 8-bit {fmt}")
    if fmt == "JPEG" and pixels.shape[2] in (2, 4):
        notes.append("alpha channel dropped: JPEG cannot hold it")
    return notes


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _exif_for(exif: bytes | None, width: int, height: int) -> bytes | None:
    """EXIF with its pixel dimensions (if it states them) updated to the output's."""
    if not exif:
        return exif
    try:
        ex = Image.Exif()
        ex.load(exif)
        if EXIF_IFD in ex:
            sub = ex.get_ifd(EXIF_IFD)
            if PIXEL_X_DIMENSION in sub or PIXEL_Y_DIMENSION in sub:
                sub[PIXEL_X_DIMENSION], sub[PIXEL_Y_DIMENSION] = width, height
                if GPS_IFD in ex:
                    ex.get_ifd(GPS_IFD)
                return ex.tobytes()
    except Exception:
        pass  # keep the bytes as they came
    return exif


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _rechunk(bands: Iterable[np.ndarray], rows: int) -> Iterator[np.ndarray]:
    """Regroup row bands of any heights into blocks of exactly ``rows`` rows (the last may be short)."""
    buf: list[np.ndarray] = []
    have = 0
    for band in bands:
        while band.shape[0]:
            take = min(rows - have, band.shape[0])
            buf.append(band[:take])
            have += take
            band = band[take:]
            if have == rows:
                yield buf[0] if len(buf) == 1 else np.concatenate(buf)
                buf, have = [], 0
    if buf:
        yield buf[0] if len(buf) == 1 else np.concatenate(buf)


def _average_filter(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 3 (Average) of a block of rows of bytes, vectorised.

    Returns the block as PNG scanlines: (rows, 1 + row bytes), each row led by
    its filter-type byte. PNG filters are defined on the raw bytes of the row
    and of the row above, so a whole block filters in a few numpy operations;
    ``prev`` is the raw row above the block (zeros for the first row). The
    mean is taken in 8 bits, ``(a & b) + ((a ^ b) >> 1)`` = floor((a + b) / 2),
    and the subtraction wraps modulo 256 as PNG wants: no 16-bit copies. On
    B100 outputs at zlib level 1, Average gave the smallest files of the five
    filters (Paeth +1 %, Up +6 %, Sub +9 %) at under half of Paeth's cost.
    """
    n, row_bytes = raw.shape
    out = np.empty((n, row_bytes + 1), np.uint8)
    out[:, 0] = 3
    body = out[:, 1:]
    # Row 0 against ``prev``, the others against the block's own rows above: views, no copy.
    for above, cur, dst in ((prev[None], raw[:1], body[:1]), (raw[:-1], raw[1:], body[1:])):
        if not cur.shape[0]:
            continue
        np.right_shift(above[:, :bpp], 1, out=dst[:, :bpp])  # the first pixel has no left neighbour (0)
        a, b = above[:, bpp:], cur[:, :-bpp]
        mean = np.bitwise_xor(a, b)
        mean >>= 1
        mean += a & b
        dst[:, bpp:] = mean
        np.subtract(cur, dst, out=dst)
    return out


def _write_png(f, bands: Iterable[np.ndarray], width: int, height: int, channels: int, bits: int, *,
               exif: bytes | None, icc: bytes | None, dpi: tuple[float, float] | None, level: int) -> None:
    """A PNG (8 or 16 bit; grey, grey+alpha, RGB or RGBA) streamed from uint row bands (rows, W, C).

    Rows use the Average filter (see :func:`_average_filter`); memory is one band,
    not the image.
    """
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    bpp = (bits // 8) * channels
    f.write(b"\x89PNG\r\n\x1a\n")
    f.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, color_type, 0, 0, 0)))
    if icc:
        f.write(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if dpi:
        ppm = [max(1, int(d / 0.0254 + 0.5)) for d in dpi]
        f.write(_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        f.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    comp = deflate_compressobj(level)
    row_bytes = width * bpp
    prev = np.zeros(row_bytes, np.uint8)
    rows_done = 0
    for block in _rechunk(bands, max(1, (1 << 20) // (row_bytes + 1))):
        if block.shape[1:] != (width, channels):
            raise ValueError(f"band of shape {block.shape} does not fit a {width}x{height}x{channels} PNG")
        be = block.astype(">u2") if bits == 16 else block.astype(np.uint8, copy=False)
        raw = np.ascontiguousarray(be).reshape(block.shape[0], -1).view(np.uint8)
        lines = _average_filter(raw, prev, bpp)
        prev = raw[-1].copy()
        out = comp.compress(lines)
        if out:
            f.write(_chunk(b"IDAT", out))
        rows_done += block.shape[0]
    if rows_done != height:
        raise ValueError(f"PNG got {rows_done} rows, expected {height}")
    f.write(_chunk(b"IDAT", comp.flush()))
    f.write(_chunk(b"IEND", b""))


def _write_png16(f, u16: np.ndarray, *, exif: bytes | None, icc: bytes | None,
                 dpi: tuple[float, float] | None, level: int) -> None:
    """A 16-bit PNG from a whole uint16 (H, W, C) array (see :func:`_write_png`)."""
    h, w, c = u16.shape
    _write_png(f, [u16], w, h, c, 16, exif=exif, icc=icc, dpi=dpi, level=level)


def _write_tiff(f, pixels, *, exif: bytes | None, icc: bytes | None,
                dpi: tuple[float, float] | None, level: int, shape: tuple[int, int, int] | None = None,
                bits: int | None = None) -> None:
    """A TIFF (deflate, horizontal predictor), with EXIF, ICC and DPI, from uint8 or uint16
    pixels: a whole (H, W, C) array, or row bands with ``shape`` and ``bits`` given.

    Used for every TIFF output: Pillow holds no 16-bit colour, and its libtiff
    writer fails on EXIF sub-directories (date taken, GPS). The directory is
    built by Pillow's own TIFF tag writer, which writes those sub-directories
    the way Pillow's uncompressed TIFF save does. Strips are compressed as the
    bands arrive, so only the compressed image is held, never the raw one.
    """
    from PIL import TiffImagePlugin, TiffTags

    if shape is None:
        shape, bits, bands = pixels.shape, 8 * pixels.dtype.itemsize, [pixels]
    else:
        bands = pixels
    h, w, c = shape
    nbytes = bits // 8
    row_bytes = w * c * nbytes
    rows = max(1, min(h, (1 << 20) // row_bytes))
    strips = []
    for block in _rechunk(bands, rows):
        little = block.astype("<u2" if nbytes == 2 else np.uint8)
        diff = little.copy()
        np.subtract(little[:, 1:], little[:, :-1], out=diff[:, 1:])  # predictor 2, modulo 2**bits
        strips.append(deflate_compress(diff.tobytes(), level))
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        ex = Image.Exif()
        ex.load(exif)
        for key in ex:
            if key in STRUCTURE_TAGS or key == ORIENTATION:
                continue
            ifd[key] = ex.get_ifd(key) if key in TiffTags.TAGS_V2_GROUPS else ex[key]
    ifd[256], ifd[257] = w, h
    ifd[258] = (8 * nbytes,) * c
    ifd[259] = 8  # Adobe deflate
    ifd[262] = 1 if c <= 2 else 2
    ifd[274] = 1
    ifd[277] = c
    ifd[278] = rows
    ifd[284] = 1
    ifd[317] = 2
    if c in (2, 4):
        ifd[338] = (2,)  # unassociated alpha
    ifd.tagtype[273] = ifd.tagtype[279] = TiffTags.LONG
    offsets, pos = [], 0
    for s in strips:
        offsets.append(pos)
        pos += len(s)
    ifd[273] = tuple(offsets)  # relative: the writer adds where the data starts
    ifd[279] = tuple(len(s) for s in strips)
    if dpi:
        ifd[296] = 2
        ifd[282], ifd[283] = float(dpi[0]), float(dpi[1])
    if icc:
        ifd[34675] = icc
    ifd.save(f)
    for s in strips:
        f.write(s)


TMP_SUFFIX = ".batchsr-tmp"


def write_atomic(dst: Path, write: Callable[[io.BufferedWriter], None],
                 before_commit: Callable[[os.stat_result], None] | None = None,
                 before_sync: Callable[[], None] | None = None) -> None:
    """Create ``dst`` through ``write(file)`` on a temporary file in the same folder and a rename.

    A crash or kill at any moment leaves either the previous file or the
    complete new one at ``dst``, never a partial file; the temporary file is
    removed on error (a kill -9 can leave one behind, named
    ``.NAME.*.batchsr-tmp``, never at a final path). ``before_commit``
    gets the finished temporary file's stat just before the rename;
    ``before_sync`` is called once every byte is written, before the fsync
    (the pipeline hands its compute slot on there: the fsync only waits).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=TMP_SUFFIX, dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if before_sync is not None:
                before_sync()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get normal permissions
        if before_commit is not None:
            before_commit(os.stat(tmp))
        # The folder is not fsynced after the rename (3-4 ms an image): after a
        # power cut the rename may be lost, leaving the old file or none, which
        # resume redoes; the contents were fsynced, so never a partial file.
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_atomic(image: Image.Image, dst: Path, fmt: str, *, exif: bytes | None = None,
                icc: bytes | None = None, dpi: tuple[float, float] | None = None,
                quality: int = 95, png_level: int = 6,
                before_commit: Callable[[os.stat_result], None] | None = None,
                before_sync: Callable[[], None] | None = None) -> None:
    """Write a Pillow image to ``dst`` atomically (see :func:`write_atomic`)."""
    kw: dict = {}
    if exif and fmt in METADATA_FORMATS:
        kw["exif"] = exif
    if icc and fmt in METADATA_FORMATS:
        kw["icc_profile"] = icc
    if dpi and fmt in ("JPEG", "PNG", "TIFF", "BMP"):
        kw["dpi"] = dpi
    if fmt in LOSSY:
        kw["quality"] = quality
    if fmt == "JPEG":
        kw["subsampling"] = 0  # 4:4:4: do not blur the chroma we just upscaled
    if fmt == "PNG":
        kw["compress_level"] = png_level
    write_atomic(Path(dst), lambda f: image.save(f, format=fmt, **kw), before_commit, before_sync)


def save_bands(bands: Iterable[tuple[int, int, np.ndarray]], width: int, height: int, channels: int,
               bits: int, dst: Path, fmt: str, *, exif: bytes | None = None, icc: bytes | None = None,
               dpi: tuple[float, float] | None = None, quality: int = 95, png_level: int = 6,
               before_commit: Callable[[os.stat_result], None] | None = None,
               before_sync: Callable[[], None] | None = None) -> None:
    """Write an image arriving as row bands ``(row0, row1, (rows, W, C))``, atomically: float in
    [0, 1], or uint8 already quantised for an 8-bit output (``pipeline.upscale_bands(bits=8)``).

    ``png_level`` is the zlib level of PNG and TIFF. PNG and TIFF are encoded as the bands arrive (16-bit input stays 16-bit
    in them), so neither the float nor the integer image is ever whole in
    memory. JPEG, WebP and BMP encoders need the whole picture: the bands are
    pasted into one 8-bit Pillow image first. Any exception from the bands
    (a model-output check) aborts the write and leaves no file.
    """
    from batchsr.color import to_uint

    exif = _exif_for(exif, width, height)
    if fmt in DEEP_FORMATS:
        out_bits = 16 if bits == 16 else 8
        ints = (to_uint(band, out_bits) for _, _, band in bands)
        if fmt == "PNG":
            write = lambda f: _write_png(f, ints, width, height, channels, out_bits, exif=exif,  # noqa: E731
                                         icc=icc, dpi=dpi, level=png_level)
        else:
            write = lambda f: _write_tiff(f, ints, exif=exif, icc=icc, dpi=dpi, level=png_level,  # noqa: E731
                                          shape=(height, width, channels), bits=out_bits)
        write_atomic(Path(dst), write, before_commit, before_sync)
        return
    keep = channels - 1 if fmt == "JPEG" and channels in (2, 4) else channels  # JPEG has no alpha
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[keep]
    image = Image.new(mode, (width, height))
    for r0, _, band in bands:
        u8 = to_uint(band[..., :keep], 8)
        image.paste(Image.fromarray(u8[..., 0] if keep == 1 else u8), (0, r0))
    save_atomic(image, dst, fmt, exif=exif, icc=icc, dpi=dpi, quality=quality, png_level=png_level,
                before_commit=before_commit, before_sync=before_sync)


def save_pixels(pixels: np.ndarray, bits: int, dst: Path, fmt: str, *, exif: bytes | None = None,
                icc: bytes | None = None, dpi: tuple[float, float] | None = None,
                quality: int = 95, png_level: int = 6,
                before_commit: Callable[[os.stat_result], None] | None = None,
                before_sync: Callable[[], None] | None = None) -> None:
    """Write whole float (H, W, C) pixels in [0, 1] to ``dst`` as ``fmt``, atomically:
    :func:`save_bands` with a single band (16-bit stays 16-bit in PNG and TIFF)."""
    h, w, c = pixels.shape
    save_bands([(0, h, pixels)], w, h, c, bits, dst, fmt, exif=exif, icc=icc, dpi=dpi, quality=quality,
               png_level=png_level, before_commit=before_commit, before_sync=before_sync)
