"""The run's configuration: one frozen object built by the CLI (or a library caller)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPORT_NAME = "batchsr-report.csv"
# The before/after page and the folder of its pictures, both inside OUTPUT.
HTML_NAME = "batchsr-report.html"
ASSETS_NAME = "batchsr-report-assets"
DEFAULT_HTML_SAMPLE = 24
# Deflate level of PNG/TIFF outputs: 1-3 are ISA-L's (encode.deflate_compressobj),
# 0 and 4-9 stock zlib's. On B100 outputs level 2 encoded in 1.6 ms an image and
# 3 in 2.7 ms, for files 0.4 % smaller; zlib's 6 takes several times longer for
# files about 8 % smaller (docs/performance.md, "PNG and TIFF compression levels").
DEFAULT_COMPRESSION = 2
FORMATS = ("keep", "png", "jpg", "webp", "tiff")
# Pillow's own decompression-bomb limit: it warns above 89 megapixels
# (Image.MAX_IMAGE_PIXELS) and refuses above twice that, about 179 megapixels.
DEFAULT_MAX_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a folder run does.

    ``scale`` None means 3 for a shipped model name, or the file's own scale
    for ``--model PATH.onnx``. ``tile`` None picks automatically (whole image
    when small, fixed tiles when large); 0 forces the whole image.
    ``dry_run`` writes nothing (not even OUTPUT or the report); ``overwrite``
    redoes outputs that earlier runs finished and that are up to date.
    ``engine`` "ray" runs the images on a Ray cluster (``ray_address``) with
    the same outputs and report as "local".
    """

    input: Path
    output: Path
    scale: int | None = None
    # "auto": per image, `default` or `photo` by the input's damage (batchsr.choice); else one model.
    model: str = "auto"
    tile: int | None = None
    report: Path | None = None
    providers: tuple[str, ...] | None = None
    quiet: bool = False
    verbose: bool = False
    psnr: bool = True
    format: str = "keep"
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int = 0
    # Images in flight at once: decode/encode of one overlaps inference of another.
    jobs: int = 2
    # Deflate level of PNG and TIFF outputs (see DEFAULT_COMPRESSION).
    compression: int = DEFAULT_COMPRESSION
    html: bool = False  # also write OUTPUT/batchsr-report.html (html_report.build)
    html_sample: int = DEFAULT_HTML_SAMPLE  # images shown as before/after figures
    dry_run: bool = False  # list what would be done; write nothing
    overwrite: bool = False  # reprocess outputs that are up to date
    # Where the per-image work runs: "local" (this machine) or "ray" (batchsr.ray_engine).
    engine: str = "local"
    # Ray only: None starts Ray on this machine; "auto" or HOST:PORT joins a running cluster.
    ray_address: str | None = None
    # The model build: "fp32", "int8", or "auto" (batchsr.precision.choose_precision).
    precision: str = "auto"
    device: int | None = None  # GPU index for CUDA and the other GPU providers (session.provider_options)

    @property
    def report_path(self) -> Path:
        return Path(self.report) if self.report else Path(self.output) / REPORT_NAME
