"""Atomic file creation: a temporary file beside the destination, fsync, rename.

A crash or kill at any moment leaves either the previous file or the complete new one at the
destination. Temporary names end in ``TMP_SUFFIX``, which a later run removes.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

from batchsr.isolation import umask

TMP_SUFFIX = ".batchsr-tmp"


# tempfile.mkstemp puts this many random characters between prefix and suffix.
_TMP_RANDOM = 8


def _temp_prefix(dst: Path) -> str:
    """``.NAME.`` for ``dst``'s temporary file, NAME cut (in bytes) so that the whole temporary
    name fits the folder's name limit: any name the file system accepts can be written."""
    try:
        limit = os.pathconf(dst.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255  # what every common file system allows
    room = max(1, limit - 2 - _TMP_RANDOM - len(TMP_SUFFIX))
    raw = os.fsencode(dst.name)
    # A cut inside a multibyte character decodes to surrogate escapes, which encode back to the same bytes.
    return f".{os.fsdecode(raw[:room])}."


def write_atomic(
    dst: Path,
    write: Callable[[io.BufferedWriter], None],
    before_commit: Callable[[os.stat_result], None] | None = None,
    before_sync: Callable[[], None] | None = None,
) -> None:
    """Create ``dst`` through ``write(file)`` on a temporary file in the same folder and a rename.

    A crash or kill at any moment leaves either the previous file or the
    complete new one at ``dst``, never a partial file; the temporary file is
    removed on error (a kill -9 can leave one behind, named
    ``.NAME.*.batchsr-tmp`` with NAME cut to fit the name limit, never at a final path). ``before_commit``
    gets the finished temporary file's stat just before the rename;
    ``before_sync`` is called once every byte is written, before the fsync
    (the pipeline hands its compute slot on there: the fsync only waits).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(dst), suffix=TMP_SUFFIX, dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if before_sync is not None:
                before_sync()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp creates 0600; outputs get normal permissions
        if before_commit is not None:
            before_commit(os.stat(tmp))
        # The folder is not fsynced after the rename (3-4 ms an image): after a
        # power cut the rename may be lost, leaving the old file or none, which
        # resume redoes; the contents were fsynced, so never a partial file.
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
