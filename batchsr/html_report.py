"""The before/after page: a run's CSV report and the files it names -> OUTPUT/batchsr-report.html.

The page is built only from the CSV and the image files its rows name, so
``batchsr report OUTPUT`` can rebuild it at any time. Everything it writes
stays inside OUTPUT::

    batchsr-report.html                 summary, failures, figures, the table (or links to its pages)
    batchsr-report-assets/<build>/      zoomed crops, thumbnails and table pages of one build

It works offline and without JavaScript: no external scripts, fonts or
stylesheets. A small inline script adds sorting to the tables and records on
the ``<html>`` element how many pictures loaded (``data-images-*``), which the
page uses to warn when its assets folder is missing and automated checks read.

Only the sampled images (``sample``, default 24) are decoded, so the cost of
building the page does not grow with the number of images; the full table is
split into pages of :data:`PAGE_ROWS` rows so no page grows with it either.
Writes are atomic: the assets of a build go to a temporary folder that is
renamed when complete, then the page replaces the previous one by a rename,
then older builds' assets are removed.
"""

from __future__ import annotations

import html
import math
import os
import random
import re
import shutil
import statistics
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from batchsr.config import ASSETS_NAME, DEFAULT_HTML_SAMPLE, HTML_NAME, REPORT_NAME
from batchsr.decode import upright
from batchsr.estimate import Damage, DamageRule
from batchsr.isolation import own_pixel_limit, umask, warnings_into
from batchsr.report import ERROR, OK, SKIPPED, Row, Summary, read_report

PAGE_ROWS = 500  # rows per table page: about 150 KB of HTML
CROP = 48  # side of the zoomed region, in input pixels
PANEL = 288  # target side of each zoomed panel, in screen pixels
THUMB = 240  # longest side of the whole-image thumbnail
EAGER_FIGURES = 2  # the first figures load at once; the rest when scrolled to
MAX_DRAW_PIXELS = 1 << 28  # larger files are listed but not decoded for a figure
_BUILD_RE = re.compile(r"^b\d{8}-\d{6}-[0-9a-f]{6}$")
_TMP_PREFIX = ".tmp-"
_STALE_TMP_SECONDS = 3600  # a temporary build folder this old belongs to a crashed build


class ReportError(Exception):
    """The page cannot be built (no CSV, not a batchsr CSV, ...); the message is one line."""


# ---------------------------------------------------------------- numbers


@dataclass(frozen=True)
class Stats:
    """The run's summary as the CSV tells it."""

    rows: int
    ok: int
    skipped: int
    failed: int
    seconds: float  # sum of per-image times: the CSV does not record the run's wall clock
    median_seconds: float | None  # over ok images
    gains: tuple[float, ...]  # finite PSNR gains over bicubic of ok images, in CSV order
    models: tuple[tuple[str, int], ...]  # (model, images), most used first
    providers: tuple[tuple[str, int], ...]
    in_pixels: int  # input pixels of ok images
    estimated: int = 0  # images with damage estimates in the CSV (skipped ones included)
    damaged: int = 0  # ... that estimate.DamageRule judges damaged

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.processed if self.processed and self.seconds > 0 else None

    @property
    def images_per_second(self) -> float | None:
        return self.processed / self.seconds if self.processed and self.seconds > 0 else None

    @property
    def megapixels_per_second(self) -> float | None:
        return self.in_pixels / 1e6 / self.seconds if self.in_pixels and self.seconds > 0 else None

    @property
    def mean_gain(self) -> float | None:
        return sum(self.gains) / len(self.gains) if self.gains else None


def run_stats(rows: list[Row]) -> Stats:
    """Counts, times and gains of a report's rows (the same rules as the CLI's summary line)."""
    summary = Summary()
    for r in rows:
        summary.add(r)
    seconds = sum(r.seconds for r in rows if r.seconds is not None and r.status != SKIPPED)
    ok_seconds = [r.seconds for r in rows if r.status == OK and r.seconds is not None]
    models = Counter(r.model for r in rows if r.model and r.status != SKIPPED)
    providers = Counter(r.providers for r in rows if r.providers and r.status != SKIPPED)
    pixels = sum(r.width * r.height for r in rows if r.status == OK and r.width and r.height)
    estimated = [r for r in rows if r.status != ERROR and (r.jpeg_quality is not None or r.noise_sigma is not None)]
    rule = DamageRule()
    damaged = sum(rule.seen(Damage(r.jpeg_quality, _nan(r.noise_sigma))) is not None for r in estimated)
    return Stats(
        len(rows),
        summary.ok,
        summary.skipped,
        summary.failed,
        seconds,
        statistics.median(ok_seconds) if ok_seconds else None,
        tuple(summary.gains or ()),
        tuple(models.most_common()),
        tuple(providers.most_common()),
        pixels,
        len(estimated),
        damaged,
    )


def _nan(v: float | None) -> float:
    return math.nan if v is None else v


_NICE_WIDTHS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)


def histogram(values: list[float] | tuple[float, ...], target_bins: int = 16) -> list[tuple[float, float, int]]:
    """``(low, high, count)`` bins of a round width (0.1, 0.2, 0.25, 0.5 dB, ...) covering every value.

    A value on an edge counts in the bin above it; the counts sum to ``len(values)``.
    """
    if not values:
        return []
    lo, hi = min(values), max(values)
    span = hi - lo
    width = next((w for w in _NICE_WIDTHS if w * target_bins >= span), span / target_bins)
    start = math.floor(lo / width) * width
    n = max(1, math.floor((hi - start) / width + 1e-9) + 1)
    counts = [0] * n
    for v in values:
        counts[min(n - 1, max(0, math.floor((v - start) / width + 1e-9)))] += 1
    return [(start + i * width, start + (i + 1) * width, c) for i, c in enumerate(counts)]


# ---------------------------------------------------------------- the sample


@dataclass(frozen=True)
class Pick:
    """A row chosen for a figure: its 1-based position in the CSV and why it was chosen."""

    number: int
    row: Row
    why: str  # "every image", "largest gain", "smallest gain" or "random pick"


GROUPS = (
    ("every image", "Every ok image, largest gain first"),
    ("largest gain", "Largest gains over bicubic"),
    ("smallest gain", "Smallest gains (and losses)"),
    ("random pick", "Random picks"),
)


def _largest_first(t: tuple[float, int]) -> tuple[float, int]:
    return -t[0], t[1]


def choose_sample(rows: list[Row], n: int, seed: int = 0) -> list[Pick]:
    """Up to ``n`` ok rows, deterministically: a third the largest gains, a third the smallest,
    the rest a seeded random few of the others (rows without a gain included).

    When ``n`` covers every ok row, all are picked ("every image"), largest
    gain first. Failures and skipped rows are never picked (they have no
    pixels to show; the page lists the failures on their own). Within a
    group, the order is by gain (largest first, smallest first) or by CSV position.
    """
    if n <= 0:
        return []
    ok = [(i + 1, r) for i, r in enumerate(rows) if r.status == OK]
    measured = sorted(((r.gain, i) for i, r in ok if r.gain is not None), key=lambda t: (t[0], t[1]))
    by_number = dict(ok)
    if len(ok) <= n:
        unmeasured = [i for i, r in ok if r.gain is None]
        return [Pick(i, by_number[i], "every image") for _, i in sorted(measured, key=_largest_first)] + [
            Pick(i, by_number[i], "every image") for i in unmeasured
        ]
    n_best = min(-(-n // 3), len(measured))
    n_worst = min(-(-(n - n_best) // 2), len(measured) - n_best)
    best = [i for _, i in sorted(measured[len(measured) - n_best :], key=_largest_first)] if n_best else []
    worst = [i for _, i in measured[:n_worst]]
    chosen = set(best) | set(worst)
    rest = [i for i, _ in ok if i not in chosen]
    n_random = min(n - len(chosen), len(rest))
    randoms = sorted(random.Random(seed).sample(rest, n_random))
    return (
        [Pick(i, by_number[i], "largest gain") for i in best]
        + [Pick(i, by_number[i], "smallest gain") for i in worst]
        + [Pick(i, by_number[i], "random pick") for i in randoms]
    )


# ---------------------------------------------------------------- finding the files


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


class OutputMap:
    """Maps the output paths recorded in the CSV to files under OUTPUT now.

    The CSV records outputs as the run saw them (relative to the folder the
    run started in, or absolute); the folder may since have moved. One
    recorded path is matched by its longest suffix that exists under OUTPUT,
    and the same prefix swap is applied to the others without touching the
    disk, so building the table of 20,000 rows costs no file lookups.
    """

    def __init__(self, output_root: Path, rows: list[Row], tries: int = 50):
        self.root = Path(output_root)
        self.prefix: tuple[str, ...] | None = None
        for r in [r for r in rows if r.status == OK and r.output][:tries]:
            parts = Path(r.output).parts
            for i in range(len(parts)):
                tail = parts[i:]
                if ".." in tail or Path(*tail).is_absolute():
                    continue
                if self.root.joinpath(*tail).is_file():
                    self.prefix = parts[:i]
                    return

    def __call__(self, recorded: str) -> Path | None:
        """The file a recorded output path names now (not checked to exist), or None."""
        if not recorded or self.prefix is None:
            return None
        parts = Path(recorded).parts
        k = len(self.prefix)
        if parts[:k] != self.prefix or len(parts) == k or ".." in parts[k:]:
            return None
        return self.root.joinpath(*parts[k:])


def _href(target: Path, page_dir: Path) -> str:
    """A URL from a page in ``page_dir`` to ``target`` that survives moving OUTPUT as a whole."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    except ValueError:  # another drive (Windows): only an absolute file URL can reach it
        return Path(os.path.abspath(target)).as_uri()
    return urllib.parse.quote(Path(rel).as_posix(), safe="/")


# ---------------------------------------------------------------- pictures


def _open_upright(path: Path) -> Image.Image:
    """Decode ``path`` the way the runner saw it: EXIF orientation applied."""
    # Our own bound below replaces Pillow's, as in decode.load, without touching its global.
    with own_pixel_limit(), warnings_into([]), Image.open(path) as im:
        if im.width * im.height > MAX_DRAW_PIXELS:
            raise ValueError(f"{im.width}x{im.height} is too large to draw")
        im.load()
        return upright(im)


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any mode -> L, LA, RGB or RGBA with 8 bits, through the runner's own mode handling."""
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    from batchsr import decode, encode

    pixels, _ = decode.to_array(im, [])
    return encode.to_pillow(pixels, 8, "PNG")


def crop_box(
    width: int, height: int, size: int = CROP, focus: tuple[float, float] = (0.5, 0.5)
) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) region of at most ``size`` x ``size`` pixels centred on
    ``focus`` (fractions of width and height), moved inside the image."""
    cw, ch = min(size, width), min(size, height)
    x0 = min(max(0, round(focus[0] * width - cw / 2)), width - cw)
    y0 = min(max(0, round(focus[1] * height - ch / 2)), height - ch)
    return x0, y0, x0 + cw, y0 + ch


def bicubic_region(lr: Image.Image, box: tuple[int, int, int, int], scale: int) -> Image.Image:
    """The pixels ``box`` of ``lr`` upscaled ``scale`` times with Pillow's bicubic filter,
    equal to the same region of the whole image upscaled (the filter sees past the box edges)."""
    margin = 4  # bicubic reads 2 input pixels each side when enlarging
    x0, y0, x1, y1 = box
    ex = (max(0, x0 - margin), max(0, y0 - margin), min(lr.width, x1 + margin), min(lr.height, y1 + margin))
    part = _to_8bit(lr.crop(ex))
    inner = (x0 - ex[0], y0 - ex[1], x1 - ex[0], y1 - ex[1])
    return part.resize(((x1 - x0) * scale, (y1 - y0) * scale), Image.BICUBIC, box=inner)


def _zoom(im: Image.Image, factor: int) -> Image.Image:
    # nearest neighbour, so every pixel stays a visible square
    return im if factor == 1 else im.resize((im.width * factor, im.height * factor), Image.NEAREST)


def _thumbnail(im: Image.Image, box: tuple[int, int, int, int] | None) -> Image.Image:
    if im.mode in ("P", "PA", "1"):
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    f = min(1.0, THUMB / max(im.width, im.height))
    size = (max(1, round(im.width * f)), max(1, round(im.height * f)))
    t = _to_8bit(im.resize(size, Image.LANCZOS, reducing_gap=3.0))
    t = t.convert("RGBA" if "A" in t.mode else "RGB")
    if box is not None:
        x0, y0, x1, y1 = (round(v * f) for v in box)
        d = ImageDraw.Draw(t)
        d.rectangle((x0 - 2, y0 - 2, x1 + 1, y1 + 1), outline=(0, 0, 0))
        d.rectangle((x0 - 1, y0 - 1, x1, y1), outline=(255, 200, 0))
    return t


@dataclass
class Panel:
    file: str  # name inside the build folder
    alt: str
    caption: str
    width: int
    height: int


@dataclass
class Figure:
    pick: Pick
    output: Path | None
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "not measured"
    return "identical (∞ dB)" if math.isinf(v) else f"{v:.2f} dB"


def draw_figure(
    pick: Pick,
    number: int,
    output: Path | None,
    folder: Path,
    crop: int = CROP,
    focus: tuple[float, float] = (0.5, 0.5),
) -> Figure:
    """Write the figure's pictures into ``folder`` as ``fNNN-*.png``: the whole output with the
    region outlined, the region of the input, of the input upscaled by bicubic and of the output.

    Never raises for a bad or missing file: the figure then carries a note instead.
    """
    row = pick.row
    fig = Figure(pick, output if output is not None and output.is_file() else None)
    name = row.input
    src = Path(row.input) if row.input else None
    lr = out = None
    try:
        if src is not None and src.is_file():
            lr = _open_upright(src)
        else:
            fig.notes.append(
                "the input is not where the CSV says (paths are relative to the folder "
                "the run started in), so the input and bicubic panels are missing"
            )
        if fig.output is not None:
            out = _open_upright(fig.output)
        else:
            fig.notes.append("the output file is missing")
        if lr is None and out is None:
            return fig
        s = row.scale or (round(out.width / lr.width) if out is not None and lr is not None else 1) or 1
        lw, lh = (lr.width, lr.height) if lr is not None else (out.width // s, out.height // s)
        box = crop_box(lw, lh, crop, focus)
        cw, ch = box[2] - box[0], box[3] - box[1]
        z_out = max(1, PANEL // (max(cw, ch) * s))
        z_in = z_out * s
        hr_box = tuple(v * s for v in box)
        stem = f"f{number:03d}"
        where = f"{cw}×{ch} pixels at ({box[0]}, {box[1]})"

        def save(im: Image.Image, kind: str, alt: str, caption: str, fmt: str = "PNG") -> None:
            fname = f"{stem}-{kind}.{'jpg' if fmt == 'JPEG' else 'png'}"
            im.save(folder / fname, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
            fig.panels.append(Panel(fname, alt, caption, im.width, im.height))

        whole = out if out is not None else lr
        wbox = hr_box if out is not None else box
        t = _thumbnail(whole, wbox)
        save(
            t,
            "whole",
            f"{name}: the whole {'output' if out is not None else 'input'} image, "
            f"{whole.width}×{whole.height}, with the zoomed region outlined",
            f"whole {'output' if out is not None else 'input'}, {whole.width}×{whole.height}",
            "JPEG" if t.mode == "RGB" else "PNG",
        )
        if lr is not None:
            save(
                _zoom(_to_8bit(lr.crop(box)), z_in),
                "input",
                f"{name}: input, {where}, each pixel enlarged {z_in} times",
                f"input {lw}×{lh}: {where}, shown {z_in}×",
            )
            save(
                _zoom(bicubic_region(lr, box, s), z_out),
                "bicubic",
                f"{name}: the same region upscaled {s} times by bicubic, enlarged {z_out} times",
                f"bicubic ×{s}: {_fmt_db(row.psnr_bicubic)}",
            )
        if out is not None:
            if (out.width, out.height) != (lw * s, lh * s):
                fig.notes.append(f"the output is {out.width}×{out.height}, not {lw * s}×{lh * s}")
            gain = row.gain
            g = f", {gain:+.2f} dB" if gain is not None else ""
            save(
                _zoom(_to_8bit(out.crop(hr_box)), z_out),
                "batchsr",
                f"{name}: the same region upscaled {s} times by batchsr, enlarged {z_out} times",
                f"batchsr ×{s}: {_fmt_db(row.psnr_model)}{g}",
            )
    except Exception as exc:  # one unreadable file must not cost the whole page
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fig.notes.append(f"could not draw this image: {msg}")
    finally:
        for im in (lr, out):
            if im is not None:
                im.close()
    return fig


# ---------------------------------------------------------------- HTML

_CSS = """
*{box-sizing:border-box}
body{font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1a1a1a;
background:#fff;margin:0 auto;max-width:76rem;padding:1rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.3rem;border-bottom:1px solid #ccc;margin-top:2rem}
h3{font-size:1.1rem}h4{font-size:1rem;margin:0;word-break:break-all}
a{color:#0b57a4}.muted{color:#555}.bad{color:#b3261e}.good{color:#1b6b35}
dl.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5rem,1fr));gap:.5rem;margin:0}
.cards div{border:1px solid #ccc;border-radius:6px;padding:.4rem .7rem}
.cards dt{font-size:.85rem;color:#555}.cards dd{margin:0;font-size:1.35rem;font-weight:600}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88rem}
th,td{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.name{word-break:break-all;min-width:10rem}
th button{font:inherit;font-weight:700;border:0;background:none;padding:0;cursor:pointer;color:#0b57a4}
th[aria-sort=ascending] button::after{content:" ▲"}th[aria-sort=descending] button::after{content:" ▼"}
svg.hist{width:100%;max-width:44rem;height:auto;display:block}
.hist text{font-size:13px;fill:#333}
figure.pair{margin:1.2rem 0;padding-top:.8rem;border-top:1px solid #ccc}
.panels{display:flex;flex-wrap:wrap;gap:.8rem;margin-top:.5rem}
.panels figure{margin:0;max-width:100%}
.panels img{display:block;max-width:100%;height:auto;background:#999;image-rendering:pixelated}
.panels img.whole{image-rendering:auto}
.panels figcaption{font-size:.85rem;max-width:18rem}
.banner{background:#fde7e9;border:1px solid #b3261e;padding:.5rem .8rem}
nav.pages ol{display:flex;flex-wrap:wrap;gap:.3rem .9rem;padding-left:1.2rem}
"""

# Progressive enhancement only: without it every number and picture is still there.
_JS = """
(function(){
var d=document.documentElement;d.setAttribute('data-js','on');
function key(c){var v=c.getAttribute('data-v');return v===null?c.textContent.trim():v}
function sortBy(t,i,th){
 var asc=th.getAttribute('aria-sort')!=='ascending',num=th.classList.contains('n'),hs=t.tHead.rows[0].cells;
 for(var k=0;k<hs.length;k++)hs[k].setAttribute('aria-sort','none');
 th.setAttribute('aria-sort',asc?'ascending':'descending');
 var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
 rows.sort(function(p,q){var x=key(p.cells[i]),y=key(q.cells[i]);
  if(num){x=x===''?NaN:+x;y=y===''?NaN:+y;if(isNaN(x))return isNaN(y)?0:1;if(isNaN(y))return -1;
   return asc?x-y:y-x}
  return asc?x.localeCompare(y):y.localeCompare(x)});
 rows.forEach(function(r){b.appendChild(r)})}
Array.prototype.forEach.call(document.querySelectorAll('table[data-sortable]'),function(t){
 Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
  var bt=document.createElement('button');bt.type='button';bt.textContent=th.textContent;
  bt.title='sort by '+th.textContent;th.textContent='';th.appendChild(bt);th.setAttribute('aria-sort','none');
  bt.addEventListener('click',function(){sortBy(t,i,th)})})});
function check(){
 var im=document.images,ok=0,bad=0,eager=0,eagerOk=0;
 for(var k=0;k<im.length;k++){var good=im[k].complete&&im[k].naturalWidth>0;
  if(good)ok++;else if(im[k].complete)bad++;
  if(im[k].loading!=='lazy'){eager++;if(good)eagerOk++}}
 d.setAttribute('data-images',im.length);d.setAttribute('data-images-loaded',ok);
 d.setAttribute('data-images-broken',bad);d.setAttribute('data-images-eager',eager);
 d.setAttribute('data-images-eager-loaded',eagerOk);
 d.setAttribute('data-overflow-x',d.scrollWidth>d.clientWidth?'yes':'no');
 var w=document.getElementById('broken');
 if(w&&bad){w.hidden=false;w.querySelector('span').textContent=bad}}
window.addEventListener('load',check);
document.addEventListener('error',function(e){if(e.target.tagName==='IMG')check()},true);
})();
"""


def esc(text) -> str:
    """Text (a file name, an error message, ...) as HTML that shows it and runs nothing."""
    return html.escape(str(text), quote=True)


def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "–" if v is None else f"{v:{spec}}{unit}"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="batchsr"><title>{esc(title)}</title>'
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n<script>{_JS}</script>\n</body></html>\n"
    )


def _summary_html(st: Stats) -> str:
    cards = [
        ("images", "rows-count", str(st.rows)),
        ("ok", "ok-count", str(st.ok)),
        ("skipped", "skipped-count", str(st.skipped)),
        ("failed", "failed-count", str(st.failed)),
        ("processing time", "total-seconds", f"{st.seconds:.1f} s"),
        ("per image (mean)", "mean-seconds", _fmt(st.mean_seconds, ".2f", " s")),
        ("per image (median)", "median-seconds", _fmt(st.median_seconds, ".2f", " s")),
        ("throughput", "throughput", _fmt(st.images_per_second, ".2f", " images/s")),
        ("input megapixels/s", "megapixels", _fmt(st.megapixels_per_second, ".2f")),
        ("mean PSNR gain", "mean-gain", _fmt(st.mean_gain, "+.2f", " dB")),
    ]
    dl = "".join(f'<div><dt>{esc(k)}</dt><dd id="{i}">{esc(v)}</dd></div>' for k, i, v in cards)
    models = ", ".join(f"{esc(m)} ({n})" if len(st.models) > 1 else esc(m) for m, n in st.models) or "–"
    providers = ", ".join(f"{esc(p)} ({n})" if len(st.providers) > 1 else esc(p) for p, n in st.providers) or "–"
    rule = DamageRule()
    damage = (
        f'<p>Damage: <strong id="damaged">{st.damaged} of {st.estimated}</strong> images with estimates '
        f"judged damaged (JPEG quality at most {rule.max_jpeg_quality:.0f}, or noise of "
        f"{rule.min_noise_sigma:g} levels or more: <code>--model auto</code> runs <code>photo</code> on "
        f"them, <code>default</code> on the others).</p>"
        if st.estimated
        else ""
    )
    return (
        f'<dl class="cards">{dl}</dl>\n'
        f'<p>Model: <strong id="model">{models}</strong>; providers: <span id="providers">'
        f"{providers}</span>. Times are the sums of the per-image times in the CSV "
        f"(throughput counts ok and failed images).</p>{damage}"
    )


def _gain_html(st: Stats) -> str:
    if not st.gains:
        return "<p>No PSNR was measured (the run used --no-psnr, or every image was too small for the experiment).</p>"
    g = sorted(st.gains)
    worse = sum(1 for v in g if v < 0)
    text = (
        f"<p>Over {len(g)} of {st.ok} ok images: mean <strong>{st.mean_gain:+.2f} dB</strong>, "
        f"median {statistics.median(g):+.2f} dB, from {g[0]:+.2f} to {g[-1]:+.2f} dB; "
        f'<span class="{"bad" if worse else "good"}" id="worse-count">{worse}</span> '
        f"{'image' if worse == 1 else 'images'} worse than bicubic.</p>\n"
    )
    bins = histogram(g)
    w, h, left, bottom, top = 640, 170, 40, 34, 12
    plot_w, plot_h = w - left - 10, h - bottom - top
    peak = max(c for _, _, c in bins)
    bw = plot_w / len(bins)
    lo, hi = bins[0][0], bins[-1][1]
    x_of = lambda v: left + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#333"/>',
        f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (a, b, c) in enumerate(bins):
        bh = c / peak * plot_h
        colour = "#b3261e" if b <= 0 else "#3b6ea8"
        parts.append(
            f'<rect x="{left + i * bw + 1:.1f}" y="{top + plot_h - bh:.1f}" '
            f'width="{max(bw - 2, 1):.1f}" height="{bh:.1f}" fill="{colour}">'
            f"<title>{a:+.2f} to {b:+.2f} dB: {c} {'image' if c == 1 else 'images'}</title></rect>"
        )
    step = max(1, math.ceil(len(bins) / 8))
    for i in range(0, len(bins) + 1, step):
        v = lo + (hi - lo) * i / len(bins)
        parts.append(f'<text x="{x_of(v):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{v:+.2f}</text>')
    if lo < 0 < hi:
        parts.append(
            f'<line x1="{x_of(0):.1f}" y1="{top}" x2="{x_of(0):.1f}" y2="{top + plot_h}" '
            f'stroke="#000" stroke-width="1.5"/>'
        )
    m = x_of(st.mean_gain)
    parts.append(
        f'<line x1="{m:.1f}" y1="{top}" x2="{m:.1f}" y2="{top + plot_h}" stroke="#1b6b35" '
        f'stroke-dasharray="4 3" stroke-width="2"/>'
    )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{h - 4}" text-anchor="middle">PSNR gain over '
        f"bicubic, dB (dashed: mean)</text>"
    )
    svg = (
        f'<svg class="hist" viewBox="0 0 {w} {h}" role="img" aria-labelledby="hist-t hist-d">'
        f'<title id="hist-t">Histogram of the PSNR gain over bicubic</title>'
        f'<desc id="hist-d">{len(g)} images in {len(bins)} bins from {lo:+.2f} to {hi:+.2f} dB; '
        f"mean {st.mean_gain:+.2f} dB.</desc>{''.join(parts)}</svg>"
    )
    rows = "".join(f'<tr><td class="n">{a:+.2f} to {b:+.2f}</td><td class="n">{c}</td></tr>' for a, b, c in bins)
    return (
        text + svg + "\n<details><summary>The histogram as a table</summary><table><thead><tr>"
        '<th class="n">gain, dB</th><th class="n">images</th></tr></thead><tbody>'
        f"{rows}</tbody></table></details>\n"
        '<p class="muted">The gain is the run\'s own check: each image was shrunk by the scale, '
        "restored by bicubic and by the model, and both compared with it (PSNR on Y).</p>"
    )


def _failures_html(rows: list[Row]) -> str:
    failed = [(i + 1, r) for i, r in enumerate(rows) if r.status not in (OK, SKIPPED)]
    if not failed:
        return "<p>None: every image was upscaled or skipped.</p>"
    body = "".join(
        f'<tr><td class="n">{i}</td><td class="name">{esc(r.input)}</td><td>{esc(r.error or r.status)}</td></tr>'
        for i, r in failed
    )
    return (
        '<div class="wrap"><table id="failures-table" data-sortable><thead><tr><th class="n">#</th>'
        f"<th>input</th><th>reason</th></tr></thead><tbody>{body}</tbody></table></div>"
    )


_WHOLE = ' class="whole"'  # the thumbnail is scaled smoothly, the crops pixelated


def _figures_html(figures: list[Figure], st: Stats, asset_url: str, page_dir: Path) -> str:
    if not figures:
        return "<p>No images to show (no ok images, or a sample of 0).</p>"
    out = [
        f"<p>{len(figures)} of {st.ok} ok images: the same region of the input, of the input "
        "upscaled by bicubic and of batchsr's output, enlarged with nearest neighbour so that "
        "every pixel shows. The PSNR in the captions is the run's check described above."
        + (" Failures have no pictures; they are listed above." if st.failed else "")
        + "</p>"
    ]
    n = 0
    for why, heading in GROUPS:
        group = [f for f in figures if f.pick.why == why]
        if not group:
            continue
        out.append(f"<h3>{esc(heading)}</h3>")
        for f in group:
            n += 1
            r = f.pick.row
            gain = r.gain
            badge = f' <span class="{"bad" if gain < 0 else "good"}">{gain:+.2f} dB</span>' if gain is not None else ""
            link = f' <a href="{esc(_href(f.output, page_dir))}">full output</a>' if f.output is not None else ""
            why = "" if f.pick.why == "every image" else f", {esc(f.pick.why)}"
            lazy = "" if n <= EAGER_FIGURES else ' loading="lazy"'
            panels = "".join(
                f'<figure><img src="{esc(asset_url + p.file)}" alt="{esc(p.alt)}" width="{p.width}" '
                f'height="{p.height}"{lazy} decoding="async"{_WHOLE if "-whole." in p.file else ""}>'
                f"<figcaption>{esc(p.caption)}</figcaption></figure>"
                for p in f.panels
            )
            notes = "".join(f'<p class="muted">{esc(t)}</p>' for t in f.notes)
            out.append(
                f'<figure class="pair" id="fig-{n}"><figcaption><h4>{esc(r.input)}</h4>'
                f'<span class="muted">CSV row {f.pick.number}{why}</span>{badge}{link}'
                f'<p class="muted estimates">{esc(_model_and_damage(r))}</p>'
                f'</figcaption><div class="panels">{panels}</div>{notes}</figure>'
            )
    return "\n".join(out)


def _model_and_damage(r: Row) -> str:
    """The model that ran and what the report estimated of the input's damage (README: the report)."""
    parts = [f"model {r.model}" if r.model else "model not recorded"]
    if r.jpeg_quality is not None:
        parts.append(f"JPEG quality {r.jpeg_quality:.0f}")
    if r.noise_sigma is not None:
        parts.append(f"noise σ {r.noise_sigma:.1f} levels")
    return "; ".join(parts)


_TABLE_HEAD = (
    '<thead><tr><th class="n">#</th><th>input</th><th>status</th><th class="n">size</th>'
    '<th class="n">output size</th><th class="n">seconds</th><th class="n">bicubic dB</th>'
    '<th class="n">batchsr dB</th><th class="n">gain dB</th><th>model</th><th class="n">JPEG quality</th>'
    '<th class="n">noise σ</th><th>error or notes</th></tr></thead>'
)


def _num_cell(v: float | None, spec: str, cls: str = "n") -> str:
    if v is None:
        return f'<td class="{cls}"></td>'
    if math.isinf(v):
        return f'<td class="{cls}" data-v="Infinity">∞</td>'
    return f'<td class="{cls}">{v:{spec}}</td>'


def _size_cell(w: int | None, h: int | None) -> str:
    if not w or not h:
        return '<td class="n"></td>'
    return f'<td class="n" data-v="{w * h}">{w}×{h}</td>'


def _table_html(numbered: list[tuple[int, Row]], outputs: OutputMap, page_dir: Path) -> str:
    lines = []
    for i, r in numbered:
        target = outputs(r.output) if r.status == OK else None
        name = esc(r.input)
        if target is not None:
            name = f'<a href="{esc(_href(target, page_dir))}">{name}</a>'
        status = esc(r.status) if r.status in (OK, SKIPPED) else f'<span class="bad">{esc(r.status)}</span>'
        gain = r.gain
        lines.append(
            f'<tr><td class="n">{i}</td><td class="name">{name}</td><td>{status}</td>'
            f"{_size_cell(r.width, r.height)}{_size_cell(r.out_width, r.out_height)}"
            f"{_num_cell(r.seconds, '.3f')}{_num_cell(r.psnr_bicubic, '.2f')}"
            f"{_num_cell(r.psnr_model, '.2f')}"
            f"{_num_cell(gain, '+.2f', 'n bad' if gain is not None and gain < 0 else 'n')}"
            f"<td>{esc(r.model)}</td>{_num_cell(r.jpeg_quality, '.0f')}{_num_cell(r.noise_sigma, '.1f')}"
            f"<td>{esc(r.error or r.notes)}</td></tr>"
        )
    return (
        f'<div class="wrap"><table class="all" data-sortable>{_TABLE_HEAD}<tbody>\n'
        + "\n".join(lines)
        + "\n</tbody></table></div>"
    )


def _page_name(k: int) -> str:
    return f"table-{k:04d}.html"


def _pages_nav(k: int, count: int, total: int, here: str) -> str:
    """Links to every table page; ``here`` is the URL prefix from the current page to them."""
    items = []
    for j in range(1, count + 1):
        a, b = (j - 1) * PAGE_ROWS + 1, min(j * PAGE_ROWS, total)
        label = f"rows {a}–{b}"
        items.append(
            f'<li aria-current="page"><strong>{label}</strong></li>'
            if j == k
            else f'<li><a href="{here}{_page_name(j)}">{label}</a></li>'
        )
    return f'<nav class="pages" aria-label="table pages"><ol>{"".join(items)}</ol></nav>'


def _csv_link(csv_path: Path, page_dir: Path) -> str:
    return f'<a href="{esc(_href(csv_path, page_dir))}">{esc(csv_path.name)}</a>'


# ---------------------------------------------------------------- building


def _write_text_atomic(path: Path, text: str) -> None:
    from batchsr.atomic import write_atomic

    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def _remove_old_builds(assets: Path, keep: str) -> None:
    """Remove earlier builds' folders (only names this module makes) once the page no longer uses them."""
    now = time.time()
    for e in os.scandir(assets):
        if not e.is_dir(follow_symlinks=False) or e.name == keep:
            continue
        stale_tmp = e.name.startswith(_TMP_PREFIX) and now - e.stat().st_mtime > _STALE_TMP_SECONDS
        if _BUILD_RE.match(e.name) or stale_tmp:
            shutil.rmtree(e.path, ignore_errors=True)


def _main_page(
    root: Path, csv_path: Path, rows: list[Row], st: Stats, figures: list[Figure], asset_url: str, table: str
) -> str:
    body = (
        f'<header><h1>batchsr report</h1><p class="muted">{esc(root.resolve())}: '
        f"built {time.strftime('%Y-%m-%d %H:%M')} from {_csv_link(csv_path, root)}.</p></header>\n"
        f'<p id="broken" class="banner" hidden><span></span> pictures did not load: keep the '
        f"{esc(ASSETS_NAME)} folder next to this page.</p>\n<main>\n"
        f'<section aria-labelledby="h-summary"><h2 id="h-summary">Summary</h2>\n'
        f"{_summary_html(st)}\n<h3>PSNR gain over bicubic</h3>\n{_gain_html(st)}</section>\n"
        f'<section aria-labelledby="h-failures"><h2 id="h-failures">Failures ({st.failed})</h2>\n'
        f"{_failures_html(rows)}</section>\n"
        f'<section id="figures" aria-labelledby="h-figures"><h2 id="h-figures">Before and after'
        f"</h2>\n{_figures_html(figures, st, asset_url, root)}</section>\n"
        f'<section id="table" aria-labelledby="h-table"><h2 id="h-table">All images</h2>\n'
        f"<p>The full report: {_csv_link(csv_path, root)}.</p>\n{table}</section>\n</main>"
    )
    return _page(f"batchsr report: {root.resolve().name}", body)


def _table_section(
    root: Path, rows: list[Row], outputs: OutputMap, folder: Path, build_dir: Path, asset_url: str
) -> str:
    """The table for the main page: the rows themselves when they fit one page, else links to
    pages of :data:`PAGE_ROWS` rows written into ``folder`` (to be read from ``build_dir``)."""
    numbered = [(i + 1, r) for i, r in enumerate(rows)]
    pages = math.ceil(len(rows) / PAGE_ROWS)
    if pages <= 1:
        return _table_html(numbered, outputs, root)
    back = _href(root / HTML_NAME, build_dir)
    for k in range(1, pages + 1):
        chunk = numbered[(k - 1) * PAGE_ROWS : k * PAGE_ROWS]
        nav = _pages_nav(k, pages, len(rows), "")
        body = (
            f'<header><p><a href="{esc(back)}">← the report</a></p>'
            f"<h1>All images, page {k} of {pages}</h1></header>\n"
            f"<main>{nav}{_table_html(chunk, outputs, build_dir)}{nav}</main>"
        )
        (folder / _page_name(k)).write_text(_page(f"batchsr report, page {k} of {pages}", body), encoding="utf-8")
    return (
        f"<p>{len(rows)} rows in {pages} pages of {PAGE_ROWS} (with JavaScript, a click on a column "
        f"heading sorts the page by it).</p>" + _pages_nav(0, pages, len(rows), asset_url)
    )


def build(
    output: str | os.PathLike,
    csv_path: str | os.PathLike | None = None,
    sample: int = DEFAULT_HTML_SAMPLE,
    *,
    crop: int = CROP,
    focus: tuple[float, float] = (0.5, 0.5),
    seed: int = 0,
) -> Path:
    """Write ``OUTPUT/batchsr-report.html`` (and its assets folder) from the CSV report.

    ``csv_path`` defaults to ``OUTPUT/batchsr-report.csv``. ``sample`` bounds
    the images drawn as figures (see :func:`choose_sample`); ``crop`` and
    ``focus`` choose the zoomed region (side in input pixels; centre as
    fractions of width and height). Returns the page's path. Raises
    ReportError when there is no usable CSV.
    """
    if not (0 <= focus[0] <= 1 and 0 <= focus[1] <= 1) or crop < 1:
        raise ValueError("focus must lie inside the image (fractions 0..1) and crop be positive")
    root = Path(output)
    csv_path = Path(csv_path) if csv_path else root / REPORT_NAME
    if not root.is_dir():
        raise ReportError(f"not a folder: {root}")
    if not csv_path.is_file():
        raise ReportError(f"no report at {csv_path}: run batchsr on this folder first, or pass --report")
    try:
        rows = read_report(csv_path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {csv_path}: {exc}") from None

    for p in (root / HTML_NAME, root / ASSETS_NAME):
        if os.path.islink(p):  # refused, not replaced: the link is the user's and may lead anywhere
            raise ReportError(f"{p} is a symbolic link: batchsr never writes through links; remove it")
    st = run_stats(rows)
    outputs = OutputMap(root, rows)
    assets = root / ASSETS_NAME
    assets.mkdir(exist_ok=True)
    build_id = time.strftime("b%Y%m%d-%H%M%S-") + os.urandom(3).hex()
    asset_url = f"{urllib.parse.quote(ASSETS_NAME)}/{build_id}/"
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=assets))
    try:
        os.chmod(tmp, 0o777 & ~umask())  # mkdtemp makes it private; the page is for everyone
        figures = [
            draw_figure(p, n + 1, outputs(p.row.output), tmp, crop, focus)
            for n, p in enumerate(choose_sample(rows, sample, seed))
        ]
        table = _table_section(root, rows, outputs, tmp, assets / build_id, asset_url)
        text = _main_page(root, csv_path, rows, st, figures, asset_url, table)
        os.replace(tmp, assets / build_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    page = root / HTML_NAME
    _write_text_atomic(page, text)
    _remove_old_builds(assets, build_id)
    return page


__all__ = ["ReportError", "build", "choose_sample", "crop_box", "histogram", "run_stats", "esc"]
