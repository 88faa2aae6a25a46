"""Per-image outcomes, the CSV report, the summary line and the exit code.

The CSV is written row by row and flushed, so an interrupted run still leaves
a report of everything it finished.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

OK, SKIPPED, ERROR = "ok", "skipped", "error"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_EMPTY = 0, 1, 2, 3, 4


@dataclass
class Row:
    """One input image's outcome. ``status`` is ok, skipped or error; ``error`` one line."""

    input: str
    output: str = ""
    status: str = OK
    error: str = ""
    width: int | None = None
    height: int | None = None
    out_width: int | None = None
    out_height: int | None = None
    scale: int | None = None
    model: str = ""
    seconds: float | None = None
    psnr_bicubic: float | None = None
    psnr_model: float | None = None
    jpeg_quality: float | None = None  # estimated from a JPEG input's quantisation tables
    noise_sigma: float | None = None  # estimated noise of the input's luma, 8-bit levels
    providers: str = ""
    notes: str = ""

    @property
    def gain(self) -> float | None:
        if self.psnr_bicubic is None or self.psnr_model is None:
            return None
        if math.isinf(self.psnr_bicubic) or math.isinf(self.psnr_model):
            return None
        return self.psnr_model - self.psnr_bicubic


COLUMNS = [f.name for f in fields(Row)]
_TEXT = {"input", "output", "status", "error", "model", "providers", "notes"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A leading apostrophe is the spreadsheet's own "this is text" mark; escaping
# it too makes the quoting reversible, so read_report gives back the exact name.
_QUOTED_START = _FORMULA_START + ("'",)


def safe_cell(value: str) -> str:
    """Neutralise text a spreadsheet would run as a formula (OWASP CSV injection).

    Reversible: :func:`unsafe_cell` returns the original text.
    """
    if value and value.startswith(_QUOTED_START):
        return "'" + value
    return value


def unsafe_cell(value: str) -> str:
    """The text :func:`safe_cell` was given."""
    if value.startswith("'") and value[1:].startswith(_QUOTED_START):
        return value[1:]
    return value


def _format(name: str, value) -> str:
    if value is None:
        return ""
    if name == "error":
        value = " ".join(str(value).split())  # a reason is one line, whatever an exception said
    if name in _TEXT:
        return safe_cell(str(value))
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if name == "jpeg_quality":
            return f"{value:.0f}"
        if name == "noise_sigma":
            return f"{value:.2f}"
        return f"{value:.4f}" if name.startswith("psnr") else f"{value:.3f}"
    return str(value)


class CsvReport:
    """Writes rows as they come; ``close`` (or the context manager) finishes the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a file name that is not valid UTF-8 (possible on
        # Linux) is written escaped instead of failing the report.
        # O_NOFOLLOW: a link at the report path is refused (ELOOP), never written through.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o666)
        self._f = open(fd, "w", newline="", encoding="utf-8", errors="backslashreplace")
        self._w = csv.writer(self._f)
        self._w.writerow(COLUMNS)
        self._f.flush()

    def write(self, row: Row) -> None:
        self._w.writerow([_format(c, getattr(row, c)) for c in COLUMNS])
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    """The report's rows as dicts of strings (for tests and tools)."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class ReportFormatError(ValueError):
    """A CSV that is not a batchsr report; the message is one line."""


_INTS = {"width", "height", "out_width", "out_height", "scale"}


def parse_row(d: dict[str, str]) -> Row:
    """One CSV row (dict of strings, as :func:`read_rows` gives) -> the Row that was written.

    Empty cells become None; text cells lose the CSV-injection quoting.
    Raises ReportFormatError for a cell that cannot be what its column holds.
    """
    values = {}
    for name in COLUMNS:
        raw = d.get(name)
        raw = "" if raw is None else raw
        if name in _TEXT:
            values[name] = unsafe_cell(raw)
        elif raw == "":
            values[name] = None
        else:
            try:
                values[name] = int(raw) if name in _INTS else float(raw)
            except ValueError:
                raise ReportFormatError(f"column {name} holds {raw[:40]!r}, not a number") from None
    return Row(**values)


def read_report(path: Path) -> list[Row]:
    """A batchsr CSV report as Rows, in file order. Raises ReportFormatError if it is not one."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("input", "status") if c not in (reader.fieldnames or [])]
        if missing:
            raise ReportFormatError(f"{path} is not a batchsr report (no {', '.join(missing)} column)")
        return [parse_row(d) for d in reader]


@dataclass
class Summary:
    """Counts of a run. For a dry run, ``ok`` counts the images that would be processed."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    gains: list[float] | None = None
    dry_run: bool = False
    found: int | None = None  # images INPUT held (None: not counted); 0 is EXIT_EMPTY
    model: str = ""  # the model's label, precision included ("default x3 int8"; "auto x3 int8")
    ran: dict[str, int] = field(default_factory=dict)  # ok images per label of the model that ran

    @property
    def empty(self) -> bool:
        """No image found in INPUT: what an unmounted share looks like to cron."""
        return self.found == 0

    def add(self, row: Row) -> None:
        if row.status == OK:
            self.ok += 1
            self.ran[row.model] = self.ran.get(row.model, 0) + 1
            if row.gain is not None:
                # append, not concatenate: a 20,000-row report must not be quadratic
                if self.gains is None:
                    self.gains = []
                self.gains.append(row.gain)
        elif row.status == SKIPPED:
            self.skipped += 1
        else:
            self.failed += 1

    @property
    def exit_code(self) -> int:
        if self.failed:
            return EXIT_FAILED
        return EXIT_EMPTY if self.empty else EXIT_OK

    def line(self) -> str:
        if self.dry_run:
            return (
                f"batchsr: dry run: {self.ok} to process, {self.skipped} skipped, {self.failed} failed; nothing written"
            )
        done = self.ok + self.failed
        rate = f", {done / self.seconds:.2f} images/s" if self.seconds > 0 and done else ""
        gain = ""
        if self.gains:
            n = len(self.gains)
            gain = f"; mean PSNR gain over bicubic {sum(self.gains) / n:+.2f} dB"
            if n < self.ok:  # the others: damaged or too small, no figure
                gain += f" ({n} of {self.ok} images)"
        model = f"; model {self.model}" if self.model else ""
        if self.ran and set(self.ran) != {self.model}:  # auto: which model ran how often
            model += " (" + ", ".join(f"{label}: {n}" for label, n in sorted(self.ran.items())) + ")"
        return (
            f"batchsr: {self.ok} ok, {self.skipped} skipped, {self.failed} failed "
            f"in {self.seconds:.1f} s{rate}{gain}{model}"
        )
