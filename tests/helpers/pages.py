"""Helpers for the HTML report tests: a finished run on disk, and a page read back."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from batchsr.config import REPORT_NAME
from batchsr.report import CsvReport, Row
from helpers import photo


class Page(HTMLParser):
    """The parts of a page the tests look at: tags, img attributes, element text by id, all text."""

    INLINE = ("dd", "span", "strong")  # the elements whose text is collected by id

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[dict] = []
        self.links: list[str] = []
        self.by_id: dict[str, str] = {}
        self.text: list[str] = []
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a)
        if tag == "a":
            self.links.append(a["href"])
        if tag in self.INLINE:
            self._open.append(a.get("id"))

    def handle_endtag(self, tag):
        if tag in self.INLINE and self._open:
            self._open.pop()

    def handle_data(self, data):
        self.text.append(data)
        for i in filter(None, self._open):  # text of every open element with an id
            self.by_id[i] = self.by_id.get(i, "") + data


def write_run(out: Path, inputs: Path, specs, scale: int = 3) -> list[Row]:
    """A finished run as batchsr leaves it: outputs (bicubic stand-ins) and the CSV.

    ``specs``: (name, status, gain) with status ok/error/skipped.
    """
    rows = []
    inputs.mkdir(parents=True, exist_ok=True)
    for k, (name, status, gain) in enumerate(specs):
        src = inputs / name
        row = Row(
            input=str(src),
            status=status,
            model="test x3",
            providers="CPUExecutionProvider",
            seconds=0.25 + 0.01 * k,
            scale=scale,
        )
        if status == "ok":
            im = photo(k, 40 + k, 30)
            im.save(src)
            big = im.resize((im.width * scale, im.height * scale), Image.BICUBIC)
            dst = out / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            big.save(dst)
            row.output = str(dst)
            row.width, row.height, row.out_width, row.out_height = im.width, im.height, big.width, big.height
            if gain is not None:
                row.psnr_bicubic, row.psnr_model = 28.0, 28.0 + gain
        elif status == "error":
            src.write_bytes(b"not an image")
            row.error = "not an image Pillow can read (unknown format or corrupt header)"
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    with CsvReport(out / REPORT_NAME) as report:
        for r in rows:
            report.write(r)
    return rows
