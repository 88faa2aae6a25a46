"""Formats, modes and metadata: what load() reads and what a run writes."""

import io
import struct

import numpy as np
import pytest
import tifffile
from helpers import photo
from helpers.images import cmyk_profile, exif_with, marker_image, png16, stored_for
from helpers.writes import save_whole
from PIL import Image, ImageCms

from batchsr import decode, formats

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_load_applies_each_exif_orientation_once(tmp_path, orientation):
    upright = marker_image()
    p = tmp_path / "o.png"
    stored_for(upright, orientation).save(p, exif=exif_with(orientation))
    pic = decode.load(p)
    got = np.rint(pic.pixels * 255).astype(np.uint8)
    assert np.array_equal(got, np.asarray(upright))
    ex = Image.Exif()
    ex.load(pic.exif)
    assert ex.get(0x0112) == 1 and ex[0x010F] == "Kodak"


def test_run_writes_every_orientation_upright_with_tag_reset(tmp_path, default_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    upright = marker_image()
    for n in range(1, 9):
        stored_for(upright, n).save(inp / f"o{n}.jpg", quality=95, exif=exif_with(n))
    summary, rows = run_folder(inp, tmp_path / "out", default_model)
    assert summary.ok == 8 and summary.failed == 0
    for n in range(1, 9):
        with Image.open(tmp_path / "out" / f"o{n}.jpg") as im:
            assert im.size == (108, 72), n
            assert im.getexif().get(0x0112) == 1
            a = np.asarray(im.convert("L"), dtype=np.float32)
        assert a[3:20, 3:30].mean() > 200, n  # white block top-left
        assert 100 < a[3:20, 85:105].mean() < 180, n  # grey block top-right
        assert a[40:70, 40:70].mean() < 80, n  # dark bottom


@pytest.mark.parametrize(
    "fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif"), ("WEBP", ".webp"), ("AVIF", ".avif")]
)
def test_icc_exif_and_dpi_carried_to_the_output(tmp_path, random_model, run_folder, fmt, suffix):
    inp = tmp_path / "in"
    inp.mkdir()
    kw = {"icc_profile": SRGB, "exif": exif_with().tobytes()}
    if fmt in ("JPEG", "PNG", "TIFF"):
        kw["dpi"] = (300, 300)
    photo(1, 40, 30).save(inp / f"a{suffix}", format=fmt, **kw)
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert summary.ok == 1, rows
    with Image.open(tmp_path / "out" / f"a{suffix}") as im:
        assert im.format == fmt
        assert im.size == (120, 90)
        assert im.info.get("icc_profile") == SRGB
        ex = im.getexif()
        assert ex[0x010F] == "Kodak" and ex[0x0110] == "Brownie 127"
        assert ex.get_ifd(0x8769)[0x9003] == "1962:07:14 15:30:00"
        gps = ex.get_ifd(0x8825)
        assert gps[1] == "N" and tuple(float(v) for v in gps[2]) == (52.0, 22.0, 30.0)
        if "dpi" in kw:
            assert im.info["dpi"] == pytest.approx((900, 900), abs=0.1)  # same print size


def test_tiff_layout_tags_are_not_carried_as_exif(tmp_path):
    p = tmp_path / "cmyk.tif"
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(p, exif=exif_with())
    pic = decode.load(p)
    ex = Image.Exif()
    ex.load(pic.exif)
    assert ex[0x010F] == "Kodak"
    assert not set(ex) & {256, 257, 258, 259, 262, 273, 277, 279}  # width, photometric, strips...


def _deep(seed, h, w, c):
    # Smooth 16-bit content inside one 8-bit step: 8 bits would flatten it.
    rng = np.random.default_rng(seed)
    base = 30000 + np.linspace(0, 250, w)[None, :, None] + np.linspace(0, 200, h)[:, None, None]
    return np.clip(base + rng.integers(0, 60, (h, w, c)), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_loads_at_full_precision(tmp_path, channels):
    a = _deep(channels, 20, 24, channels)
    pic = decode.load(png16(tmp_path / "d.png", a))
    assert pic.bits == 16 and pic.pixels.shape == (20, 24, channels)
    assert np.array_equal(np.rint(pic.pixels * 65535).astype(np.uint16), a)


@pytest.mark.parametrize(
    "channels,byteorder,compression", [(3, "<", None), (3, ">", None), (3, "<", "zlib"), (4, "<", None), (1, "<", None)]
)
def test_16bit_tiff_loads_at_full_precision(tmp_path, channels, byteorder, compression):
    a = _deep(channels, 20, 24, channels)
    p = tmp_path / "d.tif"
    kw = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    tifffile.imwrite(
        p,
        a if channels > 1 else a[..., 0],
        photometric="rgb" if channels > 1 else "minisblack",
        byteorder=byteorder,
        compression=compression,
        **kw,
    )
    pic = decode.load(p)
    assert pic.bits == 16
    assert np.array_equal(np.rint(pic.pixels * 65535).astype(np.uint16), a)


@pytest.mark.parametrize("name", ["d.png", "d.tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_stays_16bit_end_to_end(tmp_path, random_model, run_folder, name, channels):
    from batchsr.color import to_uint
    from batchsr.upscaling import upscale_pixels

    inp = tmp_path / "in"
    inp.mkdir()
    a = _deep(7, 20, 24, channels)
    if name.endswith(".png"):
        png16(inp / name, a)
    else:
        tifffile.imwrite(
            inp / name, a, photometric="rgb", **({"extrasamples": ["unassalpha"]} if channels == 4 else {})
        )
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert summary.ok == 1, rows
    out = tmp_path / "out" / name
    got = tifffile.imread(out) if name.endswith(".tif") else np.rint(decode.load(out).pixels * 65535)
    expected = to_uint(upscale_pixels(a.astype(np.float32) / 65535, random_model), 16)
    assert got.shape == (60, 72, channels)
    assert np.array_equal(got.astype(np.uint16), expected)
    assert len(np.unique(got[..., 0] % 257)) > 50  # not 8-bit values scaled up


def test_16bit_png_output_is_a_valid_png(tmp_path):
    # Pillow decodes our 16-bit writer's output (Sub filter, metadata chunks) to its high bytes.
    a = _deep(3, 17, 23, 3)
    dst = tmp_path / "w.png"
    save_whole(a.astype(np.float32) / 65535, 16, dst, "PNG", icc=SRGB, dpi=(150, 150), exif=exif_with().tobytes())
    with Image.open(dst) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), (a >> 8).astype(np.uint8))
        assert im.info["icc_profile"] == SRGB and im.info["dpi"] == pytest.approx((150, 150), abs=0.02)
        assert im.getexif()[0x010F] == "Kodak"


def test_16bit_tiff_output_carries_metadata(tmp_path):
    a = _deep(4, 17, 23, 3)
    dst = tmp_path / "w.tif"
    save_whole(a.astype(np.float32) / 65535, 16, dst, "TIFF", icc=SRGB, dpi=(150, 150), exif=exif_with().tobytes())
    assert np.array_equal(tifffile.imread(dst), a)
    with Image.open(dst) as im:
        assert im.info["icc_profile"] == SRGB and im.info["dpi"] == pytest.approx((150, 150))
        ex = im.getexif()
        assert ex[0x010F] == "Kodak" and ex.get_ifd(0x8769)[0x9003] == "1962:07:14 15:30:00"


def test_16bit_grey_stays_grey_and_16bit(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    a = _deep(5, 20, 24, 1)[..., 0]
    Image.fromarray(a).save(inp / "g.png")
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    with Image.open(tmp_path / "out" / "g.png") as im:
        assert im.mode.startswith("I;16") and im.size == (72, 60)


def test_grey_stays_grey(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(2, 30, 20, "L").save(inp / "g.jpg")
    run_folder(inp, tmp_path / "out", random_model)
    with Image.open(tmp_path / "out" / "g.jpg") as im:
        assert im.mode == "L" and im.size == (90, 60)


@pytest.mark.parametrize("mode,name", [("RGBA", "a.png"), ("LA", "la.png"), ("RGBA", "a.webp"), ("RGBA", "a.tif")])
def test_alpha_is_upscaled_not_dropped(tmp_path, random_model, run_folder, mode, name):
    inp = tmp_path / "in"
    inp.mkdir()
    im = photo(3, 30, 20, mode)
    alpha = np.zeros((20, 30), np.uint8)
    alpha[:, 15:] = 255  # left half transparent
    im.putalpha(Image.fromarray(alpha))
    im.save(inp / name)
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    with Image.open(tmp_path / "out" / name) as out:
        assert out.mode == mode and out.size == (90, 60)
        a = np.asarray(out.getchannel("A"))
    assert a[:, :40].max() < 10 and a[:, 50:].min() > 245


def test_palette_becomes_rgb_or_rgba(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(4, 30, 20).convert("P", palette=Image.Palette.ADAPTIVE).save(inp / "p.png")
    pa = photo(5, 30, 20).convert("P", palette=Image.Palette.ADAPTIVE)
    pa.info["transparency"] = 0
    pa.save(inp / "pt.png", transparency=0)
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    with Image.open(tmp_path / "out" / "p.png") as im:
        assert im.mode == "RGB"
    with Image.open(tmp_path / "out" / "pt.png") as im:
        assert im.mode == "RGBA"
    assert "palette image converted to RGB" in rows["p.png"]["notes"]
    assert "palette image converted to RGBA" in rows["pt.png"]["notes"]


def test_cmyk_is_converted_through_its_embedded_profile(tmp_path):
    prof = cmyk_profile()
    im = Image.new("CMYK", (16, 8), (255, 0, 0, 0))  # pure cyan
    p = tmp_path / "c.jpg"
    im.save(p, icc_profile=prof, quality=100)
    pic = decode.load(p)
    got = np.rint(pic.pixels[4, 8] * 255)
    expected = ImageCms.profileToProfile(
        Image.new("CMYK", (1, 1), (255, 0, 0, 0)),
        ImageCms.ImageCmsProfile(io.BytesIO(prof)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
        flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
    ).getpixel((0, 0))
    assert np.abs(got - expected).max() <= 3
    assert np.abs(got - (0, 255, 255)).max() > 60  # not the naive formula
    # The RGB pixels are tagged sRGB, not with the CMYK profile.
    assert pic.icc[16:20] == b"RGB " and "sRGB" in ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(pic.icc))
    )
    assert any("embedded ICC profile" in n for n in pic.notes)


def test_the_srgb_tag_of_a_converted_cmyk_is_the_same_bytes_in_every_run(tmp_path):
    """littleCMS stamps a profile with the time it was made; batchsr's outputs must not vary."""
    import subprocess
    import sys

    Image.new("CMYK", (16, 8), (255, 0, 0, 0)).save(tmp_path / "c.jpg", icc_profile=cmyk_profile())
    code = (
        f"import sys; from batchsr import decode; sys.stdout.buffer.write(decode.load({str(tmp_path / 'c.jpg')!r}).icc)"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] == decode.srgb_profile()
    assert struct.unpack(">6H", runs[0][24:36]) == decode.SRGB_PROFILE_DATE
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(runs[0])))


def test_cmyk_without_profile_is_converted_and_noted(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(6, 30, 20).convert("CMYK").save(inp / "c.tif")
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert rows["c.tif"]["status"] == "ok"
    assert "without an ICC profile" in rows["c.tif"]["notes"]
    with Image.open(tmp_path / "out" / "c.tif") as im:
        assert im.mode == "RGB" and "icc_profile" not in im.info


def test_gif_first_frame_and_format_change_are_reported(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    frames = [photo(i, 30, 20).convert("P") for i in range(3)]
    frames[0].save(inp / "anim.gif", save_all=True, append_images=frames[1:])
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    r = rows["anim.gif"]
    assert r["status"] == "ok" and r["output"].endswith("anim.png")
    assert "3 frames; only the first" in r["notes"] and "GIF written as PNG" in r["notes"]
    with Image.open(tmp_path / "out" / "anim.png") as im:
        assert im.size == (90, 60)


def test_bmp_and_avif_keep_their_format(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(8, 30, 20).save(inp / "b.bmp")
    photo(9, 30, 20).save(inp / "v.avif", quality=90)
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert summary.ok == 2
    for name, fmt in (("b.bmp", "BMP"), ("v.avif", "AVIF")):
        with Image.open(tmp_path / "out" / name) as im:
            assert im.format == fmt and im.size == (90, 60)


def test_heic_is_read_and_kept_with_the_plugin(tmp_path, random_model, run_folder):
    formats.register_plugins()  # pillow-heif, from the heic extra (also in the test extra)
    inp = tmp_path / "in"
    inp.mkdir()
    photo(12, 30, 20).save(inp / "h.heic", format="HEIF", quality=90, exif=exif_with().tobytes())
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert rows["h.heic"]["status"] == "ok", rows
    with Image.open(tmp_path / "out" / "h.heic") as im:
        assert im.format == "HEIF" and im.size == (90, 60)
        assert im.getexif()[0x010F] == "Kodak"


def test_corrupt_heic_with_the_plugin_is_called_corrupt(tmp_path):
    formats.register_plugins()
    p = tmp_path / "x.heic"
    p.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100)
    with pytest.raises(decode.ImageError, match="corrupt HEIF"):
        decode.load(p)


def test_heic_without_plugin_is_a_clear_error(tmp_path, monkeypatch):
    # A HEIC header; with pillow-heif not registered Pillow cannot open it.
    monkeypatch.setattr(formats, "_plugins_registered", True)
    monkeypatch.setattr(Image, "ID", [i for i in Image.ID if i != "HEIF"])
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    p = tmp_path / "x.heic"
    p.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 100)
    with pytest.raises(decode.ImageError, match="pillow-heif"):
        decode.load(p)


@pytest.mark.parametrize(
    "requested,fmt,suffix",
    [("png", "PNG", ".png"), ("jpg", "JPEG", ".jpg"), ("webp", "WEBP", ".webp"), ("tiff", "TIFF", ".tif")],
)
def test_format_option(tmp_path, random_model, run_folder, requested, fmt, suffix):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(10, 30, 20).save(inp / "a.png")
    summary, rows = run_folder(inp, tmp_path / "out", random_model, format=requested, quality=80)
    with Image.open(tmp_path / "out" / f"a{suffix}") as im:
        assert im.format == fmt


def test_quality_option_changes_lossy_output(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(11, 60, 40).save(inp / "a.jpg", quality=95)
    run_folder(inp, tmp_path / "lo", random_model, quality=20)
    run_folder(inp, tmp_path / "hi", random_model, quality=98)
    assert (tmp_path / "lo" / "a.jpg").stat().st_size < (tmp_path / "hi" / "a.jpg").stat().st_size / 2


def test_16bit_to_jpeg_is_noted(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    png16(inp / "d.png", _deep(1, 20, 24, 3))
    summary, rows = run_folder(inp, tmp_path / "out", random_model, format="jpg")
    assert "16-bit input written as 8-bit JPEG" in rows["d.png"]["notes"]


def test_16bit_colour_orientation_is_applied(tmp_path):
    upright = _deep(13, 12, 20, 3)
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # what orientation 6 (turn clockwise) displays upright
    p = tmp_path / "o.png"
    ex = exif_with(6)
    save_whole(stored.astype(np.float32) / 65535, 16, p, "PNG", exif=ex.tobytes())
    pic = decode.load(p)
    assert pic.bits == 16
    assert np.array_equal(np.rint(pic.pixels * 65535).astype(np.uint16), upright)


def test_content_decides_the_output_format(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(14, 30, 20).save(inp / "really_a.jpg", format="PNG")
    photo(15, 30, 20).save(inp / "scan0001", format="JPEG")
    summary, rows = run_folder(inp, tmp_path / "out", random_model)
    assert summary.ok == 2
    with Image.open(tmp_path / "out" / "really_a.png") as im:
        assert im.format == "PNG"
    with Image.open(tmp_path / "out" / "scan0001.jpg") as im:
        assert im.format == "JPEG"
    assert "content is PNG, not JPEG" in rows["really_a.jpg"]["notes"]
