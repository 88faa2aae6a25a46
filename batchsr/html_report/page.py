"""The page's HTML: summary, gain histogram (SVG), failures, figures and the sortable table, with
its stylesheet and script read from ``page.css`` and ``page.js`` beside this module and inlined
(the page needs nothing from outside)."""

from __future__ import annotations

import html
import math
import statistics
import time
from importlib.resources import files
from pathlib import Path

from batchsr.config import ASSETS_NAME, HTML_NAME
from batchsr.estimate import DamageRule
from batchsr.html_report.figures import Figure, OutputMap, href
from batchsr.html_report.stats import GROUPS, Stats, histogram
from batchsr.report import OK, SKIPPED, Row

# Inlined into every page: it must work offline, from a USB stick or a mail attachment.
_CSS = files("batchsr.html_report").joinpath("page.css").read_text(encoding="utf-8")
_JS = files("batchsr.html_report").joinpath("page.js").read_text(encoding="utf-8")


PAGE_ROWS = 500  # rows per table page: about 150 KB of HTML


EAGER_FIGURES = 2  # the first figures load at once; the rest when scrolled to


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
        return (
            "<p>No PSNR was measured (the run used --no-psnr, or every image was judged damaged, "
            "where the experiment does not predict the true gain, or too small for it).</p>"
        )
    g = sorted(st.gains)
    worse = sum(1 for v in g if v < 0)
    text = (
        f"<p>Over {len(g)} of {st.ok} ok images (damaged and tiny ones have no figure): "
        f"mean <strong>{st.mean_gain:+.2f} dB</strong>, "
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
            link = f' <a href="{esc(href(f.output, page_dir))}">full output</a>' if f.output is not None else ""
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
            name = f'<a href="{esc(href(target, page_dir))}">{name}</a>'
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
    return f'<a href="{esc(href(csv_path, page_dir))}">{esc(csv_path.name)}</a>'


def main_page(
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


def table_section(
    root: Path, rows: list[Row], outputs: OutputMap, folder: Path, build_dir: Path, asset_url: str
) -> str:
    """The table for the main page: the rows themselves when they fit one page, else links to
    pages of :data:`PAGE_ROWS` rows written into ``folder`` (to be read from ``build_dir``)."""
    numbered = [(i + 1, r) for i, r in enumerate(rows)]
    pages = math.ceil(len(rows) / PAGE_ROWS)
    if pages <= 1:
        return _table_html(numbered, outputs, root)
    back = href(root / HTML_NAME, build_dir)
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
