"""Issue 16: SIGINT, SIGTERM and SIGHUP stop a real run cleanly: a one-line message, the shell's
exit code, no temporary file, the lock released, and the CSV, the state record and the outputs
on disk agreeing."""

import fcntl
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, photo

from batchsr.lock import LOCK_NAME
from batchsr.report import read_rows
from batchsr.resume import STATE_NAME

N = 200  # far more than the run finishes before the signal lands (3 outputs)


def _inputs(folder: Path) -> None:
    folder.mkdir()
    im = photo(0, 64, 64)
    for i in range(N):
        im.save(folder / f"{i:04d}.png", compress_level=1)


def _outputs(out: Path) -> set[str]:
    return {p.name for p in out.glob("*.png")}  # final names only: temporaries start with "."


@pytest.mark.parametrize(
    "sig, code, name",
    [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")],
)
def test_a_signal_stops_the_run_and_leaves_report_state_and_disk_agreeing(tmp_path, random_model_path, sig, code, name):
    inp, out = tmp_path / "in", tmp_path / "out"
    _inputs(inp)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchsr",
            str(inp),
            str(out),
            "--model",
            str(random_model_path),
            "--no-psnr",
            "--jobs",
            "2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(_outputs(out)) < 3 if out.is_dir() else True:
        assert proc.poll() is None, f"batchsr ended before 3 outputs: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for 3 outputs"
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    # This test failed once in about 70 runs and never again under load: each message says
    # enough (the run's stderr, the names that disagree) to find the race next time.
    said = stderr[-3000:]
    assert proc.returncode == code, (proc.returncode, said)
    on_disk = _outputs(out)
    assert 3 <= len(on_disk) < N, (len(on_disk), said)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".batchsr-tmp")], said
    rows = read_rows(out / "batchsr-report.csv")
    ok = {Path(r["output"]).name for r in rows if r["status"] == "ok"}
    # every output has its row, every ok row its output
    assert ok == on_disk, (sorted(ok - on_disk), sorted(on_disk - ok), [r["status"] for r in rows], said)
    state = {json.loads(line)["out"] for line in (out / STATE_NAME).read_text().splitlines()}
    assert state == on_disk, (sorted(state - on_disk), sorted(on_disk - state), said)
    # the lock is released and its details cleared (a clean end)
    with open(out / LOCK_NAME, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        details = f.read()
        assert details == "", (details, said)
    assert "Traceback" not in stderr, said
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"batchsr: stopped by {name};"), stderr


def test_a_rerun_after_a_signal_finishes_the_rest(tmp_path, random_model_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _inputs(inp)
    cmd = [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(random_model_path), "--no-psnr"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_outputs(out)) < 3 if out.is_dir() else True:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    done = len(_outputs(out))
    second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"{N - done} ok, {done} skipped, 0 failed" in second.stdout
