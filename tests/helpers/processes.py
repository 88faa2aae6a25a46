"""Helpers for tests that watch a real batchsr process work (test_processes, test_ray_engine)."""

import subprocess
import time
from pathlib import Path

from batchsr.resume import STATE_NAME


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until true; fail if ``proc`` ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"batchsr ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def done_lines(out: Path) -> int:
    """Lines of the resume record that say an output is finished (not the pending ones)."""
    try:
        return sum('"pending": true' not in ln for ln in (out / STATE_NAME).read_text().splitlines())
    except FileNotFoundError:
        return 0
