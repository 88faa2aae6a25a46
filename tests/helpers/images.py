"""Test inputs that Pillow cannot make by itself, built independently of batchsr's writers.

- ``png16``: a 16-bit PNG (any colour type) with filter 0, written by hand.
- ``cmyk_profile``: a tiny ICC v2 CMYK profile whose colours are deliberately
  not the naive CMYK->RGB formula, so a test can tell whether it was used.
- ``exif_with``: EXIF with camera, date taken and GPS.
- ``stored_for``: the stored pixels that EXIF orientation N turns upright.
- ``damaged_photos``: a folder of one B100 photo clean, JPEG-damaged and noisy (``--model auto``).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(path: Path, u16: np.ndarray) -> Path:
    """Write uint16 (H, W) or (H, W, C) as a 16-bit PNG with filter type 0 on every row."""
    a = u16 if u16.ndim == 3 else u16[..., None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )
    Path(path).write_bytes(data)
    return Path(path)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` (a decompression bomb's header) with almost no data."""
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )
    Path(path).write_bytes(data)
    return Path(path)


def _s15(v: float) -> bytes:
    return struct.pack(">i", int(round(v * 65536)))


def cmyk_profile() -> bytes:
    """An ICC v2 CMYK output profile with one lut16 A2B0 table (2-point grid) to Lab.

    Lab at the grid corners: L = 90 - 40 C - 45 K, a = 50 M - 20 C, b = 40 Y.
    So pure cyan comes out a dark teal and pure magenta a light pink, far from
    the naive (0, 255, 255) and (255, 0, 255).
    """
    grid = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    L, a, b = max(0.0, 90 - 40 * c - 45 * k), 50 * m - 20 * c, 40 * y
                    grid += [round(L / 100 * 0xFF00), round((a + 128) * 256), round((b + 128) * 256)]
    lut = b"mft2" + b"\0" * 4 + bytes([4, 3, 2, 0])
    lut += b"".join(_s15(1.0 if i == j else 0.0) for i in range(3) for j in range(3))
    lut += struct.pack(">HH", 2, 2) + struct.pack(">8H", *([0, 65535] * 4))
    lut += struct.pack(f">{len(grid)}H", *grid) + struct.pack(">6H", *([0, 65535] * 3))
    wtpt = b"XYZ " + b"\0" * 4 + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    text = b"batchsr test CMYK\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    cprt = b"text" + b"\0" * 4 + b"public domain\0"
    tags = [(b"A2B0", lut), (b"wtpt", wtpt), (b"desc", desc), (b"cprt", cprt)]
    table_len = 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        table += sig + struct.pack(">II", 128 + table_len + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    size = 128 + table_len + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtr"
        + b"CMYK"
        + b"Lab "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + table + body


def exif_with(orientation: int | None = None) -> Image.Exif:
    """EXIF with camera make/model, date taken, GPS position and (optionally) an orientation."""
    ex = Image.Exif()
    ex[0x010F] = "Kodak"
    ex[0x0110] = "Brownie 127"
    if orientation is not None:
        ex[0x0112] = orientation
    ex.get_ifd(0x8769)[0x9003] = "1962:07:14 15:30:00"
    gps = ex.get_ifd(0x8825)
    gps[1], gps[2] = "N", (52.0, 22.0, 30.0)
    gps[3], gps[4] = "E", (4.0, 53.0, 0.0)
    return ex


# Pillow transposition that undoes what exif_transpose does for each orientation.
_UNDO = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_for(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores so that EXIF ``orientation`` displays ``upright``."""
    t = _UNDO[orientation]
    return upright.copy() if t is None else upright.transpose(t)


def marker_image(w: int = 36, h: int = 24) -> Image.Image:
    """Dark grey, a white block at the top-left and a mid-grey one at the top-right: any flip or turn shows."""
    a = np.full((h, w, 3), 40, np.uint8)
    a[: h // 3, : w // 3] = 250
    a[: h // 3, -w // 4 :] = 140
    return Image.fromarray(a)


def damaged_photos(shared: Path, folder: Path) -> Path:
    """``folder`` made, holding one B100 photo at 160x107 three ways: clean.png, q40.jpg (JPEG
    quality 40) and noisy.png (Gaussian noise of sigma 8 levels, seed 0)."""
    src = Image.open(sorted((shared / "data/bsds500/val").glob("*.jpg"))[3]).convert("RGB")
    clean = np.asarray(src.resize((160, 107), Image.BICUBIC))
    folder.mkdir(parents=True)
    Image.fromarray(clean).save(folder / "clean.png")
    Image.fromarray(clean).save(folder / "q40.jpg", quality=40)
    noise = np.random.default_rng(0).normal(0, 8.0, clean.shape[:2] + (1,))
    Image.fromarray(np.clip(clean + noise, 0, 255).astype(np.uint8)).save(folder / "noisy.png")
    return folder
