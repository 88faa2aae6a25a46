"""Real batchsr processes: killed with SIGKILL mid-run then resumed, and two runs on one OUTPUT."""

import json
import signal
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, photo
from helpers.processes import done_lines, wait_for
from PIL import Image

from batchsr.lock import LOCK_NAME
from batchsr.report import read_rows

N = 80


def _inputs(folder: Path, size: int = 64) -> list[str]:
    folder.mkdir()
    im = photo(0, size, size)
    names = [f"{i:04d}.png" for i in range(N)]
    for n in names:
        im.save(folder / n, compress_level=1)
    return names


def _start(inp: Path, out: Path, model: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(model)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished_outputs(out: Path) -> dict[str, tuple[int, int]]:
    """Outputs at final paths, each checked to be a complete image: name -> (inode, mtime_ns)."""
    found = {}
    for p in out.iterdir():
        if p.suffix == ".png" and not p.name.startswith("."):
            with Image.open(p) as im:
                assert im.size == (192, 192)
                im.load()  # raises on a truncated file
            st = p.stat()
            found[p.name] = (st.st_ino, st.st_mtime_ns)
    return found


def test_kill_9_mid_run_then_resume_finishes_only_what_is_missing(tmp_path, random_model_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    names = _inputs(inp)
    first = _start(inp, out, random_model_path)
    # Outputs at their final paths, not resume lines: a line is written just before its
    # file's rename, so a kill between the two leaves a line whose file resume redoes.
    wait_for(
        lambda: len([p for p in out.glob("*.png") if not p.name.startswith(".")]) >= 5, first, "five finished images"
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL

    complete = _finished_outputs(out)  # every file at a final path is a whole image
    assert 5 <= len(complete) < N

    second = subprocess.run(
        [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(random_model_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    assert f"{N - len(complete)} ok, {len(complete)} skipped, 0 failed" in second.stdout
    assert "Traceback" not in second.stderr

    final = _finished_outputs(out)
    assert sorted(final) == names
    assert {n: final[n] for n in complete} == complete  # nothing complete was rewritten
    rows = {Path(r["input"]).name: r["status"] for r in read_rows(out / "batchsr-report.csv")}
    assert rows == {n: "skipped" if n in complete else "ok" for n in names}
    assert not [p for p in out.iterdir() if p.name.endswith(".batchsr-tmp")]


def test_a_second_run_is_locked_out_and_a_killed_runs_lock_is_taken_over(tmp_path, random_model_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    # Bigger images than the other test's: the first run must outlast a whole second
    # process (start, lock refusal, exit) before it is killed.
    _inputs(inp, 256)
    first = _start(inp, out, random_model_path)

    def holds_lock() -> bool:
        try:
            return json.loads((out / LOCK_NAME).read_text() or "{}").get("pid") == first.pid
        except (FileNotFoundError, ValueError):
            return False

    wait_for(lambda: holds_lock() and done_lines(out) >= 1, first, "the first run to start working")
    second = subprocess.run(
        [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(random_model_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert first.poll() is None, "the first run ended too early for this test"
    assert second.returncode == 3
    assert f"is in use by batchsr pid {first.pid}" in second.stderr and "Traceback" not in second.stderr

    first.send_signal(signal.SIGKILL)
    first.wait()
    third = subprocess.run(
        [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(random_model_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert third.returncode == 0, third.stderr
    assert f"took over the lock of {out} left by batchsr pid {first.pid}" in third.stderr
    assert len(read_rows(out / "batchsr-report.csv")) == N
