"""The JPEG quality read from decoded pixels: right where a JPEG's grid survives, silent elsewhere."""

import io

import numpy as np
import pytest
from helpers import photo
from PIL import Image

from batchsr import decode
from batchsr.cli import main
from batchsr.experiment import damage_of
from batchsr.jpeg_pixels import HIGHEST_READ, READ_ERROR, jpeg_quality_of_pixels
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


def saved_jpeg(im: Image.Image, path, quality: int, before: int | None = None):
    """``im`` saved as a JPEG file at ``quality``, first JPEG-compressed at ``before`` if given."""
    (im if before is None else Image.fromarray(jpeg_round_trip(im, before))).save(path, quality=quality)
    return decode.load(path)


@pytest.mark.parametrize("before, quality", [(30, 90), (45, 90), (30, 95), (45, 95), (60, 95)])
def test_a_jpeg_saved_again_at_a_high_quality_reports_its_first_save(photos, tmp_path, before, quality):
    for i, im in enumerate(photos):
        d = damage_of(saved_jpeg(im, tmp_path / "again.jpg", quality, before))
        assert d.jpeg_from_pixels and abs(d.jpeg_quality - before) <= READ_ERROR, (i, d)


def test_a_jpeg_saved_once_reports_its_tables_quality(photos, tmp_path):
    for i, im in enumerate(photos):
        for quality in range(HIGHEST_READ - 5, 101):  # the pixels are read from 86 on
            d = damage_of(saved_jpeg(im, tmp_path / "once.jpg", quality))
            assert (d.jpeg_quality, d.jpeg_from_pixels) == (quality, False), (i, quality, d)


def test_a_png_that_was_a_jpeg_is_judged_damaged_and_says_where_its_quality_came_from(photos, tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(jpeg_round_trip(photos[1], 50)).save(inp / "was_jpeg.png")
    photos[1].save(inp / "clean.png")
    Image.fromarray(jpeg_round_trip(photos[1], 50)).convert("L").save(inp / "grey_was_jpeg.png")
    Image.fromarray(jpeg_round_trip(photos[1], 40)).save(inp / "saved_again.jpg", quality=93)
    photos[1].save(inp / "saved_once.jpg", quality=93)
    assert main([str(inp), str(tmp_path / "out"), "--precision", "fp32", "--quiet"]) == 0
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in read_rows(tmp_path / "out" / "batchsr-report.csv")}
    for name in ("was_jpeg.png", "grey_was_jpeg.png"):
        r = rows[name]
        assert abs(float(r["jpeg_quality"]) - 50) <= 3 and r["model"] == "photo x3", (name, r)
        assert r["notes"].startswith(f"JPEG quality {float(r['jpeg_quality']):.0f} read from the pixels; photo chosen")
    assert rows["clean.png"]["jpeg_quality"] == "" and rows["clean.png"]["model"] == "default x3"
    again = rows["saved_again.jpg"]
    assert abs(float(again["jpeg_quality"]) - 40) <= READ_ERROR and again["model"] == "photo x3", again
    q = float(again["jpeg_quality"])
    assert again["notes"].startswith(f"JPEG quality {q:.0f} read from the pixels (saved again at 93); photo chosen")
    once = rows["saved_once.jpg"]
    assert (once["jpeg_quality"], once["model"], once["notes"]) == ("93", "default x3", ""), once


# --- the re-save table (not a test) --------------------------------------------------------------


def resave_table(shared) -> None:
    """On the 100 B100 photos at 481x321 and 160x107 (seed 7): JPEGs saved once at a random
    quality 86-98, and saved at 30-85 then again at 86-98, read as ``damage_of`` reads a file."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(7)
    lower, found, near, errors, n = 0, 0, 0, [], 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jpg"
        for p in sorted((shared / "data" / "bsds500" / "val").glob("*")):
            with Image.open(p) as im:
                im = im.convert("RGB")
            for img in (im, im.resize((im.width // 3, im.height // 3), Image.BICUBIC)):
                n += 1
                once = int(rng.integers(HIGHEST_READ + 1, 99))
                lower += damage_of(saved_jpeg(img, path, once)).jpeg_from_pixels
                first, again = int(rng.integers(30, HIGHEST_READ + 1)), int(rng.integers(HIGHEST_READ + 1, 99))
                d = damage_of(saved_jpeg(img, path, again, first))
                if d.jpeg_from_pixels:
                    found += 1
                    errors.append(d.jpeg_quality - first)
                    near += abs(d.jpeg_quality - first) <= READ_ERROR
    print(f"saved once at {HIGHEST_READ + 1}-98: {lower} of {n} read a lower quality from the pixels")
    print(
        f"saved at 30-{HIGHEST_READ}, then again at {HIGHEST_READ + 1}-98: first save found in {found} of {n}, "
        f"within {READ_ERROR} in {near}, largest error {max(map(abs, errors)):.0f}"
    )


if __name__ == "__main__":
    from pathlib import Path

    resave_table(Path(__file__).resolve().parents[2] / "shared")
