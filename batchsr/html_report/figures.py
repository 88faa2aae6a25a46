"""The page's pictures: where a row's output lies inside OUTPUT, and the before/after figure of
one image (the input region upscaled bicubically beside batchsr's output, and a thumbnail)."""

from __future__ import annotations

import math
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from batchsr import decode, encode
from batchsr.exif import upright
from batchsr.html_report.stats import Pick
from batchsr.isolation import own_pixel_limit, warnings_into
from batchsr.report import OK, Row

CROP = 48  # side of the zoomed region, in input pixels


PANEL = 288  # target side of each zoomed panel, in screen pixels


THUMB = 240  # longest side of the whole-image thumbnail


MAX_DRAW_PIXELS = 1 << 28  # larger files are listed but not decoded for a figure


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


def href(target: Path, page_dir: Path) -> str:
    """A URL from a page in ``page_dir`` to ``target`` that survives moving OUTPUT as a whole."""
    try:
        rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    except ValueError:  # another drive (Windows): only an absolute file URL can reach it
        return Path(os.path.abspath(target)).as_uri()
    return urllib.parse.quote(Path(rel).as_posix(), safe="/")


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
