"""Headless Chromium for the report tests: Debian's package, installed when missing, run as a command.

CI installs it the same way before the tests (see INSTALL_COMMAND); on a
machine without it, the first browser test installs it (this needs root,
as in CI), so the browser checks never quietly skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ("chromium", "chromium-browser")
PACKAGES = ("chromium", "fonts-dejavu-core")  # a font, so a minimal image renders text too
INSTALL_COMMAND = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + " ".join(PACKAGES)
)


class BrowserError(Exception):
    pass


def find_chromium() -> str | None:
    for name in NAMES:
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def ensure_chromium() -> str:
    """The Chromium executable, installing Debian's package first when there is none."""
    exe = find_chromium()
    if exe:
        return exe
    if os.geteuid() != 0:
        raise BrowserError(f"Chromium is missing and installing it needs root: run `{INSTALL_COMMAND}`")
    r = subprocess.run(["sh", "-c", INSTALL_COMMAND], capture_output=True, text=True, timeout=900)
    exe = find_chromium()
    if r.returncode != 0 or not exe:
        raise BrowserError(f"installing Chromium failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return exe


def render(
    exe: str,
    page: Path,
    profile: Path,
    width: int,
    height: int,
    screenshot: Path | None = None,
    javascript: bool = True,
) -> str:
    """Open ``page`` from disk in headless Chromium; return the DOM after its scripts ran.

    The window is ``width`` x ``height``; ``screenshot`` (PNG) captures it.
    Network names do not resolve, so anything the page fetched from the
    internet would fail to load.
    """
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--mute-audio",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--virtual-time-budget=5000",
    ]
    if not javascript:
        cmd.append("--blink-settings=scriptEnabled=false")
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    cmd += ["--dump-dom", Path(page).resolve().as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or "<html" not in r.stdout:
        raise BrowserError(f"chromium failed ({r.returncode}): {r.stderr.strip()[-800:]}")
    if screenshot is not None and not screenshot.is_file():
        raise BrowserError("chromium wrote no screenshot")
    return r.stdout


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
