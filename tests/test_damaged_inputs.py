"""Damage is an error or a note, never silent success, and damaged metadata never costs the image:
JPEGs with malformed EXIF, JPEGs whose compressed data stops early, tiny files claiming huge pictures."""

import io
import struct

import numpy as np
import pytest
from helpers import photo
from helpers.images import exif_with, png_header_only
from helpers.writes import save_whole
from PIL import Image, ImageFile, TiffImagePlugin

from batchsr import decode, exif

# ---------------------------------------------------------------- malformed EXIF

ORIENTATION, XRES, MAKE, MODEL = 0x0112, 0x011A, 0x010F, 0x0110
EXIF_IFD, DATE_TAKEN = 0x8769, 0x9003


def _exif_tiff() -> bytes:
    """The TIFF body of a camera's EXIF: orientation 6, make, model, resolution, date taken, GPS."""
    ex = exif_with(6)
    ex[XRES] = ex[0x011B] = TiffImagePlugin.IFDRational(300, 1)
    ex[0x0128] = 2
    return ex.tobytes()[6:]


def _entries(t: bytes, ifd_offset: int):
    """(entry offset, tag, type, count) of each entry of the IFD at ``ifd_offset`` (big-endian, as Pillow writes)."""
    (n,) = struct.unpack(">H", t[ifd_offset : ifd_offset + 2])
    for i in range(n):
        e = ifd_offset + 2 + 12 * i
        yield (e, *struct.unpack(">HHI", t[e : e + 8]))


def _edit(
    tag: int, typ: int | None = None, count: int | None = None, value: bytes | None = None, sub: int | None = None
):
    """A damage that rewrites one entry (in IFD0, or in sub-IFD ``sub``): type, count, 4 value bytes."""

    def damage(t: bytes) -> bytes:
        t = bytearray(t)
        assert t[:2] == b"MM"
        ifd = struct.unpack(">I", t[4:8])[0]
        if sub is not None:
            ifd = next(struct.unpack(">I", t[e + 8 : e + 12])[0] for e, g, *_ in _entries(t, ifd) if g == sub)
        for e, g, old_typ, old_count in _entries(t, ifd):
            if g == tag:
                struct.pack_into(
                    ">HI", t, e + 2, old_typ if typ is None else typ, old_count if count is None else count
                )
                if value is not None:
                    t[e + 8 : e + 12] = value
                return bytes(t)
        raise AssertionError(f"tag {tag:#x} not found")

    return damage


def _point_all(at: int | None = None):
    """Every IFD0 entry that holds an offset points ``at`` (None: at IFD0 itself, a loop)."""

    def damage(t: bytes) -> bytes:
        t = bytearray(t)
        ifd = struct.unpack(">I", t[4:8])[0]
        for e, g, _typ, _count in _entries(t, ifd):
            if g in (MAKE, MODEL, XRES, EXIF_IFD, 0x8825) and (at is not None or g in (EXIF_IFD, 0x8825)):
                t[e + 8 : e + 12] = struct.pack(">I", ifd if at is None else at)
        return bytes(t)

    return damage


def _garbage(prefix: bytes):
    def damage(t: bytes) -> bytes:
        return prefix + bytes(np.random.default_rng(len(prefix)).integers(0, 256, 200, dtype=np.uint8))

    return damage


def _ifd_count(t: bytes) -> bytes:
    t = bytearray(t)
    struct.pack_into(">H", t, struct.unpack(">I", t[4:8])[0], 0xFFFF)
    return bytes(t)


def _huge_resolution(t: bytes) -> bytes:
    """XResolution 4294967295/1 dpi: Pillow takes it as the DPI."""
    t = bytearray(t)
    ifd = struct.unpack(">I", t[4:8])[0]
    for e, g, _typ, _count in _entries(t, ifd):
        if g == XRES:
            (off,) = struct.unpack(">I", t[e + 8 : e + 12])
            t[off : off + 8] = struct.pack(">II", 0xFFFFFFFF, 1)
    return bytes(t)


# name -> (damage of the TIFF body, orientation still readable?, tags that must survive)
EXIF_DAMAGE = {
    "IFD cut short": (lambda t: t[:20], False, ()),
    "cut in the middle": (lambda t: t[: len(t) // 2], None, ()),
    "IFD0 offset past the end": (lambda t: t[:4] + struct.pack(">I", 0xFFFFF0) + t[8:], False, ()),
    "value offsets past the end": (_point_all(0x7FFFFFF0), None, ()),
    "sub-IFDs pointing back at IFD0": (_point_all(None), True, ()),
    "entry count beyond the data": (_ifd_count, None, ()),
    "orientation as text": (_edit(ORIENTATION, typ=2, count=2, value=b"6\0\0\0"), False, (MODEL,)),
    "orientation as a rational outside the data": (_edit(ORIENTATION, typ=5, value=b"\x7f\xff\xff\xf0"), False, ()),
    "orientation 9": (_edit(ORIENTATION, value=b"\0\x09\0\0"), False, (MODEL,)),
    "orientation 0": (_edit(ORIENTATION, value=b"\0\0\0\0"), False, (MODEL,)),
    "orientation of an unknown type": (_edit(ORIENTATION, typ=99), False, (MODEL,)),
    # Pillow reads these, and cannot write them back (it raised in exif_transpose).
    "resolution stored as text": (_edit(XRES, typ=2), True, (MODEL,)),
    "camera make stored as a rational": (_edit(MAKE, typ=5), True, (MODEL,)),
    "date taken stored as numbers": (_edit(DATE_TAKEN, typ=3, sub=EXIF_IFD), True, (MODEL,)),
    "resolution beyond any scanner": (_huge_resolution, True, (MODEL,)),
    "garbage after the Exif header": (_garbage(b""), False, ()),
    "garbage after a TIFF header": (_garbage(b"MM\0*"), False, ()),
    "no byte-order mark": (lambda t: b"XX" + t[2:], False, ()),
    "empty": (lambda t: b"", False, ()),
}


def _jpeg(payload: bytes | None) -> bytes:
    buf = io.BytesIO()
    photo(11, 40, 30).save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    if payload is None:
        return data
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


@pytest.mark.parametrize("name", list(EXIF_DAMAGE))
def test_malformed_exif_never_costs_the_image(tmp_path, name):
    damage, upright, keep = EXIF_DAMAGE[name]
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg(b"Exif\0\0" + damage(_exif_tiff())))
    stored = np.asarray(Image.open(io.BytesIO(_jpeg(None))))  # the same pixels without any EXIF
    pic = decode.load(src)
    got = np.round(pic.pixels * 255).astype(np.uint8)
    rotated = np.asarray(Image.fromarray(stored).transpose(Image.Transpose.ROTATE_270))
    if upright is None:
        assert any(np.array_equal(got, x) for x in (stored, rotated))
    else:
        assert np.array_equal(got, rotated if upright else stored)
    assert all("\n" not in n for n in pic.notes)
    if pic.exif:
        ex = Image.Exif()
        ex.load(pic.exif)
        assert ex.get(ORIENTATION, 1) == 1
        for tag in keep:
            assert tag in ex
    elif keep:
        pytest.fail(f"the EXIF was dropped whole: {pic.notes}")
    if pic.dpi:
        assert all(0 < d < 1e6 for d in pic.dpi)
    dpi = (pic.dpi[0] * 4, pic.dpi[1] * 4) if pic.dpi else None
    for fmt, suffix in (("JPEG", "jpg"), ("PNG", "png"), ("TIFF", "tif")):
        out = tmp_path / f"out.{suffix}"
        save_whole(pic.pixels, pic.bits, out, fmt, exif=pic.exif, icc=pic.icc, dpi=dpi)
        with Image.open(out) as im:
            im.load()
            assert im.size == (pic.width, pic.height)
            assert im.getexif().get(ORIENTATION, 1) == 1


def test_dropped_exif_tags_are_named_in_the_notes(tmp_path):
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg(b"Exif\0\0" + _edit(MAKE, typ=5)(_exif_tiff())))
    pic = decode.load(src)
    assert (pic.width, pic.height) == (30, 40)  # orientation 6 applied
    assert any("EXIF" in n and "0x010F" in n for n in pic.notes), pic.notes
    ex = Image.Exif()
    ex.load(pic.exif)
    assert ex[MODEL] == "Brownie 127" and ex.get_ifd(EXIF_IFD)[DATE_TAKEN] == "1962:07:14 15:30:00"
    assert ex.get_ifd(0x8825)[1] == "N"  # GPS kept
    assert MAKE not in ex


# ---------------------------------------------------------------- JPEG data that stops early


def _photo_jpeg(progressive: bool, **kw) -> bytes:
    buf = io.BytesIO()
    photo(12, 160, 240).save(buf, "JPEG", quality=90, progressive=progressive, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.98])
def test_a_jpeg_cut_short_with_an_end_marker_is_an_error(tmp_path, progressive, fraction):
    """Cut, then an end marker appended (what a failed copy or a repair tool leaves): libjpeg fills
    the rest with flat grey (baseline) or leaves it coarse (progressive) and Pillow does not say."""
    data = _photo_jpeg(progressive)
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: int(len(data) * fraction)] + b"\xff\xd9")
    with pytest.raises(decode.ImageError, match="corrupt or truncated JPEG data") as e:
        decode.load(p)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_a_cut_jpeg_is_an_error_even_if_the_caller_lets_pillow_load_truncated_images(
    tmp_path, progressive, monkeypatch
):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = _photo_jpeg(progressive)
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(decode.ImageError, match="corrupt or truncated"):
        decode.load(p)


def test_a_cut_jpeg_with_restart_markers_is_an_error(tmp_path):
    data = _photo_jpeg(False, restart_marker_rows=1)
    assert b"\xff\xd0" in data
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    with pytest.raises(decode.ImageError, match="corrupt or truncated JPEG data"):
        decode.load(p)


def _grey_bottom(mode: str = "RGB") -> Image.Image:
    a = np.asarray(photo(13, 160, 240)).copy()
    a[120:] = 128  # the exact grey libjpeg fills missing data with
    im = Image.fromarray(a)
    return im if mode == "RGB" else im.convert(mode)


@pytest.mark.parametrize(
    "case",
    [
        "grey bottom",
        "grey bottom, grey",
        "all grey, quality 1",
        "progressive",
        "restart markers",
        "data after the end marker",
        "grey bottom, 4:4:4",
    ],
)
def test_complete_jpegs_are_not_called_damaged(tmp_path, case):
    buf = io.BytesIO()
    if case == "grey bottom":
        _grey_bottom().save(buf, "JPEG", quality=90)
    elif case == "grey bottom, grey":
        _grey_bottom("L").save(buf, "JPEG", quality=90)
    elif case == "grey bottom, 4:4:4":
        _grey_bottom().save(buf, "JPEG", quality=90, subsampling=0)
    elif case == "all grey, quality 1":
        Image.new("RGB", (300, 200), (128, 128, 128)).save(buf, "JPEG", quality=1)
    elif case == "progressive":
        _grey_bottom().save(buf, "JPEG", quality=90, progressive=True)
    elif case == "restart markers":
        _grey_bottom().save(buf, "JPEG", quality=90, restart_marker_rows=1)
    else:
        _grey_bottom().save(buf, "JPEG", quality=90)
        buf.write(b"camera trailer \xff\xd8\xff\xe1 and more")
    p = tmp_path / "ok.jpg"
    p.write_bytes(buf.getvalue())
    pic = decode.load(p)
    want = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
    assert np.array_equal(np.round(pic.pixels * 255).astype(np.uint8).reshape(want.shape), want)


# ---------------------------------------------------------------- declared size against file size


def _tiny_jpeg_claiming(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    photo(14, 16, 16).save(buf, "JPEG", quality=75)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


@pytest.fixture
def no_decoding(monkeypatch):
    """Any pixel decoding fails the test: a refusal must come from the header alone."""

    def load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_a_tiny_jpeg_claiming_a_huge_picture_is_refused_from_its_header(tmp_path, no_decoding):
    p = tmp_path / "bomb.jpg"
    p.write_bytes(_tiny_jpeg_claiming(13000, 13000))
    assert len(p.read_bytes()) < 1000
    with pytest.raises(decode.ImageError, match="13000x13000 .* bytes") as e:  # no_decoding: from the header
        decode.load(p)
    assert "\n" not in str(e.value)


def test_a_tiny_png_claiming_a_huge_picture_is_refused_from_its_header(tmp_path, no_decoding):
    p = png_header_only(tmp_path / "bomb.png", 13000, 13000)
    with pytest.raises(decode.ImageError, match="13000x13000 .* bytes"):
        decode.load(p)


@pytest.mark.parametrize(
    "case",
    [
        "flat grey JPEG, quality 1, optimised",
        "flat RGB JPEG, quality 1",
        "flat progressive JPEG",
        "flat 1-bit PNG",
        "flat palette GIF",
    ],
)
def test_the_most_compressible_real_files_are_not_refused(tmp_path, case):
    """The extremes the density bounds were measured on (decode.MAX_PIXELS_PER_BYTE) still load."""
    p = tmp_path / "flat"
    if "GIF" in case:
        Image.new("P", (2000, 2000), 1).save(p, "GIF")
    elif "PNG" in case:
        Image.new("1", (4000, 4000), 1).save(p, "PNG", optimize=True)
    elif "grey" in case:
        Image.new("L", (3000, 3000), 128).save(p, "JPEG", quality=1, optimize=True)
    elif "progressive" in case:
        Image.new("L", (3000, 3000), 200).save(p, "JPEG", quality=1, optimize=True, progressive=True)
    else:
        Image.new("RGB", (2000, 2000), (90, 140, 200)).save(p, "JPEG", quality=1)
    with Image.open(p) as im:
        ratio = im.width * im.height / p.stat().st_size
        fmt = im.format
    assert ratio > 50  # really extreme files
    assert ratio * 2 < decode.MAX_PIXELS_PER_BYTE[fmt]
    assert decode.load(p).width > 0


@pytest.mark.parametrize(
    "name",
    [
        "camera make stored as a rational",
        "sub-IFDs pointing back at IFD0",
        "orientation 9",
        "garbage after a TIFF header",
    ],
)
def test_upright_turns_like_load_and_never_raises(tmp_path, name):
    """The HTML page draws inputs through exif.upright: the same turn as load, whatever the EXIF
    (ImageOps.exif_transpose raised AttributeError on the first)."""
    damage = EXIF_DAMAGE[name][0]
    src = tmp_path / "in.jpg"
    src.write_bytes(_jpeg(b"Exif\0\0" + damage(_exif_tiff())))
    with Image.open(src) as im:
        im.load()
        drawn = np.asarray(exif.upright(im).convert("RGB"))
    loaded = np.round(decode.load(src).pixels * 255).astype(np.uint8)
    assert np.array_equal(drawn, loaded)
