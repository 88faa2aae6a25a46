"""What earlier runs finished, so a rerun redoes only what is missing.

The record is ``OUTPUT/.batchsr-state.jsonl``: one JSON line per finished
output, appended just before the output is renamed into place.
A kill can at worst leave a half-written last line, which is ignored; a line
whose output never got renamed is caught because the output's size and
mtime must match what the line says. The file is compacted (rewritten
atomically, one line per output) when a run starts.

An output is up to date when a line for its path has the same key (input
path, size and mtime, model checksum, settings that change pixels) and the
file at the output path still has the recorded size and mtime. Lines also
carry the row's figures and notes, so a rerun's report still describes
every image (:func:`figures`).

The record is also what tells batchsr's outputs from the user's files
(:meth:`State.check`): a file at an output path that no line describes, or
that changed since its line was written, is not batchsr's to replace. A
driver that renames outputs before it can record them (the Ray engine)
first writes a ``pending`` line for the path (:meth:`State.intend`).

Whatever the file holds (any bytes, any JSON, a folder or a fifo in its
place), reading it never raises: a line that is not a well-formed entry is
ignored, so at worst its image is redone, and the damage is logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat as stat_mode
import threading
from pathlib import Path
from typing import Iterator

from batchsr.atomic import write_atomic

log = logging.getLogger("batchsr")

STATE_NAME = ".batchsr-state.jsonl"
# Bump when batchsr's processing changes the pixels it writes for the same
# input and model, so old outputs are no longer taken as up to date.
PIXELS_VERSION = 1
# An entry is a few hundred bytes (a path of at most 4 KiB, a key, six numbers);
# a longer line is damage, and is skipped without being held in memory.
MAX_LINE = 1 << 20
# A good line has "out" (a relative path), "key" (str), "size" and "mtime_ns" (ints),
# these optional counts as ints or null, figures as numbers or null and the texts
# ("model": the label of the model that ran, "notes") as strings; a field of the
# wrong type is dropped. Other fields travel unchecked.
# A pending line has "out" and "pending": true only.
COUNTS = ("width", "height", "out_width", "out_height")
FIGURES = ("psnr_bicubic", "psnr_model", "jpeg_quality", "noise_sigma")
TEXTS = ("model", "notes")

_NOT_A_FILE = (
    "is not a file: every image is processed and this run is not recorded (a rerun "
    "processes them again); remove or rename it"
)
_warned: set = set()  # damaged state files already reported (a run reads the state twice)
_warned_lock = threading.Lock()


def job_key(
    input_rel: str, src: Path, model_sha256: str, scale: int, out_format: str, quality: int | None
) -> str | None:
    """The identity of one output's recipe; None if the input cannot be examined."""
    try:
        st = os.stat(src)
    except OSError:
        return None
    recipe = [PIXELS_VERSION, input_rel, st.st_size, st.st_mtime_ns, model_sha256, scale, out_format, quality]
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


class State:
    """The finished-outputs record of one OUTPUT folder."""

    def __init__(self, output_root: Path):
        self.root = Path(output_root)
        self.path = self.root / STATE_NAME
        self.entries: dict[str, dict] = {}  # the last line of each output
        self._older: dict[str, list[dict]] = {}  # earlier lines, whose file may be the one on disk
        self.pending: set[str] = set()  # outputs a driver was about to write, not yet recorded
        self.damaged = False  # lines were lost: an unrecorded output may still be batchsr's
        self._f = None
        self._lock = threading.Lock()  # records arrive from worker threads
        self._unrecorded = False  # set when the state path cannot hold the record
        self._load()

    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.damaged = True
            self._warn(None, f"cannot be read ({getattr(exc, 'strerror', None) or exc}): every image will be processed")
            return
        if not stat_mode.S_ISREG(st.st_mode):
            # Never opened: a fifo would block the run, a device could be endless.
            self.damaged = True
            self._warn(None, _NOT_A_FILE)
            return
        damaged = 0
        try:
            with open(self.path, "rb") as f:
                for line, complete in _lines(f):
                    e = _entry(line)
                    if e is not None:
                        self._add(e)
                    elif complete or line is None:  # batchsr never writes a blank or a huge line
                        damaged += 1
                    # else: a last line cut short by a kill, which is expected: that output was
                    # never renamed into place, so it is redone
        except OSError as exc:
            self.damaged = True
            self._warn(
                st, f"cannot be read ({exc.strerror or exc}): the images it does not vouch for will be processed"
            )
            return
        if damaged:
            self.damaged = True
            self._warn(
                st,
                f"has {damaged} damaged line{'s' if damaged > 1 else ''}, ignored: "
                "the images they recorded are processed again",
            )

    def _add(self, e: dict) -> None:
        rel = e["out"]
        if e.get("pending") is True:
            self.pending.add(rel)
            return
        last = self.entries.get(rel)
        if last is not None and (last["size"], last["mtime_ns"]) != (e["size"], e["mtime_ns"]):
            self._older.setdefault(rel, []).append(last)
        self.entries[rel] = e

    def _on_disk(self, rel: str) -> tuple[os.stat_result | None, dict | None]:
        """The stat of the file at ``rel`` (None if none) and the line that describes it (None if none)."""
        try:
            st = os.lstat(self.root / rel)
        except (OSError, ValueError):
            return None, None
        for e in (self.entries.get(rel), *reversed(self._older.get(rel, ()))):
            if (
                e is not None
                and stat_mode.S_ISREG(st.st_mode)
                and (st.st_size, st.st_mtime_ns) == (e["size"], e["mtime_ns"])
            ):
                return st, e
        return st, None

    def _warn(self, st: os.stat_result | None, what: str) -> None:
        """Log ``{path} {what}`` once per process for this state of the file."""
        ident = (str(self.path), what) + ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st else ())
        with _warned_lock:
            if ident in _warned:
                return
            _warned.add(ident)
        log.warning("%s %s", self.path, what)

    def check(self, out_rel: str, key: str | None) -> tuple[dict | None, str | None]:
        """What one look at the file at ``out_rel`` says (one ``lstat``): its entry if that output
        is up to date for ``key`` (else None), and otherwise why the file there is not batchsr's to
        replace (a phrase: "was changed since batchsr wrote it"), None when the path is free or
        holds an output batchsr wrote and nobody changed since.

        With lines of the record lost to damage, an unrecorded file is taken as
        batchsr's: a damaged record costs at worst redoing images.
        """
        st, e = self._on_disk(out_rel)
        if key is not None and e is not None and e.get("key") == key:
            return e, None
        return None, self._foreign(out_rel, st, e)

    def _foreign(self, out_rel: str, st: os.stat_result | None, e: dict | None) -> str | None:
        if st is None or e is not None or out_rel in self.pending:
            return None
        if out_rel in self.entries:
            return "was changed since batchsr wrote it"
        if self.damaged:
            return None
        what = "a folder" if stat_mode.S_ISDIR(st.st_mode) else "a file"
        return f"is {what} that batchsr did not write"

    def compact(self) -> None:
        """Rewrite the record with one line per output still present (atomically), then open it for appends.

        Something other than a file at the state path (a folder, a fifo) is left
        alone: the run goes on unrecorded, so a rerun processes its images again.
        """

        keep, pending = [], set()
        for rel, last in self.entries.items():
            st, e = self._on_disk(rel)
            if st is not None:  # the line that describes the file, else the last (the file changed)
                keep.append(e or last)
        for rel in self.pending:
            st, e = self._on_disk(rel)
            if st is not None and e is None:
                pending.add(rel)
        self.entries = {e["out"]: e for e in keep}
        self._older, self.pending = {}, pending
        try:
            st = os.lstat(self.path)
        except (OSError, ValueError):
            st = None
        if st is not None and not (stat_mode.S_ISREG(st.st_mode) or stat_mode.S_ISLNK(st.st_mode)):
            self._warn(None, _NOT_A_FILE)
            self._unrecorded = True
            return
        lines = keep + [{"out": rel, "pending": True} for rel in sorted(pending)]
        data = "".join(json.dumps(e) + "\n" for e in lines).encode()
        write_atomic(self.path, lambda f: f.write(data))
        self._f = open(self.path, "a", encoding="utf-8")

    def record(self, out_rel: str, key: str | None, stat: os.stat_result, **extra) -> None:
        """Note that ``out_rel`` (whose finished file has ``stat``) is done; a later call for the same
        file (with the row's figures) supersedes it."""
        if key is None:
            return
        e = {"out": out_rel, "key": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **extra}
        with self._lock:
            self._add(e)
            self._append(e)

    def intend(self, out_rel: str) -> None:
        """Note that batchsr is about to write ``out_rel`` and may rename it into place before
        :meth:`record` (so a kill in between cannot make it look like the user's file)."""
        with self._lock:
            self.pending.add(out_rel)
            self._append({"out": out_rel, "pending": True})

    def _append(self, e: dict) -> None:
        if self._unrecorded:
            return
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(e) + "\n")
        # flush() hands the line to the kernel, which keeps it through a kill -9.
        # No fsync (7 ms an image): the output was fsynced before this line was
        # written, so after a power cut the line can only be missing (the image is
        # redone, or left alone as unrecorded, with a note), never ahead of the data it vouches for.
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _lines(f) -> Iterator[tuple[bytes | None, bool]]:
    """The lines of a binary file as (bytes, ended by a newline); a line over MAX_LINE comes
    back as None (damage), skipped without ever being held whole."""
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = f.readline(MAX_LINE)
            yield None, bool(line)
        else:
            yield line, line.endswith(b"\n")


def figures(entry: dict) -> dict:
    """The report fields a line carries (counts, figures, model, notes), for a rerun's row."""
    return {k: entry.get(k) for k in COUNTS + FIGURES if entry.get(k) is not None} | {
        k: entry[k] for k in TEXTS if entry.get(k)
    }


def _entry(line: bytes | None) -> dict | None:
    """The entry a line holds, or None if it is not a well-formed one (any damage)."""
    if line is None:
        return None
    try:
        e = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError):
        return None  # not UTF-8, not JSON, nested too deep for the parser
    if not isinstance(e, dict) or not _relative_path(e.get("out")):
        return None
    if e.get("pending") is True:
        return {"out": e["out"], "pending": True}
    if not isinstance(e.get("key"), str):
        return None
    # Counts are ints (bool is not one); an optional one may be absent or null.
    if type(e.get("size")) is not int or type(e.get("mtime_ns")) is not int or e["size"] < 0:
        return None
    for k in COUNTS:
        v = e.get(k)
        if v is not None and (type(v) is not int or v < 0):
            return None
    for k in FIGURES:
        if type(e.get(k)) not in (int, float, type(None)):
            del e[k]
    for k in TEXTS:
        if k in e and not isinstance(e[k], str):
            del e[k]
    return e


def _relative_path(rel) -> bool:
    """Whether ``rel`` is a path batchsr could have recorded: relative, inside OUTPUT, encodable."""
    if not isinstance(rel, str) or not rel or "\0" in rel:
        return False
    if any(part in ("", ".", "..") for part in rel.split("/")):  # absolute, empty, or leaving OUTPUT
        return False
    try:
        os.fsencode(rel)
    except UnicodeError:
        return False
    return True
