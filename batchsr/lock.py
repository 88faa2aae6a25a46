"""One run per OUTPUT folder at a time.

The lock is an OS file lock (``flock``; ``msvcrt.locking`` on Windows) held
on ``OUTPUT/.batchsr.lock`` for the whole run. The operating system releases
it when the process ends in any way, kill -9 included, so a lock can never
outlive its run: a lock file that is still there but not locked is stale and
is simply taken over. The file holds the holder's pid, host and start time
for the message a second run prints; a clean exit empties it, so finding it
non-empty and unlocked means the previous run was killed or crashed.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

LOCK_NAME = ".batchsr.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt


class Locked(Exception):
    """Another live run holds the OUTPUT folder; the message says which."""


def _try_lock(fd: int) -> bool:
    """True if we now hold the lock, False if another process does.

    Other failures (a file system without locks, ENOLCK) raise OSError: saying
    "in use" then would send the user hunting for a run that does not exist.
    """
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, getattr(errno, "EDEADLOCK", -1)):
            return False
        raise


def _read(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 4096).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _describe(info: dict) -> str:
    if not info:
        return "another batchsr run"
    started = info.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
    return f"batchsr pid {info.get('pid', '?')} on {info.get('host', '?')}{since}"


class RunLock:
    """Context manager: hold the lock of ``folder`` (which must exist) or raise Locked.

    ``stale`` is the previous holder's details when a lock left by a killed
    run was taken over, else None.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.stale: dict | None = None
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        # O_NOFOLLOW: a link at the lock's path is refused (ELOOP); its target is never truncated.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            locked = _try_lock(fd)
        except OSError:
            os.close(fd)
            raise
        if not locked:
            info = _read(fd)
            os.close(fd)
            raise Locked(
                f"{self.path.parent} is in use by {_describe(info)}; wait for it to finish or choose another OUTPUT"
            )
        previous = _read(fd)
        self.stale = previous or None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        # On Windows the locked byte 0 cannot be rewritten by others, only by us.
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean end: the next run finds no stale details
        except OSError:
            pass
        os.close(self._fd)  # closing releases the lock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def describe(info: dict) -> str:
        return _describe(info)
