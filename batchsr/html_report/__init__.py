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

import os
import re
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

from batchsr.atomic import write_atomic
from batchsr.config import ASSETS_NAME, DEFAULT_HTML_SAMPLE, HTML_NAME, REPORT_NAME
from batchsr.html_report.figures import CROP, OutputMap, draw_figure
from batchsr.html_report.page import main_page, table_section
from batchsr.html_report.stats import choose_sample, run_stats
from batchsr.isolation import umask
from batchsr.report import read_report

_BUILD_RE = re.compile(r"^b\d{8}-\d{6}-[0-9a-f]{6}$")


_TMP_PREFIX = ".tmp-"


_STALE_TMP_SECONDS = 3600  # a temporary build folder this old belongs to a crashed build


class ReportError(Exception):
    """The page cannot be built (no CSV, not a batchsr CSV, ...); the message is one line."""


def _write_text_atomic(path: Path, text: str) -> None:

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
        table = table_section(root, rows, outputs, tmp, assets / build_id, asset_url)
        text = main_page(root, csv_path, rows, st, figures, asset_url, table)
        os.replace(tmp, assets / build_id)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    page = root / HTML_NAME
    _write_text_atomic(page, text)
    _remove_old_builds(assets, build_id)
    return page


__all__ = ["ReportError", "build", "choose_sample", "crop_box", "histogram", "run_stats", "esc"]
