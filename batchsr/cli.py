"""Command line: argv -> RunConfig -> exit code. Never touches pixels.

Heavy modules (numpy, Pillow, onnxruntime) are imported only after the
arguments are parsed, so ``batchsr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from batchsr import __version__
from batchsr.config import DEFAULT_COMPRESSION, DEFAULT_HTML_SAMPLE, DEFAULT_MAX_PIXELS, FORMATS, HTML_NAME, RunConfig
from batchsr.precision import PRECISIONS

# report owns outcomes and exit codes; it imports nothing heavy, so --help stays fast.
from batchsr.report import EXIT_EMPTY, EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_USAGE

DESCRIPTION = """\
Upscale every image under INPUT (a folder, walked recursively, or one file)
into OUTPUT with a super-resolution CNN, keeping the folder layout, file names
and formats, and write a CSV report (OUTPUT/batchsr-report.csv) with one row
per image, including how much the model beat bicubic upscaling (PSNR, dB).

other commands:
  batchsr eval FOLDER...   PSNR/SSIM of a model vs bicubic on ground-truth images
  batchsr models           list the shipped models
  batchsr report OUTPUT    (re)build OUTPUT/batchsr-report.html from the CSV report
(a folder literally named "eval", "models" or "report" can be given as ./eval)
"""
EPILOG = """\
exit codes: 0 every image ok or skipped, 1 some images failed (see the report) or the --html
page could not be written, 2 usage or setup error (OUTPUT, its lock or the report cannot be
written, a link where OUTPUT's report, lock or state file should be, or --engine ray cannot run:
Ray missing or unreachable, a worker that cannot see INPUT or OUTPUT), 3 OUTPUT is locked by
another running batchsr, 4 no images found in INPUT (an unmounted share looks like this),
130 / 143 / 129 stopped by SIGINT (Ctrl-C) / SIGTERM / SIGHUP (finished images are kept and
reported, temporary files removed, the lock released).

A rerun skips images whose output is up to date (same input, model and
settings); a run that was interrupted or killed is finished by running it again.
"""


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _tile(text: str) -> int:
    v = _integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 (whole image) or a positive tile size in LR pixels")
    return v


def _non_negative(text: str) -> int:
    v = _integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 or a positive integer")
    return v


def _positive(text: str) -> int:
    v = _integer(text)
    if v <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return v


def _sample(text: str) -> int:
    v = _integer(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must be 0 (no pictures) or a positive number of images")
    return v


def _add_html_sample(p: argparse.ArgumentParser, implies: str = "") -> None:
    p.add_argument(
        "--html-sample",
        type=_sample,
        metavar="N",
        help=f"images drawn as before/after figures: the largest and smallest gains and a "
        f"random few (default {DEFAULT_HTML_SAMPLE}){implies}",
    )


def _add_model_options(p: argparse.ArgumentParser, precision: str = "auto", model: str = "auto") -> None:
    p.add_argument(
        "--scale", type=int, choices=(2, 3, 4), help="upscaling factor (default 3; with --model PATH, the file's own)"
    )
    choose = (
        "; auto: per image, photo for damaged inputs (JPEG quality 85 or less, or noise 2 levels or "
        "more) and default for the others"
        if model == "auto"
        else ""
    )
    p.add_argument(
        "--model",
        default=model,
        metavar="auto|NAME|PATH.onnx" if model == "auto" else "NAME|PATH.onnx",
        help=f"a shipped model's name (see `batchsr models`) or an ONNX file exported by "
        f"`python -m train`{choose} (default: {model})",
    )
    p.add_argument(
        "--tile",
        type=_tile,
        metavar="N",
        help="tile size in LR pixels; 0 = whole image (default: whole image when small, "
        "256 when large, so memory stays bounded)",
    )
    p.add_argument(
        "--providers",
        metavar="LIST",
        help="onnxruntime execution providers in order, e.g. cuda,cpu (default: the best present of coreml, cuda, cpu)",
    )
    p.add_argument(
        "--threads",
        type=_positive,
        help="inference threads per image computing (default: cores / --jobs, at least 1; one per core for eval)",
    )
    p.add_argument(
        "--device",
        type=_non_negative,
        metavar="N",
        help="which GPU the CUDA (or TensorRT, ROCm, DirectML) provider uses (default 0)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=precision,
        help="the shipped model's float32 or int8 build; auto: int8 where it was measured to "
        f"pay (the CPU runs it and has VNNI or AMX), else fp32 (default {precision})",
    )


def run_parser() -> Parser:
    p = Parser(
        prog="batchsr", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("input", metavar="INPUT", type=Path, help="image file or folder of images")
    p.add_argument("output", metavar="OUTPUT", type=Path, help="folder to write the upscaled images to")
    _add_model_options(p)
    p.add_argument(
        "--jobs",
        type=_positive,
        default=2,
        metavar="N",
        help="images computing at once, so decoding and encoding overlap inference; one "
        "more may start for each whose output is being fsynced (default 2; with --engine "
        "ray, per worker)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the images are processed: this machine (default) or a Ray cluster "
        "(pip install 'batchsr[ray]'; INPUT and OUTPUT must be on a filesystem every node "
        "mounts at the same path; each worker takes --threads CPUs, default 2, and --jobs "
        "images at a time)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray: join the cluster at ADDR (auto, or HOST:PORT of its head); "
        "default: start Ray on this machine",
    )
    p.add_argument("--report", type=Path, metavar="PATH", help="CSV report path (default OUTPUT/batchsr-report.csv)")
    p.add_argument("--format", choices=FORMATS, default="keep", help="output format (default: keep the input's)")
    p.add_argument(
        "--quality", type=int, default=95, metavar="N", help="JPEG/WebP/AVIF/HEIC quality 1-100 (default 95)"
    )
    p.add_argument(
        "--compression",
        type=int,
        default=DEFAULT_COMPRESSION,
        choices=range(0, 10),
        metavar="0-9",
        help=f"deflate level of PNG and TIFF outputs: 1-3 encoded with ISA-L (fast), 0 (stored) "
        f"and 4-9 with zlib (slower, smaller) (default {DEFAULT_COMPRESSION})",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse inputs larger than N pixels (default {DEFAULT_MAX_PIXELS}, Pillow's limit)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be processed or skipped, and write nothing")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="reprocess images whose output is already up to date, and replace files at "
        "output paths that batchsr did not write or that changed since",
    )
    p.add_argument(
        "--no-psnr",
        action="store_true",
        help="skip the per-image PSNR experiment and damage estimates (saves about 1/scale^2 of the work)",
    )
    p.add_argument(
        "--html",
        action="store_true",
        help=f"also write OUTPUT/{HTML_NAME}: the summary, failures and before/after "
        f"crops of a sample of images, readable offline",
    )
    _add_html_sample(p, "; implies --html")
    p.add_argument("--quiet", action="store_true", help="print only the final summary line")
    p.add_argument("--verbose", action="store_true", help="debug logging, with tracebacks for failures")
    p.add_argument("--version", action="version", version=f"batchsr {__version__}")
    return p


def eval_parser() -> Parser:
    p = Parser(
        prog="batchsr eval",
        description="Evaluate a model against bicubic on folders of ground-truth images under the "
        "standard protocol: mod-crop, PIL bicubic downscale (or --degradation realistic), "
        "Y (BT.601 studio range), shave `scale` pixels, PSNR (peak 255) and SSIM "
        "(Gaussian, sigma 1.5); colour as PSNR on Cb/Cr.",
    )
    p.add_argument(
        "folders",
        nargs="+",
        metavar="[NAME=]FOLDER",
        help="folders of ground-truth images; NAME= labels the row (e.g. B100=.../bsds500/val)",
    )
    _add_model_options(p, precision="fp32", model="default")  # figures that do not depend on the machine
    p.add_argument(
        "--degradation",
        choices=("bicubic", "realistic"),
        default="bicubic",
        help="how each LR input is made: bicubic (the standard protocol, default) or realistic "
        "(blur, resizing, noise and JPEG, seeded per image: a fixed damaged version of the set)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the realistic sets (default 0)")
    p.add_argument("--csv", type=Path, metavar="PATH", help="write per-image rows to this CSV")
    return p


def _setup_logging(quiet: bool, verbose: bool) -> None:
    # --verbose is batchsr's own debug output (a traceback per failed image); other
    # libraries stay at INFO, so Pillow's EXIF and plugin chatter does not bury it.
    logging.basicConfig(
        level=logging.ERROR if quiet else logging.INFO, format="batchsr: %(message)s", stream=sys.stderr
    )
    logging.getLogger("batchsr").setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _load_eval_model(a, usage_exit):
    """The one model ``batchsr eval`` scores (a thread per core unless --threads), or a usage exit."""
    from batchsr.models import ModelError, load
    from batchsr.session import SessionError, SessionOptions, parse_providers

    try:
        providers = parse_providers(a.providers) if a.providers else None
        return load(
            a.model, a.scale, SessionOptions(providers=providers, threads=a.threads, device=a.device), a.precision
        )
    except (ModelError, SessionError, ValueError) as exc:
        usage_exit(str(exc))


def cmd_eval(argv: list[str]) -> int:
    p = eval_parser()
    a = p.parse_args(argv)
    folders = []
    for spec in a.folders:
        name, sep, path = spec.partition("=")
        if not sep or "/" in name or "\\" in name:
            name, path = "", spec
        if not Path(path).is_dir():
            p.error(f"not a folder: {path}")
        folders.append((name or Path(path).name, Path(path)))
    _setup_logging(False, False)
    if a.model == "auto":
        p.error(
            "batchsr eval scores one model; --model auto chooses per image from the input's file "
            "(benchmarks/auto_rule.py scores the choice)"
        )
    model = _load_eval_model(a, p.error)
    from batchsr.evaluate import EvalError, evaluate_folder, table, write_csv
    from batchsr.tuning import tune_allocator

    tune_allocator()

    scores, rows = [], []
    try:
        for name, folder in folders:
            s, r = evaluate_folder(folder, model, a.tile, name, a.degradation, a.seed)
            scores.append(s)
            rows += r
    except EvalError as exc:  # a mean over a folder with a broken image would mislead
        print(f"batchsr eval: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(table(scores, model, a.degradation))
    if a.csv:
        write_csv(a.csv, rows, model, a.degradation)
    return EXIT_OK


def cmd_models(argv: list[str]) -> int:
    p = Parser(prog="batchsr models", description="List the shipped models.")
    p.parse_args(argv)
    from batchsr.choice import AUTO, CLEAN, DAMAGED
    from batchsr.models import ModelError, shipped

    try:
        entries = shipped()
    except ModelError as exc:
        p.error(str(exc))
    for e in entries:
        int8 = f"  (int8: {e.int8.path.name})" if e.int8 else ""
        print(f"{e.name:10s} x{e.scale}  {e.path.name}{int8}")
    scales = sorted({e.scale for e in entries if e.name == CLEAN} & {e.scale for e in entries if e.name == DAMAGED})
    if scales:
        print(
            f"{AUTO:10s} {' '.join(f'x{s}' for s in scales)}  the default: {DAMAGED} for damaged inputs, "
            f"{CLEAN} for the others"
        )
    return EXIT_OK


def _check_run_args(a, p: Parser) -> None:
    """Usage errors (exit 2, one line) for arguments that cannot make a run."""
    from batchsr.pipeline import UsageError, check_paths

    try:
        check_paths(a.input, a.output)
    except UsageError as exc:
        p.error(str(exc))
    if not 1 <= a.quality <= 100:
        p.error("--quality must be between 1 and 100")
    if a.ray_address and a.engine != "ray":
        p.error("--ray-address needs --engine ray")
    if a.engine == "ray":
        from batchsr.distribute import EngineUnavailable
        from batchsr.ray_engine import require_ray

        try:
            require_ray()
        except EngineUnavailable as exc:
            p.error(str(exc))


def cmd_run(argv: list[str]) -> int:
    p = run_parser()
    a = p.parse_args(argv)
    _check_run_args(a, p)
    from batchsr.distribute import EngineUnavailable

    _setup_logging(a.quiet, a.verbose)
    from batchsr.choice import load_for_run
    from batchsr.models import ModelError
    from batchsr.session import SessionError, parse_providers
    from batchsr.tuning import tune_allocator

    tune_allocator()  # this process is ours: keep the images' temporaries for reuse

    try:
        # The providers asked for, not this machine's pick: a Ray worker on a GPU node picks its own.
        providers = parse_providers(a.providers) if a.providers else None
    except ValueError as exc:
        p.error(str(exc))
    cfg = RunConfig(
        input=a.input,
        output=a.output,
        scale=a.scale,
        model=a.model,
        tile=a.tile,
        report=a.report,
        providers=providers,
        quiet=a.quiet,
        verbose=a.verbose,
        psnr=not a.no_psnr,
        format=a.format,
        quality=a.quality,
        max_pixels=a.max_pixels,
        threads=a.threads or 0,
        dry_run=a.dry_run,
        overwrite=a.overwrite,
        jobs=a.jobs,
        compression=a.compression,
        html=a.html or a.html_sample is not None,
        html_sample=DEFAULT_HTML_SAMPLE if a.html_sample is None else a.html_sample,
        engine=a.engine,
        ray_address=a.ray_address,
        precision=a.precision,
        device=a.device,
    )
    try:
        choice, cfg = load_for_run(cfg)  # the scale and precision resolved
    except (ModelError, SessionError, ValueError) as exc:
        p.error(str(exc))
    from batchsr.lock import Locked
    from batchsr.pipeline import SetupError, run
    from batchsr.stopping import Interrupted

    try:
        summary = run(cfg, choice)
    except Locked as exc:
        print(f"batchsr: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except EngineUnavailable as exc:  # nothing was processed
        print(f"batchsr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SetupError as exc:  # before any image: OUTPUT, its lock or the report cannot be written
        print(f"batchsr: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Interrupted as exc:
        print(
            f"batchsr: stopped by {exc.name}; finished images are kept and in the report, rerun to continue",
            file=sys.stderr,
        )
        return exc.exit_code
    except OSError as exc:  # OUTPUT or the report stopped being writable during the run
        if a.verbose:
            raise
        print(f"batchsr: error: cannot run: {exc} (--verbose shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    print(summary.line())
    if summary.empty:
        print(
            f"batchsr: warning: no images found in {cfg.input} (an unmounted share looks like this); "
            f"exit code {EXIT_EMPTY}",
            file=sys.stderr,
        )
    if summary.failed and not a.quiet and not a.dry_run:
        print(f"batchsr: see {cfg.report_path} for the failures", file=sys.stderr)
    if cfg.html and not cfg.dry_run:
        return max(summary.exit_code, _write_html(cfg))
    return summary.exit_code


def _write_html(cfg: RunConfig) -> int:
    """Build the HTML page; the images are done, so a failure here is reported, not raised."""
    from batchsr.html_report import ReportError, build

    try:
        page = build(cfg.output, cfg.report_path, cfg.html_sample)
    except (ReportError, OSError) as exc:
        print(f"batchsr: could not write the HTML report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not cfg.quiet:
        print(f"batchsr: wrote {page}", file=sys.stderr)
    return EXIT_OK


def cmd_report(argv: list[str]) -> int:
    p = Parser(
        prog="batchsr report",
        description=f"(Re)build OUTPUT/{HTML_NAME} from a finished run's CSV report and the "
        "images it names, without running the model.",
    )
    p.add_argument("output", metavar="OUTPUT", type=Path, help="a batchsr output folder")
    p.add_argument("--report", type=Path, metavar="PATH", help="CSV report path (default OUTPUT/batchsr-report.csv)")
    _add_html_sample(p)
    a = p.parse_args(argv)
    from batchsr.html_report import ReportError, build

    try:
        page = build(a.output, a.report, DEFAULT_HTML_SAMPLE if a.html_sample is None else a.html_sample)
    except ReportError as exc:
        p.error(str(exc))
    except OSError as exc:
        print(f"batchsr: could not write the HTML report: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"batchsr: wrote {page}")
    return EXIT_OK


COMMANDS = {"eval": cmd_eval, "models": cmd_models, "report": cmd_report}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    try:
        return cmd_run(argv)
    except KeyboardInterrupt:
        print("batchsr: interrupted; finished images are kept, rerun to continue", file=sys.stderr)
        return 130
