"""A damaged OUTPUT/.batchsr-state.jsonl is a note, never a crash: at worst images are redone.

Every kind of damage goes through the resume API and through a real ``batchsr`` process."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from helpers import ROOT
from PIL import Image

from batchsr.report import read_rows
from batchsr.resume import STATE_NAME, State

KEY = "0" * 64


def _line(out="a.png", **fields) -> str:
    e = {"out": out, "key": KEY, "size": 10, "mtime_ns": 1, **fields}
    return json.dumps({k: v for k, v in e.items() if v is not ...})


def _bytes(content):
    return lambda path, good: path.write_bytes(content(good) if callable(content) else content)


def _directory(path, good):
    path.mkdir()
    (path / "keep.txt").write_text("not batchsr's")


def _fifo(path, good):
    os.mkfifo(path)


_rng = np.random.default_rng(16)
# name -> what to put at the state path, given the good lines of an earlier run.
DAMAGE = {
    "random bytes": _bytes(bytes(_rng.integers(0, 256, 5000, dtype=np.uint8))),
    "random bytes with newlines": _bytes(bytes(_rng.integers(0, 256, 5000, dtype=np.uint8)).replace(b"\x7f", b"\n")),
    "invalid UTF-8": _bytes(b"\xff\xfe\xc3\x28\xa0\xa1\n\xe2\x82\n"),
    "invalid UTF-8 inside JSON": _bytes(lambda good: good.replace(b'"out": "', b'"out": "\xff\xfe')),
    "NUL bytes": _bytes(lambda good: good.replace(b"{", b"\0{\0")),
    "empty": _bytes(b""),
    "only newlines": _bytes(b"\n\n\r\n \n"),
    "a list": _bytes(b"[1, 2, 3]\n"),
    "a string": _bytes(b'"a.png"\n'),
    "a number": _bytes(b"42\n"),
    "null": _bytes(b"null\n"),
    "true": _bytes(b"true\n"),
    "deeply nested": _bytes(b"[" * 200_000 + b"\n"),
    "deeply nested object": _bytes(b'{"out": ' * 100_000 + b"\n"),
    "huge number": _bytes(b"1" * 100_000 + b"\n"),
    "huge line": _bytes(lambda good: b'{"out": "a.png", "pad": "' + b"x" * (24 << 20) + b'"}\n' + good),
    "huge line without an end": _bytes(b'{"out": "' + b"y" * (24 << 20)),
    "no out": _bytes(_line(out=...).encode() + b"\n"),
    "no key": _bytes(_line(key=...).encode() + b"\n"),
    "out a number": _bytes(_line(out=5).encode() + b"\n"),
    "out null": _bytes(_line(out=None).encode() + b"\n"),
    "out a list": _bytes(_line(out=["a.png"]).encode() + b"\n"),
    "out an object": _bytes(_line(out={"a": 1}).encode() + b"\n"),
    "out empty": _bytes(_line(out="").encode() + b"\n"),
    "out absolute": _bytes(_line(out="/etc/passwd").encode() + b"\n"),
    "out leaves OUTPUT": _bytes(_line(out="../x.png").encode() + b"\n"),
    "out with NUL": _bytes(_line(out="a\0.png").encode() + b"\n"),
    "out not encodable": _bytes(_line(out="\ud800.png").encode() + b"\n"),
    "key a number": _bytes(_line(key=7).encode() + b"\n"),
    "size a string": _bytes(_line(size="10").encode() + b"\n"),
    "size true": _bytes(_line(size=True).encode() + b"\n"),
    "mtime a float": _bytes(_line(mtime_ns=1.5).encode() + b"\n"),
    "size NaN": _bytes(b'{"out": "a.png", "key": "' + KEY.encode() + b'", "size": NaN, "mtime_ns": 1}\n'),
    "width a string": _bytes(_line(width="wide").encode() + b"\n"),
    "height an object": _bytes(_line(height={"h": 1}).encode() + b"\n"),
    "good lines with a cut last line": _bytes(lambda good: good + good[: len(good) // 2]),
    "garbage between good lines": _bytes(lambda good: b"\x00\xff garbage\n" + good + b"[1]\n{}\n"),
    "good lines for wrong types": _bytes(lambda good: good.replace(b'"size": ', b'"size": "')),
    "a directory": _directory,
    "a fifo": _fifo,
}
# Damage that leaves the good lines readable: those images may stay skipped.
KEEPS_GOOD_LINES = {"good lines with a cut last line", "garbage between good lines", "huge line"}
NOT_A_FILE = {"a directory", "a fifo"}
# An empty record is also what a run that wrote nothing leaves: the outputs it
# no longer describes look like the user's own files, so they are left alone.
LOOKS_UNDAMAGED = {"empty"}


def _in_thread(fn, path, timeout=10.0):
    """fn() in a thread; a read that blocks (a fifo) fails the test instead of hanging it."""
    result, errors = [], []
    t = threading.Thread(target=lambda: _capture(fn, result, errors), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        if path.is_fifo():
            with open(path, "wb"):  # let the blocked reader go
                pass
        pytest.fail("reading the state blocked")
    if errors:
        raise errors[0]
    return result[0]


def _capture(fn, result, errors):
    try:
        result.append(fn())
    except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
        errors.append(exc)


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_resume_api_survives_any_damage(tmp_path, kind):
    out = tmp_path
    (out / "a.png").write_bytes(b"x" * 10)
    st = os.stat(out / "a.png")
    good = (
        json.dumps(
            {
                "out": "a.png",
                "key": KEY,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "width": 2,
                "height": 2,
                "out_width": 6,
                "out_height": 6,
            }
        )
        + "\n"
    ).encode()
    DAMAGE[kind](out / STATE_NAME, good)
    state = _in_thread(lambda: State(out), out / STATE_NAME)
    entry = state.check("a.png", KEY)[0]
    if kind in KEEPS_GOOD_LINES:
        assert entry is not None and entry["width"] == 2
    else:
        assert entry is None  # redone
    for rel in list(state.entries):
        assert isinstance(rel, str)
    _in_thread(state.compact, out / STATE_NAME)
    state.record("a.png", KEY, st, width=2, height=2, out_width=6, out_height=6)
    state.close()
    again = _in_thread(lambda: State(out), out / STATE_NAME)
    if kind in NOT_A_FILE:
        assert again.check("a.png", KEY)[0] is None  # could not be recorded: redone next time too
        assert (kind == "a directory") == (out / STATE_NAME / "keep.txt").exists()  # left alone
    else:
        assert again.check("a.png", KEY)[0]["out_width"] == 6  # the record works again
        lines = [json.loads(x) for x in (out / STATE_NAME).read_text().splitlines()]
        assert lines and all(e["out"] == "a.png" and e["key"] == KEY for e in lines)  # damage compacted away


def test_damage_is_reported_once_in_a_line(tmp_path, caplog):
    (tmp_path / STATE_NAME).write_bytes(b"garbage\n[1]\n" + _line().encode() + b"\n")
    with caplog.at_level("WARNING", logger="batchsr"):
        State(tmp_path)
        State(tmp_path)  # a run reads the state twice (plan, then run): one warning
    msgs = [r.getMessage() for r in caplog.records if STATE_NAME in r.getMessage()]
    assert len(msgs) == 1 and "\n" not in msgs[0] and "2 damaged" in msgs[0], msgs


def test_a_line_cut_by_a_kill_is_not_called_damage(tmp_path, caplog):
    (tmp_path / STATE_NAME).write_bytes(_line().encode() + b"\n" + _line("b.png").encode()[:20])
    with caplog.at_level("WARNING", logger="batchsr"):
        state = State(tmp_path)
    assert list(state.entries) == ["a.png"]
    assert not [r for r in caplog.records if STATE_NAME in r.getMessage()]


def _batchsr(inp, out, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", "fast", "--no-psnr", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """INPUT with two tiny photos and the OUTPUT (with its state) of a clean first run."""
    base = tmp_path_factory.mktemp("first")
    inp = base / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (12, 15, 3), dtype=np.uint8)).save(inp / f"{i}.png")
    r = _batchsr(inp, base / "out")
    assert r.returncode == 0, r.stderr
    return inp, base / "out"


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_real_run_redoes_images_whatever_the_damage(tmp_path, first_run, kind):
    import shutil

    inp, first_out = first_run
    out = tmp_path / "out"
    shutil.copytree(first_out, out)
    good = (out / STATE_NAME).read_bytes()
    (out / STATE_NAME).unlink()
    DAMAGE[kind](out / STATE_NAME, good)
    r = _batchsr(inp, out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    rows = {os.path.basename(x["input"]): x["status"] for x in read_rows(out / "batchsr-report.csv")}
    if kind in KEEPS_GOOD_LINES:
        assert set(rows.values()) <= {"ok", "skipped"}
    elif kind in LOOKS_UNDAMAGED:
        assert rows == {"0.png": "skipped", "1.png": "skipped"}
        notes = [x["notes"] for x in read_rows(out / "batchsr-report.csv")]
        assert all("batchsr did not write" in n and "--overwrite" in n for n in notes), notes
        r = _batchsr(inp, out, "--overwrite")
        assert r.returncode == 0, r.stderr
    else:
        assert rows == {"0.png": "ok", "1.png": "ok"}  # redone
    again = _batchsr(inp, out)
    assert again.returncode == 0, again.stderr
    rows = {os.path.basename(x["input"]): x["status"] for x in read_rows(out / "batchsr-report.csv")}
    assert rows == ({"0.png": "ok", "1.png": "ok"} if kind in NOT_A_FILE else {"0.png": "skipped", "1.png": "skipped"})
    if kind == "a directory":
        assert (out / STATE_NAME / "keep.txt").read_text() == "not batchsr's"
