"""decode.load / save_atomic and the metadata a photo must keep through a run."""

import io

import numpy as np
import pytest
from helpers import photo
from PIL import Image, ImageCms

from batchsr import decode, encode


def _exif(orientation=None, **tags) -> Image.Exif:
    e = Image.Exif()
    if orientation:
        e[0x0112] = orientation
    for k, v in tags.items():
        e[int(k[1:], 16)] = v
    return e


def test_orientation_applied_once_and_reset(tmp_path):
    im = photo(0, 40, 20)
    p = tmp_path / "o6.jpg"
    im.save(p, exif=_exif(6, t0x010F="Nikon"), quality=98)  # 6 = rotate 90 CW to display
    pic = decode.load(p)
    assert (pic.width, pic.height) == (20, 40)
    exif = Image.Exif()
    exif.load(pic.exif)
    assert exif.get(0x0112, 1) == 1  # removed or reset: viewers must not rotate again
    assert exif[0x010F] == "Nikon"


def test_icc_dpi_and_exif_travel_to_the_output(tmp_path, random_model):
    from batchsr.config import RunConfig
    from batchsr.discover import Job
    from batchsr.process import process

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in" / "a.jpg"
    src.parent.mkdir()
    photo(1, 30, 24).save(src, icc_profile=icc, dpi=(150, 150), exif=_exif(t0x0132="2001:02:03 04:05:06"))
    cfg = RunConfig(input=src.parent, output=tmp_path / "out")
    row = process(Job(src, src.relative_to(src.parent)), cfg.output, random_model, cfg)
    assert row.status == "ok", row.error
    with Image.open(tmp_path / "out" / "a.jpg") as out:
        assert out.size == (90, 72)
        assert out.info["icc_profile"] == icc
        assert out.info["dpi"] == pytest.approx((450, 450), abs=0.5)
        assert out.getexif()[0x0132] == "2001:02:03 04:05:06"


def test_rgba_keeps_an_upscaled_alpha(tmp_path):
    a = np.zeros((10, 10, 4), np.uint8)
    a[..., :3] = 120
    a[:, 5:, 3] = 255
    Image.fromarray(a).save(tmp_path / "a.png")
    pic = decode.load(tmp_path / "a.png")
    assert pic.pixels.shape == (10, 10, 4) and pic.has_alpha
    assert pic.pixels[0, 0, 3] == 0 and pic.pixels[0, 9, 3] == 1


def test_grey_stays_grey_and_16_bit_stays_16_bit(tmp_path):
    g16 = (np.linspace(0, 65535, 12 * 8).reshape(8, 12)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    pic = decode.load(tmp_path / "g16.png")
    assert pic.bits == 16 and pic.pixels.shape == (8, 12, 1)
    out = encode.to_pillow(pic.pixels, pic.bits, "PNG")
    assert out.mode == "I;16"
    assert np.array_equal(np.asarray(out), g16)
    photo(2, 9, 9, "L").save(tmp_path / "g.png")
    assert decode.load(tmp_path / "g.png").pixels.shape == (9, 9, 1)


@pytest.mark.parametrize(
    "content,reason", [(b"", "empty file"), (b"not an image at all", "not an image"), (None, "corrupt or truncated")]
)
def test_bad_files_raise_one_line_errors(tmp_path, content, reason):
    p = tmp_path / "x.jpg"
    if content is None:
        buf = io.BytesIO()
        photo(3, 64, 64).save(buf, "JPEG")
        content = buf.getvalue()[: len(buf.getvalue()) // 2]
    p.write_bytes(content)
    with pytest.raises(decode.ImageError, match=reason) as e:
        decode.load(p)
    assert "\n" not in str(e.value)


def test_pixel_limit(tmp_path):
    photo(4, 50, 40).save(tmp_path / "big.png")
    with pytest.raises(decode.ImageError, match="over the limit"):
        decode.load(tmp_path / "big.png", max_pixels=1999)
    assert decode.load(tmp_path / "big.png", max_pixels=2000).width == 50


def test_save_atomic_replaces_and_leaves_no_temporaries(tmp_path):
    dst = tmp_path / "sub" / "x.png"
    encode.save_atomic(photo(5, 8, 8), dst, encode.Encoding("PNG"))
    encode.save_atomic(photo(6, 8, 8), dst, encode.Encoding("PNG"))
    assert [p.name for p in dst.parent.iterdir()] == ["x.png"]
    assert np.array_equal(np.asarray(Image.open(dst)), np.asarray(photo(6, 8, 8)))


def test_save_atomic_failure_keeps_the_old_file(tmp_path):
    dst = tmp_path / "x.png"
    encode.save_atomic(photo(7, 8, 8), dst, encode.Encoding("PNG"))
    before = dst.read_bytes()
    with pytest.raises(OSError):
        encode.save_atomic(Image.new("I;16", (4, 4)), dst, encode.Encoding("JPEG"))  # JPEG cannot hold I;16
    assert dst.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
