"""batchsr: restore folders of low-resolution photos with a small super-resolution CNN.

Library use::

    from PIL import Image
    import batchsr
    big = batchsr.upscale(Image.open("old.jpg"), scale=3)          # one image
    summary = batchsr.run_folder("old_photos", "restored")        # a whole tree + CSV report

Heavy imports happen inside the functions, so importing batchsr is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"


def upscale(image, scale: int = 3, model: str = "auto", tile: int | None = None, precision: str = "auto"):
    """Upscale a PIL image by ``scale`` with a shipped model name or an ONNX path.

    ``model`` "auto" (the default) chooses as the command line does: ``photo`` when the image
    looks damaged (a JPEG opened from a file saved at quality 85 or less, or noise of 2 levels
    or more), else ``default``. ``precision`` picks the shipped model's build as
    ``--precision`` does (auto, fp32, int8).

    The mode is kept (L, LA, RGB, RGBA; 16-bit grey stays 16-bit; palette
    images come back as RGB/RGBA). The image is first turned upright by its
    EXIF orientation, as the command line does (damaged EXIF is ignored);
    the result carries no EXIF.
    """
    from batchsr import choice, decode, encode, estimate, exif, experiment, upscaling

    quality = estimate.jpeg_quality(image)  # from the tables of the image as opened, before any copy
    choices = choice.cached_choice(model, scale, precision)
    notes: list[str] = []
    pixels, bits = decode.to_array(exif.upright(image), notes)
    picture = decode.Picture(pixels, bits, image.format or "", jpeg_quality=quality)
    m, _ = choices.pick(experiment.damage_of(picture) if choices.auto else None)
    out = upscaling.upscale_pixels(pixels, m, tile)
    return encode.to_pillow(out, bits, "PNG")


def run_folder(input, output, **options):
    """Run a whole folder job like the command line does; returns a ``report.Summary``.

    ``options`` are the fields of :class:`batchsr.config.RunConfig` (scale,
    model: "auto" by default, per image as the command line does; tile, report,
    providers, format, quality, html, ...); ``html=True`` also writes the before/after
    page (:func:`batchsr.html_report.build`).
    What the CLI refuses with exit code 2 raises here: ``pipeline.UsageError`` (INPUT
    missing, OUTPUT a file or INPUT itself), ``pipeline.SetupError`` (OUTPUT, its lock or
    the report cannot be written), ``models.ModelError``; ``lock.Locked`` is its exit 3.
    """
    from pathlib import Path

    from batchsr import pipeline
    from batchsr.choice import load_for_run
    from batchsr.config import RunConfig

    choice, cfg = load_for_run(RunConfig(input=Path(input), output=Path(output), **options))
    summary = pipeline.run(cfg, choice)
    if cfg.html:
        from batchsr import html_report

        html_report.build(cfg.output, cfg.report_path, cfg.html_sample)
    return summary


__all__ = ["__version__", "upscale", "run_folder"]
