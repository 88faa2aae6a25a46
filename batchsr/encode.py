"""Writing an output image: the PNG and TIFF writers that stream bands (16-bit included),
Pillow's encoders for the formats that need the whole picture, deflate through ISA-L, and
EXIF updated to the output's size; always through :func:`batchsr.atomic.write_atomic`.

16-bit colour: Pillow has no 16-bit RGB mode, so PNG and TIFF are written by small numpy
writers (``_write_png``, ``_write_tiff``): no extra dependency, full precision.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from batchsr.atomic import write_atomic
from batchsr.color import to_uint
from batchsr.exif import for_output
from batchsr.formats import (
    DEEP_FORMATS,
    DPI_FORMATS,
    LOSSY,
    METADATA_FORMATS,
    ORIENTATION,
    STRUCTURE_TAGS,
)

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


def to_pillow(pixels: np.ndarray, bits: int, fmt: str) -> Image.Image:
    """Float (H, W, C) in [0, 1] -> a Pillow image the format can hold (8 bits except 16-bit grey)."""

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


def _write_png(
    f,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    channels: int,
    bits: int,
    *,
    exif: bytes | None,
    icc: bytes | None,
    dpi: tuple[float, float] | None,
    level: int,
) -> None:
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


def _write_tiff(
    f,
    pixels,
    *,
    exif: bytes | None,
    icc: bytes | None,
    dpi: tuple[float, float] | None,
    level: int,
    shape: tuple[int, int, int] | None = None,
    bits: int | None = None,
) -> None:
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


@dataclass(frozen=True)
class Metadata:
    """What travels from the input to its output file: EXIF (orientation already reset), the ICC
    profile and the resolution (already multiplied by the scale, so the print size stays)."""

    exif: bytes | None = None
    icc: bytes | None = None
    dpi: tuple[float, float] | None = None


@dataclass(frozen=True)
class Encoding:
    """How an output is encoded: its Pillow format, the quality of the lossy ones and the deflate
    level of PNG and TIFF (``--quality``, ``--compression``)."""

    format: str
    quality: int = 95
    level: int = 6


def save_atomic(
    image: Image.Image,
    dst: Path,
    encoding: Encoding,
    metadata: Metadata = Metadata(),
    before_commit: Callable[[os.stat_result], None] | None = None,
    before_sync: Callable[[], None] | None = None,
) -> None:
    """Write a Pillow image to ``dst`` atomically (see :func:`batchsr.atomic.write_atomic`)."""
    fmt, kw = encoding.format, {}
    if metadata.exif and fmt in METADATA_FORMATS:
        kw["exif"] = metadata.exif
    if metadata.icc and fmt in METADATA_FORMATS:
        kw["icc_profile"] = metadata.icc
    if metadata.dpi and fmt in DPI_FORMATS:
        kw["dpi"] = metadata.dpi
    if fmt in LOSSY:
        kw["quality"] = encoding.quality
    if fmt == "JPEG":
        kw["subsampling"] = 0  # 4:4:4: do not blur the chroma we just upscaled
    if fmt == "PNG":
        kw["compress_level"] = encoding.level
    write_atomic(Path(dst), lambda f: image.save(f, format=fmt, **kw), before_commit, before_sync)


def save_bands(
    bands: Iterable[tuple[int, int, np.ndarray]],
    shape: tuple[int, int, int],
    bits: int,
    dst: Path,
    encoding: Encoding,
    metadata: Metadata = Metadata(),
    before_commit: Callable[[os.stat_result], None] | None = None,
    before_sync: Callable[[], None] | None = None,
) -> None:
    """Write an image of ``shape`` (height, width, channels) arriving as row bands ``(row0,
    row1, (rows, W, C))``, atomically: float in [0, 1], or uint8 already quantised for an 8-bit
    output (``upscaling.upscale_bands(bits=8)``); ``bits`` is the input's depth.

    PNG and TIFF are encoded as the bands arrive (16-bit input stays 16-bit in them), so
    neither the float nor the integer image is ever whole in memory. JPEG, WebP and BMP
    encoders need the whole picture: the bands are pasted into one 8-bit Pillow image first.
    Any exception from the bands (a model-output check) aborts the write and leaves no file.
    ``before_commit`` and ``before_sync`` are :func:`batchsr.atomic.write_atomic`'s.
    """

    height, width, channels = shape
    fmt = encoding.format
    exif = for_output(metadata.exif, width, height)
    icc, dpi = metadata.icc, metadata.dpi
    if fmt in DEEP_FORMATS:
        out_bits = 16 if bits == 16 else 8
        ints = (to_uint(band, out_bits) for _, _, band in bands)

        def write(f) -> None:
            if fmt == "PNG":
                _write_png(
                    f, ints, width, height, channels, out_bits, exif=exif, icc=icc, dpi=dpi, level=encoding.level
                )
            else:
                _write_tiff(
                    f,
                    ints,
                    exif=exif,
                    icc=icc,
                    dpi=dpi,
                    level=encoding.level,
                    shape=shape,
                    bits=out_bits,
                )

        write_atomic(Path(dst), write, before_commit, before_sync)
        return
    keep = channels - 1 if fmt == "JPEG" and channels in (2, 4) else channels  # JPEG has no alpha
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[keep]
    image = Image.new(mode, (width, height))
    for r0, _, band in bands:
        u8 = to_uint(band[..., :keep], 8)
        image.paste(Image.fromarray(u8[..., 0] if keep == 1 else u8), (0, r0))
    save_atomic(image, dst, encoding, Metadata(exif, icc, dpi), before_commit, before_sync)
