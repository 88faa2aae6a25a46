"""The before/after page built from a CSV and the files it names (no model, no browser)."""

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import photo
from helpers.pages import Page, write_run
from PIL import Image

from batchsr import html_report
from batchsr.config import ASSETS_NAME, HTML_NAME, REPORT_NAME
from batchsr.discover import Job, discover
from batchsr.html_report import figures, stats
from batchsr.report import CsvReport, Row

SPECS = [
    ("a.png", "ok", 1.25),
    ("b.png", "ok", -0.5),
    ("c.png", "ok", 0.75),
    ("broken.jpg", "error", None),
    ("d.png", "ok", None),
    ("old.png", "skipped", None),
]


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "out"
    rows = write_run(out, tmp_path / "in", SPECS)
    return out, rows


def test_summary_numbers_are_the_csvs(run_dir):
    out, rows = run_dir
    page = Page(html_report.build(out).read_text(encoding="utf-8"))
    ok = [r for r in rows if r.status == "ok"]
    gains = [1.25, -0.5, 0.75]
    seconds = sum(r.seconds for r in rows if r.status != "skipped")
    assert page.by_id["rows-count"] == "6"
    assert (page.by_id["ok-count"], page.by_id["skipped-count"], page.by_id["failed-count"]) == ("4", "1", "1")
    assert page.by_id["mean-gain"] == f"{sum(gains) / 3:+.2f} dB" == "+0.50 dB"
    assert page.by_id["total-seconds"] == f"{seconds:.1f} s"
    assert page.by_id["throughput"] == f"{5 / seconds:.2f} images/s"
    assert page.by_id["mean-seconds"] == f"{seconds / 5:.2f} s"
    assert page.by_id["worse-count"] == "1"
    assert page.by_id["model"] == "test x3" and page.by_id["providers"] == "CPUExecutionProvider"
    assert len(ok) == 4


def test_every_failure_is_listed_with_its_reason(run_dir):
    out, _ = run_dir
    text = html_report.build(out).read_text(encoding="utf-8")
    failures = text[text.index('id="h-failures"') : text.index('id="figures"')]
    assert "broken.jpg" in failures and "not an image Pillow can read" in failures
    assert "a.png" not in failures


def test_figures_show_crops_of_input_bicubic_and_output(run_dir):
    out, rows = run_dir
    page_path = html_report.build(out)
    page = Page(page_path.read_text(encoding="utf-8"))
    srcs = [i["src"] for i in page.imgs]
    # 4 ok images, each: whole, input, bicubic, batchsr; failures and skipped rows have none
    assert len(srcs) == 16 and all(s.startswith(ASSETS_NAME + "/") for s in srcs)
    assert all(i["alt"].strip() for i in page.imgs)
    for s in srcs:
        assert (out / s).is_file(), s
    first = [i for i in page.imgs if "f001" in i["src"]]
    kinds = {i["src"].rsplit("-", 1)[1].split(".")[0]: i for i in first}
    assert set(kinds) == {"whole", "input", "bicubic", "batchsr"}
    # the first figure is the largest gain, a.png (40x30): a 40x30 region, zoomed x6 / x2
    assert "a.png" in kinds["input"]["alt"]
    assert (int(kinds["input"]["width"]), int(kinds["input"]["height"])) == (240, 180)
    assert (int(kinds["batchsr"]["width"]), int(kinds["batchsr"]["height"])) == (240, 180)
    inp = Image.open(out / kinds["input"]["src"])
    src = Image.open(rows[0].input)
    # nearest-neighbour zoom: every 6x6 block is one input pixel
    assert np.array_equal(np.asarray(inp)[::6, ::6], np.asarray(src))
    assert "loading" not in kinds["input"]  # the first figures load at once
    assert "28.00 dB" in "".join(page.text) and "29.25 dB, +1.25 dB" in "".join(page.text)


def test_file_names_stay_text(tmp_path):
    nasty = ['<img src=x onerror="document.title=1">.png', "a<script>alert(1)<b.png", 'x&amp;y".png']
    out = tmp_path / "out"
    write_run(out, tmp_path / "in", [(n, "ok", 0.5) for n in nasty[:2]] + [(nasty[2], "error", None)])
    text = html_report.build(out).read_text(encoding="utf-8")
    page = Page(text)
    assert page.tags.count("script") == 1  # only the page's own
    assert all(i["src"].startswith(ASSETS_NAME) for i in page.imgs)  # no img from a name
    shown = "".join(page.text)
    for n in nasty:
        assert n in shown
    assert "&lt;script&gt;alert(1)" in text and "x&amp;amp;y&quot;.png" in text
    # the links to the outputs are URL-encoded relative paths
    assert any(link.startswith("%3Cimg%20src%3Dx") for link in page.links)


def test_stats_and_histogram():
    rows = [
        Row(input=f"{i}", psnr_bicubic=30.0, psnr_model=30.0 + g, seconds=0.5, width=10, height=10)
        for i, g in enumerate([0.0, 0.1, 0.1, 0.35, 2.0, -0.3])
    ]
    rows.append(Row(input="x", status="error", error="boom", seconds=1.0))
    st = stats.run_stats(rows)
    assert (st.ok, st.failed, st.skipped, st.processed) == (6, 1, 0, 7)
    assert st.seconds == pytest.approx(4.0) and st.images_per_second == pytest.approx(7 / 4)
    assert st.mean_gain == pytest.approx(2.25 / 6)
    bins = stats.histogram(st.gains)
    assert sum(c for _, _, c in bins) == 6
    width = bins[0][1] - bins[0][0]
    assert width in (0.1, 0.2, 0.25, 0.5) and bins[0][0] <= -0.3 and bins[-1][1] > 2.0
    for g in st.gains:
        (hit,) = [b for b in bins if b[0] - 1e-9 <= g < b[1] - 1e-9]
        assert hit[2] >= 1
    assert stats.histogram([]) == []
    assert [c for _, _, c in stats.histogram([0.5, 0.5])] == [2]


def test_sample_is_bounded_deterministic_and_never_a_failure():
    rows = []
    for i in range(300):
        status = "error" if i % 10 == 0 else "skipped" if i % 10 == 1 else "ok"
        gain = None if i % 10 == 2 else math.sin(i) * 2
        rows.append(
            Row(input=f"{i}.png", status=status, psnr_bicubic=30.0, psnr_model=None if gain is None else 30.0 + gain)
        )
    picks = stats.choose_sample(rows, 24, seed=0)
    assert len(picks) == 24 and len({p.number for p in picks}) == 24
    assert all(p.row.status == "ok" and rows[p.number - 1] is p.row for p in picks)
    gains = sorted((r.gain for r in rows if r.status == "ok" and r.gain is not None), reverse=True)
    assert [p.row.gain for p in picks if p.why == "largest gain"] == gains[:8]
    assert [p.row.gain for p in picks if p.why == "smallest gain"] == sorted(gains)[:8]
    assert len([p for p in picks if p.why == "random pick"]) == 8
    assert stats.choose_sample(rows, 24, seed=0) == picks
    assert stats.choose_sample(rows, 24, seed=1) != picks
    assert stats.choose_sample(rows, 0) == []
    few = stats.choose_sample(rows[:5], 24)
    assert [p.number for p in few] == [4, 5, 3]  # every ok row, largest gain first, unmeasured last
    assert {p.why for p in few} == {"every image"}


def test_crop_box_is_the_centre_and_stays_inside():
    assert figures.crop_box(100, 80, 48) == (26, 16, 74, 64)
    assert figures.crop_box(20, 10, 48) == (0, 0, 20, 10)
    assert figures.crop_box(100, 80, 48, (1.0, 0.0)) == (52, 0, 100, 48)


def test_bicubic_region_is_the_region_of_the_whole_bicubic():
    lr = photo(3, 61, 47)
    box = figures.crop_box(61, 47, 20, (0.3, 0.6))
    whole = np.asarray(lr.resize((61 * 3, 47 * 3), Image.BICUBIC).crop(tuple(v * 3 for v in box)), np.int16)
    part = np.asarray(figures.bicubic_region(lr, box, 3), np.int16)
    assert part.shape == whole.shape and np.abs(part - whole).max() <= 1


def test_other_modes_draw(tmp_path):
    out = tmp_path / "out"
    rows = write_run(out, tmp_path / "in", [("grey16.png", "ok", 0.3), ("alpha.png", "ok", 0.2)])
    ramp = np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50
    Image.fromarray(ramp).save(rows[0].input)  # 16-bit grey input
    rgba = np.asarray(photo(9, 40, 30).convert("RGBA")).copy()
    rgba[..., 3] = 128
    Image.fromarray(rgba).save(rows[1].input)
    text = html_report.build(out).read_text(encoding="utf-8")
    assert "could not draw" not in text
    build = next((out / ASSETS_NAME).iterdir())
    g = np.asarray(Image.open(build / "f001-input.png"))  # figure order: largest gain first
    assert g.ndim == 2 and g.max() > 200  # 16-bit scaled to 8 bits, not clipped or truncated
    assert Image.open(build / "f002-input.png").mode == "RGBA"


def test_missing_and_undecodable_files_become_notes(run_dir):
    out, rows = run_dir
    os.remove(rows[0].output)
    Path(rows[1].input).write_bytes(b"garbage")
    Path(rows[1].output).write_bytes(b"garbage")
    text = html_report.build(out).read_text(encoding="utf-8")
    assert "the output file is missing" in text
    assert "could not draw this image" in text
    assert text.count('<figure class="pair"') == 4


def test_rebuild_replaces_the_assets_and_writes_only_inside_output(run_dir, tmp_path):
    out, _ = run_dir
    before = sorted(p for p in tmp_path.rglob("*") if out not in p.parents and p != out)
    html_report.build(out)
    html_report.build(out, sample=2)
    builds = list((out / ASSETS_NAME).iterdir())
    assert len(builds) == 1  # the first build's folder is gone
    page = Page((out / HTML_NAME).read_text(encoding="utf-8"))
    assert len(page.imgs) == 8 and all((out / i["src"]).is_file() for i in page.imgs)
    after = sorted(p for p in tmp_path.rglob("*") if out not in p.parents and p != out)
    assert before == after
    assert not [p for p in out.rglob("*") if "tmp" in p.name]


def test_a_moved_output_folder_still_finds_its_files(run_dir, tmp_path):
    out, _ = run_dir
    moved = tmp_path / "elsewhere" / "restored"
    moved.parent.mkdir()
    out.rename(moved)
    text = html_report.build(moved).read_text(encoding="utf-8")
    page = Page(text)
    assert "the output file is missing" not in text
    assert len(page.imgs) == 16
    # table links point inside the moved folder, relative to the page
    assert "a.png" in page.links and all((moved / link).is_file() for link in page.links if link.endswith("png"))


def test_20000_rows_make_a_small_page_and_decode_only_the_sample(tmp_path, monkeypatch):
    out = tmp_path / "out"
    one = write_run(out, tmp_path / "in", [("one.png", "ok", 0.5)])[0]
    opened = []
    real_open = Image.open
    monkeypatch.setattr(figures.Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    with CsvReport(out / REPORT_NAME) as report:
        for i in range(20000):
            failed = i % 100 == 7
            # every row names the same real files, so any image the builder opens is counted
            report.write(
                Row(
                    input=one.input,
                    output="" if failed else one.output,
                    status="error" if failed else "ok",
                    error="corrupt or truncated image: broken data stream" if failed else "",
                    width=40,
                    height=30,
                    out_width=120,
                    out_height=90,
                    scale=3,
                    model="fast x3",
                    seconds=0.2,
                    psnr_bicubic=28.0,
                    psnr_model=28.0 + (i % 37) / 20,
                    providers="CPUExecutionProvider",
                    notes=f"folder{i // 1000}/scan_{i:05d}.jpg",
                )
            )
    page = html_report.build(out)
    assert len(opened) == 2 * html_report.DEFAULT_HTML_SAMPLE  # input and output of each figure
    size = page.stat().st_size
    assert size < 200_000, size  # 200 failures listed + 24 figures; no 20,000-row table
    parsed = Page(page.read_text(encoding="utf-8"))
    assert parsed.by_id["ok-count"] == "19800" and parsed.by_id["failed-count"] == "200"
    build = next((out / ASSETS_NAME).iterdir())
    tables = sorted(build.glob("table-*.html"))
    assert len(tables) == 40
    assert max(t.stat().st_size for t in tables) < 250_000
    assert sum(p.endswith(".html") for p in parsed.links) == 40
    last = Page(tables[-1].read_text(encoding="utf-8"))
    assert "scan_19999.jpg" in "".join(last.text) and "../../" + HTML_NAME in last.links


def test_previous_output_as_input_skips_the_report_assets(run_dir, tmp_path):
    out, _ = run_dir
    html_report.build(out)
    jobs = [j for j in discover(out, tmp_path / "again") if isinstance(j, Job)]
    assert jobs and not [j for j in jobs if ASSETS_NAME in j.src.parts]


def test_no_csv_is_a_report_error(tmp_path):
    with pytest.raises(html_report.ReportError, match="no report at"):
        html_report.build(tmp_path)
    with pytest.raises(html_report.ReportError, match="not a folder"):
        html_report.build(tmp_path / "nope")


def test_the_page_needs_nothing_from_the_network(run_dir):
    out, _ = run_dir
    text = html_report.build(out).read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "@import" not in text and "url(" not in text


def test_each_figure_names_its_model_and_the_damage_estimates(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(0, 60, 48).save(inp / "scan.jpg", quality=70)
    photo(1, 60, 48).save(inp / "clean.png")
    _, rows = run_folder(inp, tmp_path / "out", random_model, psnr=True)
    page = Page(html_report.build(tmp_path / "out").read_text(encoding="utf-8"))
    text = " ".join(page.text)
    q = float(rows["scan.jpg"]["jpeg_quality"])
    sigma = float(rows["clean.png"]["noise_sigma"])
    assert f"model {random_model.label}; JPEG quality {q:.0f}; noise σ" in text
    assert f"model {random_model.label}; noise σ {sigma:.1f} levels" in text  # a PNG has no JPEG quality
