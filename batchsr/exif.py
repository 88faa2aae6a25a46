"""EXIF of an input, and what of it travels to the output: the orientation read, applied once
and reset, damaged or unwritable tags dropped with a note, the pixel dimensions updated to
the output's. Pillow's ``ImageOps.exif_transpose`` is the model for :func:`upright`."""

from __future__ import annotations

import struct

from PIL import Image

from batchsr.formats import EXIF_IFD, GPS_IFD, ORIENTATION, PIXEL_X_DIMENSION, PIXEL_Y_DIMENSION, STRUCTURE_TAGS

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_exif(im: Image.Image, notes: list[str]) -> Image.Exif | None:
    """The image's EXIF as Pillow parses it; None (and a note) if Pillow cannot parse it at all."""
    try:
        return im.getexif()
    except Exception as exc:  # malformed EXIF must not cost the image
        notes.append(f"EXIF unreadable ({type(exc).__name__}), dropped: the picture is kept as stored")
        return None


def transpose_method(exif: Image.Exif | None, notes: list[str]) -> Image.Transpose | None:
    """The transposition that makes the stored pixels upright, from the EXIF orientation
    (what ``ImageOps.exif_transpose`` does, without re-encoding the EXIF, which raises on
    damaged tags). An orientation that is not 1-8 is ignored, with a note."""
    value = exif.get(ORIENTATION) if exif is not None else None
    if value is None:
        return None
    o = value[0] if isinstance(value, tuple) and value else value  # Pillow keeps a count > 1 as a tuple
    try:
        valid = not isinstance(o, (bool, str, bytes)) and float(o) == int(o) and 1 <= int(o) <= 8
    except (TypeError, ValueError, OverflowError):
        valid = False
    if not valid:
        notes.append(f"EXIF orientation {ascii(value)[:24]} is not 1-8: ignored, the picture is kept as stored")
        return None
    return _TRANSPOSE.get(int(o))


def transposed(im: Image.Image, method: Image.Transpose | None) -> Image.Image:
    return im if method is None else im.transpose(method)


def upright(im: Image.Image) -> Image.Image:
    """``im`` turned by its EXIF orientation as :func:`load` turns it; never raises for bad EXIF."""
    notes: list[str] = []
    return transposed(im, transpose_method(read_exif(im, notes), notes))


def _fits_a_tiff_directory(tag: int, value, group: int | None) -> bool:
    """Whether Pillow can write this one tag (a damaged type or value makes it raise)."""
    from PIL import TiffImagePlugin

    try:
        ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II", group=group)
        ifd[tag] = value
        ifd.tobytes()
        return True
    except Exception:
        return False


def _drop_unwritable_tags(exif: Image.Exif) -> list[str]:
    """Delete the tags Pillow cannot write back (damaged types or values); their names, as 0xTTTT."""
    dropped = []
    for group in (EXIF_IFD, GPS_IFD):
        if group in exif:
            sub = exif.get_ifd(group)
            for tag in list(sub):
                if not _fits_a_tiff_directory(tag, sub[tag], group):
                    del sub[tag]
                    dropped.append(f"0x{tag:04X}")
    for tag in list(exif):
        if tag not in (EXIF_IFD, GPS_IFD) and not _fits_a_tiff_directory(tag, exif[tag], None):
            del exif[tag]
            dropped.append(f"0x{tag:04X}")
    return dropped


def carry_exif(exif: Image.Exif | None, notes: list[str]) -> bytes | None:
    """EXIF to write to the output: orientation reset to 1, input layout tags removed.

    Tags that are too damaged to be written again are dropped one by one (named in
    a note), so the camera, date and GPS of a photo with one bad tag survive; EXIF
    that cannot be repaired is dropped whole. The result always parses again.
    """
    if exif is None or not len(exif):
        return None
    try:
        for tag in [t for t in exif if t in STRUCTURE_TAGS]:
            del exif[tag]
        if not len(exif):
            return None
        # The pixels were turned upright; an explicit 1 tells every reader
        # that they are upright as stored.
        exif[ORIENTATION] = 1
        for group in (EXIF_IFD, GPS_IFD):
            if group in exif:
                exif.get_ifd(group)  # parse the sub-IFD now, so tobytes() writes it back
        try:
            data = exif.tobytes()
        except Exception:
            dropped = _drop_unwritable_tags(exif)
            data = exif.tobytes()
            notes.append(
                f"damaged EXIF tag{'s' if len(dropped) > 1 else ''} {', '.join(dropped[:8])}"
                f"{' ...' if len(dropped) > 8 else ''} dropped"
            )
        check = Image.Exif()
        check.load(data)
        for group in (EXIF_IFD, GPS_IFD):
            if group in check:
                check.get_ifd(group)
        return data
    except Exception as exc:  # malformed EXIF must not cost the image
        notes.append(f"EXIF could not be carried over ({type(exc).__name__})")
        return None


def split_exif(data: bytes) -> tuple[bytes, bytes] | None:
    """A JPEG's bytes without its EXIF segments, and the first EXIF payload; None if it has none."""
    kept, payload, pos, n = [data[:2]], None, 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or 0xD0 <= marker <= 0xD9 or marker in (0x01, 0xFF):
            break  # the scan, or a marker without a length: the rest goes as it is
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        segment = data[pos : pos + 2 + length]
        if marker == 0xE1 and segment[4:10] == b"Exif\0\0":
            payload = segment[4:] if payload is None else payload
        else:
            kept.append(segment)
        pos += 2 + length
    return None if payload is None else (b"".join(kept) + data[pos:], payload)


def parse_exif(payload: bytes, notes: list[str]) -> Image.Exif | None:
    """EXIF from an APP1 payload, parsed apart from its image; None (and a note) if it cannot be."""
    try:
        exif = Image.Exif()
        exif.load(payload)
        return exif
    except Exception as exc:
        notes.append(f"EXIF unreadable ({type(exc).__name__}), dropped: the picture is kept as stored")
        return None


def for_output(exif: bytes | None, width: int, height: int) -> bytes | None:
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
