"""Issue 16, logging: on a terminal each error is printed above the progress bar and the bar counts
failures; --verbose shows each failed image's traceback and not Pillow's debug chatter."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time

from helpers import ROOT, photo


def _folder(inp):
    inp.mkdir()
    for i in range(4):
        photo(i, 24, 16).save(inp / f"{i}.png")
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)


def _on_a_terminal(args) -> tuple[int, str]:
    """Run batchsr with stderr on a pseudo-terminal (so it draws its bar); returns (rc, what it showed)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchsr", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    proc.stdout.read()
    return proc.wait(timeout=30), shown.decode("utf-8", "replace")


def test_an_error_is_printed_above_the_bar_which_counts_failures(tmp_path, random_model_path):
    _folder(tmp_path / "in")
    rc, shown = _on_a_terminal([tmp_path / "in", tmp_path / "out", "--model", random_model_path, "--no-psnr"])
    assert rc == 1
    assert "5/5" in shown  # the bar was drawn
    # tqdm.write clears the bar's line first, so the error starts a line of its own and ends it.
    segments = [s.strip("\x1b[A").strip() for s in shown.replace("\r", "\n").split("\n")]
    errors = [s for s in segments if "batchsr: error" in s]
    assert errors and all(s.startswith("batchsr: error") and "broken.png" in s for s in errors), errors
    assert any("failed=1" in s for s in segments), segments[-5:]


def test_verbose_shows_the_traceback_of_a_failed_image_and_not_pillows_debug_lines(tmp_path, random_model_path):
    _folder(tmp_path / "in")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchsr",
            tmp_path / "in",
            tmp_path / "out",
            "--model",
            random_model_path,
            "--no-psnr",
            "--verbose",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert f"{tmp_path / 'in' / 'broken.png'} failed:\nTraceback" in r.stderr
    assert "STREAM" not in r.stderr and "PIL" not in r.stderr.replace("PIL.", "")  # PngImagePlugin's debug log
    assert r.stderr.count("Traceback") == 1  # the good images have none
