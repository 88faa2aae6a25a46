"""The JPEG quality read from decoded pixels: right where a JPEG's grid survives, silent elsewhere."""

import io

import numpy as np
import pytest
from helpers import photo
from PIL import Image

from batchsr.cli import main
from batchsr.jpeg_pixels import jpeg_quality_of_pixels
from batchsr.report import read_rows


def luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def jpeg_round_trip(im: Image.Image, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as d:
        return np.asarray(d.convert("RGB"))


@pytest.fixture(scope="module")
def photos(shared):
    """Three B100 photos at full size (481x321) and at a small old file's (160x107)."""
    out = []
    for p in sorted((shared / "data" / "bsds500" / "val").glob("*"))[:3]:
        with Image.open(p) as im:
            im = im.convert("RGB")
        out += [im, im.resize((im.width // 3, im.height // 3), Image.BICUBIC)]
    return out


@pytest.mark.parametrize("quality", [30, 45, 60, 75])
def test_the_quality_of_a_decoded_jpeg_is_read_within_3_wherever_its_grid_starts(photos, quality):
    for i, im in enumerate(photos):
        px = jpeg_round_trip(im, quality)
        top, left = i % 8, (3 * i + 5) % 8  # the PNG was cut from the JPEG off its grid
        found = jpeg_quality_of_pixels(luma(px[top:, left:]))
        assert found is not None and abs(found - quality) <= 3, (i, found)


def test_no_quality_without_a_surviving_grid(photos):
    for im in photos:
        assert jpeg_quality_of_pixels(luma(np.asarray(im.resize((im.width // 2, im.height // 2))))) is None
        # a JPEG resized afterwards: its blocks are no longer 8 pixels on a grid
        resized = Image.fromarray(jpeg_round_trip(im, 40)).resize(
            (im.width * 7 // 10, im.height * 7 // 10), Image.BICUBIC
        )
        assert jpeg_quality_of_pixels(luma(np.asarray(resized))) is None
    smooth = np.asarray(photo(0, 200, 150, grain=0))
    assert jpeg_quality_of_pixels(luma(smooth)) is None
    flat = np.full((64, 64), 128.0, np.float32)
    assert jpeg_quality_of_pixels(flat) is None  # every coefficient zero: nothing to tell
    assert jpeg_quality_of_pixels(luma(jpeg_round_trip(photos[1], 40))[:31]) is None  # under 32 rows
    # steps of 2-3 drown in the decoder's rounding: a high quality reads as no trace
    assert jpeg_quality_of_pixels(luma(jpeg_round_trip(photos[0], 95))) is None


def test_a_png_that_was_a_jpeg_is_judged_damaged_and_says_where_its_quality_came_from(photos, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(jpeg_round_trip(photos[1], 50)).save(inp / "was_jpeg.png")
    photos[1].save(inp / "clean.png")
    Image.fromarray(jpeg_round_trip(photos[1], 50)).convert("L").save(inp / "grey_was_jpeg.png")
    assert main([str(inp), str(tmp_path / "out"), "--precision", "fp32", "--quiet"]) == 0
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in read_rows(tmp_path / "out" / "batchsr-report.csv")}
    for name in ("was_jpeg.png", "grey_was_jpeg.png"):
        r = rows[name]
        assert abs(float(r["jpeg_quality"]) - 50) <= 3 and r["model"] == "photo x3", (name, r)
        assert r["notes"].startswith(f"JPEG quality {float(r['jpeg_quality']):.0f} read from the pixels; photo chosen")
    assert rows["clean.png"]["jpeg_quality"] == "" and rows["clean.png"]["model"] == "default x3"
