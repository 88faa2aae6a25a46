"""Pillow and process settings that batchsr needs per image, without changing them for others.

``decode.load`` runs in worker threads beside a library caller's own Pillow
code, so it changes nothing process-wide per image: what it needs is
installed once, under a lock, and works per thread:

- ``own_pixel_limit``: in this thread Pillow skips its decompression-bomb
  check (batchsr applies ``--max-pixels`` itself); ``Image.MAX_IMAGE_PIXELS``
  is never written.
- ``warnings_into``: this thread's warnings go to a list (an image's notes),
  where ``warnings.catch_warnings`` would have swapped the process's filters.
- ``umask``: read once, never flipped per write.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from typing import Callable

from PIL import Image

_local = threading.local()  # per thread: own_limit (depth), caught (list of warnings, or None)
_setup_lock = threading.Lock()


def _bomb_check_per_thread(pillow_check: Callable) -> Callable:
    def check(*args, **kwargs):
        if getattr(_local, "own_limit", 0):
            return None  # batchsr's own limit is applied to this image (load's max_pixels)
        return pillow_check(*args, **kwargs)

    check._batchsr = True
    return check


def _install_bomb_check() -> None:
    """Pillow's decompression-bomb check reads the process-wide ``Image.MAX_IMAGE_PIXELS``,
    which belongs to the library caller. Wrapped once here: inside :func:`own_pixel_limit` the
    calling thread skips it; every other caller and thread gets Pillow's check unchanged."""
    with _setup_lock:
        current = getattr(Image, "_decompression_bomb_check", None)
        if current is not None and not getattr(current, "_batchsr", False):
            Image._decompression_bomb_check = _bomb_check_per_thread(current)


_install_bomb_check()


@contextlib.contextmanager
def own_pixel_limit():
    """Within, Pillow opens and decodes any size in this thread only (the caller checks the
    size itself); ``Image.MAX_IMAGE_PIXELS`` is never written."""
    _local.own_limit = getattr(_local, "own_limit", 0) + 1
    try:
        yield
    finally:
        _local.own_limit -= 1


# Warnings of the modules that read images reach our hook every time, not once per
# process (the default): two images with the same damage both get the note. Appended,
# so a filter of the caller's own (ignore, error) still comes first.
_WARNING_MODULES = r"(PIL|pillow_heif)(\.|$)"


def _showwarning_per_thread(previous: Callable) -> Callable:
    def show(message, category, filename, lineno, file=None, line=None):
        caught = getattr(_local, "caught", None)
        if caught is not None:
            caught.append(message)
        else:
            previous(message, category, filename, lineno, file, line)

    show._batchsr = True
    return show


def _route_warnings() -> None:
    """Make sure warnings reach the per-thread hook (a caller's ``catch_warnings`` block
    restores what was there before it, so this is checked at each load, set up rarely)."""
    hooked = getattr(warnings.showwarning, "_batchsr", False)
    if hooked and any(
        f[0] == "always" and f[3] is not None and f[3].pattern == _WARNING_MODULES for f in warnings.filters
    ):
        return
    with _setup_lock:
        if not getattr(warnings.showwarning, "_batchsr", False):
            warnings.showwarning = _showwarning_per_thread(warnings.showwarning)
        if not any(
            f[0] == "always" and f[3] is not None and f[3].pattern == _WARNING_MODULES for f in warnings.filters
        ):
            warnings.filterwarnings("always", module=_WARNING_MODULES, append=True)


@contextlib.contextmanager
def warnings_into(caught: list):
    """Within, the warnings this thread raises are appended to ``caught`` (Warning objects)
    instead of shown; other threads' warnings go wherever they went before. Unlike
    ``warnings.catch_warnings``, it is safe with threads."""
    _route_warnings()
    outer = getattr(_local, "caught", None)
    _local.caught = caught
    try:
        yield
    finally:
        _local.caught = outer


_umask_value: int | None = None


def umask() -> int:
    """The process's umask, read once: from /proc where the kernel shows it, so it is never set."""
    global _umask_value
    if _umask_value is None:
        with _setup_lock:
            if _umask_value is None:
                _umask_value = _read_umask()
    return _umask_value


def _read_umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Elsewhere it can only be read by setting it: once, and to a private mask, so a file
    # another thread creates in that instant is private rather than world-writable.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
