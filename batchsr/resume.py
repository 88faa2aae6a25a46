"""What earlier runs finished, so a rerun redoes only what is missing.

The record is ``OUTPUT/.batchsr-state.jsonl``: one JSON line per finished
output, appended just before the output is renamed into place.
A kill can at worst leave a half-written last line, which is ignored; a line
whose output never got renamed is caught because the output's size and
mtime must match what the line says. The file is compacted (rewritten
atomically, one line per output) when a run starts.

An output is up to date when a line for its path has the same key (input
path, size and mtime, model checksum, settings that change pixels) and the
file at the output path still has the recorded size and mtime.

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

log = logging.getLogger("batchsr")

STATE_NAME = ".batchsr-state.jsonl"
# Bump when batchsr's processing changes the pixels it writes for the same
# input and model, so old outputs are no longer taken as up to date.
PIXELS_VERSION = 1
# An entry is a few hundred bytes (a path of at most 4 KiB, a key, six numbers);
# a longer line is damage, and is skipped without being held in memory.
MAX_LINE = 1 << 20
# A good line has "out" (a relative path), "key" (str), "size" and "mtime_ns" (ints),
# and these optional counts as ints or null; other fields travel unchecked.
_OPTIONAL_COUNTS = ("width", "height", "out_width", "out_height")

_NOT_A_FILE = ("is not a file: every image is processed and this run is not recorded (a rerun "
               "processes them again); remove or rename it")
_warned: set = set()  # damaged state files already reported (a run reads the state twice)
_warned_lock = threading.Lock()


def job_key(input_rel: str, src: Path, model_sha256: str, scale: int, out_format: str,
            quality: int | None) -> str | None:
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
        self.entries: dict[str, dict] = {}
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
            self._warn(None, f"cannot be read ({getattr(exc, 'strerror', None) or exc}): every image "
                             "will be processed")
            return
        if not stat_mode.S_ISREG(st.st_mode):
            # Never opened: a fifo would block the run, a device could be endless.
            self._warn(None, _NOT_A_FILE)
            return
        damaged = 0
        try:
            with open(self.path, "rb") as f:
                for line, complete in _lines(f):
                    e = _entry(line)
                    if e is not None:
                        self.entries[e["out"]] = e
                    elif complete and (line is None or line.strip()):
                        damaged += 1
                    # else: a last line cut short by a kill, which is expected: that output is redone
        except OSError as exc:
            self._warn(st, f"cannot be read ({exc.strerror or exc}): the images it does not vouch for "
                           "will be processed")
            return
        if damaged:
            self._warn(st, f"has {damaged} damaged line{'s' if damaged > 1 else ''}, ignored: "
                           "the images they recorded are processed again")

    def _warn(self, st: os.stat_result | None, what: str) -> None:
        """Log ``{path} {what}`` once per process for this state of the file."""
        ident = (str(self.path), what) + ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) if st else ())
        with _warned_lock:
            if ident in _warned:
                return
            _warned.add(ident)
        log.warning("%s %s", self.path, what)

    def done(self, out_rel: str, key: str | None) -> dict | None:
        """The entry for ``out_rel`` if that output is up to date for ``key``, else None."""
        e = self.entries.get(out_rel)
        if e is None or key is None or e.get("key") != key:
            return None
        try:
            st = os.stat(self.root / out_rel)
        except OSError:
            return None
        if st.st_size != e.get("size") or st.st_mtime_ns != e.get("mtime_ns"):
            return None
        return e

    def compact(self) -> None:
        """Rewrite the record with one line per output still present (atomically), then open it for appends.

        Something other than a file at the state path (a folder, a fifo) is left
        alone: the run goes on unrecorded, so a rerun processes its images again.
        """
        from batchsr.images import write_atomic

        keep = [e for rel, e in self.entries.items() if (self.root / rel).exists()]
        self.entries = {e["out"]: e for e in keep}
        try:
            st = os.lstat(self.path)
        except (OSError, ValueError):
            st = None
        if st is not None and not (stat_mode.S_ISREG(st.st_mode) or stat_mode.S_ISLNK(st.st_mode)):
            self._warn(None, _NOT_A_FILE)
            self._unrecorded = True
            return
        data = "".join(json.dumps(e) + "\n" for e in keep).encode()
        write_atomic(self.path, lambda f: f.write(data))
        self._f = open(self.path, "a", encoding="utf-8")

    def record(self, out_rel: str, key: str | None, stat: os.stat_result, **extra) -> None:
        """Note that ``out_rel`` (whose finished file has ``stat``) is done."""
        if key is None:
            return
        e = {"out": out_rel, "key": key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, **extra}
        with self._lock:
            self._record_locked(out_rel, e)

    def _record_locked(self, out_rel: str, e: dict) -> None:
        self.entries[out_rel] = e
        if self._unrecorded:
            return
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(e) + "\n")
        # flush() hands the line to the kernel, which keeps it through a kill -9.
        # No fsync (7 ms an image): the output was fsynced before this line was
        # written, so after a power cut the line can only be missing (the image
        # is redone), never ahead of the data it vouches for.
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


def _entry(line: bytes | None) -> dict | None:
    """The entry a line holds, or None if it is not a well-formed one (any damage)."""
    if line is None:
        return None
    try:
        e = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError):
        return None  # not UTF-8, not JSON, nested too deep for the parser
    if not isinstance(e, dict) or not _relative_path(e.get("out")) or not isinstance(e.get("key"), str):
        return None
    # Counts are ints (bool is not one); an optional one may be absent or null.
    if type(e.get("size")) is not int or type(e.get("mtime_ns")) is not int or e["size"] < 0:
        return None
    for k in _OPTIONAL_COUNTS:
        v = e.get(k)
        if v is not None and (type(v) is not int or v < 0):
            return None
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
