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
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("batchsr")

STATE_NAME = ".batchsr-state.jsonl"
# Bump when batchsr's processing changes the pixels it writes for the same
# input and model, so old outputs are no longer taken as up to date.
PIXELS_VERSION = 1


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
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s): every image will be processed", self.path, exc.strerror)
            return
        for line in text.splitlines():
            try:
                e = json.loads(line)
                self.entries[e["out"]] = e
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill, or damage: that output is simply redone

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
        """Rewrite the record with one line per output still present (atomically), then open it for appends."""
        from batchsr.images import write_atomic

        keep = [e for rel, e in self.entries.items() if (self.root / rel).exists()]
        self.entries = {e["out"]: e for e in keep}
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
