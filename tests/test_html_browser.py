"""The report page opened from disk in a real browser (headless Chromium, installed when missing)."""

import csv
import re
import shutil

import numpy as np
import pytest
from helpers import photo
from helpers.browser import ensure_chromium, pixels, render
from helpers.pages import Page

from batchsr.cli import main
from batchsr.config import HTML_NAME, REPORT_NAME

NASTY = "<img src=x onerror=\"document.title='pwned'\">.png"
MAGENTA = np.array([255, 0, 255])


def _blocks(size: int = 48, block: int = 12):
    """Magenta and green squares: colours nothing else on the page uses, kept exactly by the
    input panel (nearest neighbour) and inside the squares by bicubic."""
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    on = ((yy // block + xx // block) % 2).astype(bool)
    a = np.zeros((size, size, 3), np.uint8)
    a[on] = (255, 0, 255)
    a[~on] = (0, 255, 0)
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def chromium():
    return ensure_chromium()


@pytest.fixture(scope="module")
def run_out(tmp_path_factory, random_model_path):
    tmp = tmp_path_factory.mktemp("browser")
    src = tmp / "in"
    src.mkdir()
    _blocks().save(src / "blocks.png")
    photo(5, 60, 45).save(src / "photo.png")
    photo(6, 40, 40).save(src / NASTY)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp / "out"
    assert main([str(src), str(out), "--model", str(random_model_path), "--html", "--quiet"]) == 1
    return out


def _expected(out):
    """The summary numbers, computed here from the CSV independently of html_report."""
    with open(out / REPORT_NAME, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] not in ("ok", "skipped")]
    seconds = sum(float(r["seconds"]) for r in rows if r["seconds"] and r["status"] != "skipped")
    gains = [float(r["psnr_model"]) - float(r["psnr_bicubic"]) for r in ok if r["psnr_model"] and r["psnr_bicubic"]]
    return {
        "rows-count": str(len(rows)),
        "ok-count": str(len(ok)),
        "skipped-count": str(len(rows) - len(ok) - len(failed)),
        "failed-count": str(len(failed)),
        "total-seconds": f"{seconds:.1f} s",
        "throughput": f"{(len(ok) + len(failed)) / seconds:.2f} images/s",
        "mean-gain": f"{sum(gains) / len(gains):+.2f} dB",
    }


def _html_attrs(dom: str) -> dict[str, str]:
    tag = re.search(r"<html[^>]*>", dom).group(0)
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def _not_blank(shot: np.ndarray) -> None:
    assert shot.std() > 20, "the screenshot is (nearly) one colour"
    dark = (shot.max(axis=2) < 100).mean()
    assert dark > 0.003, "no text drawn"


def test_the_page_renders_with_the_csvs_numbers(chromium, run_out, tmp_path):
    shot = tmp_path / "wide.png"
    dom = render(chromium, run_out / HTML_NAME, tmp_path / "profile", 1280, 3000, shot)
    attrs = _html_attrs(dom)
    assert attrs["data-js"] == "on"
    # 2 ok figures x 4 pictures, all in the tall window: every one decoded, none broken
    assert attrs["data-images"] == attrs["data-images-loaded"] == "12"
    assert attrs["data-images-broken"] == "0" and int(attrs["data-images-eager-loaded"]) == 8
    page = Page(dom)
    for key, value in _expected(run_out).items():
        assert page.by_id[key] == value, key
    assert page.by_id["failed-count"] == "1" and "broken.jpg" in "".join(page.text)
    # the hostile file name is shown as text and ran nothing
    assert NASTY in "".join(page.text)
    assert page.tags.count("script") == 1 and "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    s = pixels(shot)
    _not_blank(s)
    magenta = (np.abs(s.astype(int) - MAGENTA).max(axis=2) < 16).sum()
    assert magenta > 20000, f"the blocks picture did not show ({magenta} magenta pixels)"


def test_a_narrow_window_needs_no_sideways_scrolling(chromium, run_out, tmp_path):
    shot = tmp_path / "narrow.png"
    dom = render(chromium, run_out / HTML_NAME, tmp_path / "profile", 390, 1600, shot)
    attrs = _html_attrs(dom)
    assert attrs["data-overflow-x"] == "no"
    assert attrs["data-images-eager-loaded"] == attrs["data-images-eager"] == "8"
    _not_blank(pixels(shot))


def test_readable_without_javascript(chromium, run_out, tmp_path):
    # The page's one inline script, removed: what a browser with JavaScript off shows.
    # (Chromium's own switch for that also stops --dump-dom, which runs as a script.)
    text = (run_out / HTML_NAME).read_text(encoding="utf-8")
    plain = run_out / "no-script-copy.html"  # beside the page, so the pictures resolve
    plain.write_text(re.sub(r"<script>.*?</script>", "", text, flags=re.S), encoding="utf-8")
    shot = tmp_path / "nojs.png"
    try:
        dom = render(chromium, plain, tmp_path / "profile", 1024, 2400, shot)
    finally:
        plain.unlink()
    assert "<script" not in dom and "data-js" not in _html_attrs(dom)
    page = Page(dom)
    for key, value in _expected(run_out).items():
        assert page.by_id[key] == value, key
    assert "photo.png" in "".join(page.text) and "<button" not in dom
    s = pixels(shot)
    _not_blank(s)
    assert (np.abs(s.astype(int) - MAGENTA).max(axis=2) < 16).sum() > 20000  # pictures need no script


def test_a_page_without_its_assets_says_so(chromium, run_out, tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(run_out / HTML_NAME, alone / HTML_NAME)
    dom = render(chromium, alone / HTML_NAME, tmp_path / "profile", 1280, 3000)
    attrs = _html_attrs(dom)
    assert int(attrs["data-images-broken"]) > 0 and attrs["data-images-loaded"] == "0"
    banner = re.search(r'<p id="broken"[^>]*>', dom).group(0)
    assert "hidden" not in banner
