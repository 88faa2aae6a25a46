"""Issue 16, writes: nothing outside OUTPUT through links, no INPUT file a write target,
earlier OUTPUTs inside INPUT not walked, and cron-friendly exit codes for setup failures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, photo

from batchsr import pipeline
from batchsr.config import ASSETS_NAME, HTML_NAME, REPORT_NAME, RunConfig
from batchsr.lock import LOCK_NAME
from batchsr.resume import STATE_NAME


def _cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "batchsr", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _inputs(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        photo(i, 16, 12).save(folder / f"p{i}.png")


def _cfg(inp, out, model, **kw):
    kw.setdefault("psnr", False)
    return RunConfig(input=Path(inp), output=Path(out), model=model.name, scale=model.scale, **kw)


# ------------------------------------------------------------- 1. no writes through links


def test_a_subfolder_of_output_that_is_a_link_receives_no_output(tmp_path, random_model, run_folder):
    _inputs(tmp_path / "in" / "sub")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "p0.png").write_bytes(b"the user's own file")
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "sub")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", random_model)
    assert (elsewhere / "p0.png").read_bytes() == b"the user's own file"
    assert sorted(os.listdir(elsewhere)) == ["p0.png"]  # no output, no temporary file
    for name in ("p0.png", "p1.png"):
        assert rows[name]["status"] == "error" and "symbolic link" in rows[name]["error"], rows[name]
    assert summary.exit_code == 1


def test_a_deeper_link_in_the_output_tree_is_refused_too(tmp_path, random_model, run_folder):
    _inputs(tmp_path / "in" / "a" / "b")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "b").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    os.symlink(elsewhere, tmp_path / "out" / "a")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", random_model)
    assert os.listdir(elsewhere / "b") == []
    assert rows["p0.png"]["status"] == "error" and "symbolic link" in rows["p0.png"]["error"]


@pytest.mark.parametrize("name", [REPORT_NAME, LOCK_NAME, STATE_NAME, HTML_NAME, ASSETS_NAME])
def test_a_run_refuses_an_output_bookkeeping_file_that_is_a_link(tmp_path, random_model, name):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "target"
    if name == ASSETS_NAME:
        target.mkdir()
    else:
        target.write_bytes(b"precious")
    os.symlink(target, out / name)
    with pytest.raises(pipeline.SetupError, match="symbolic link"):
        pipeline.run(_cfg(tmp_path / "in", out, random_model, html=True), random_model)
    if name == ASSETS_NAME:
        assert os.listdir(target) == []
    else:
        assert target.read_bytes() == b"precious"
    assert sorted(os.listdir(out)) == [name]  # refused before any work
    assert os.path.islink(out / name)


def test_the_cli_refuses_a_linked_report_with_one_line_and_rc_2(tmp_path, random_model_path):
    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "target.csv").write_text("precious\n")
    os.symlink(tmp_path / "target.csv", out / REPORT_NAME)
    r = _cli(tmp_path / "in", out, "--model", random_model_path, "--no-psnr")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("batchsr: error: ")
    assert "symbolic link" in r.stderr
    assert (tmp_path / "target.csv").read_text() == "precious\n"


def test_the_report_writer_and_lock_never_follow_a_link(tmp_path):
    """Even past the up-front check (a link made mid-run), the opens refuse to follow."""
    from batchsr.lock import RunLock
    from batchsr.report import CsvReport

    target = tmp_path / "t"
    target.write_bytes(b"precious")
    os.symlink(target, tmp_path / "r.csv")
    with pytest.raises(OSError):
        CsvReport(tmp_path / "r.csv")
    os.symlink(target, tmp_path / LOCK_NAME)
    with pytest.raises(OSError):
        RunLock(tmp_path).acquire()
    assert target.read_bytes() == b"precious"


def test_batchsr_report_refuses_a_linked_page_or_assets_folder(tmp_path, random_model, run_folder):
    from batchsr.html_report import ReportError, build

    _inputs(tmp_path / "in")
    out = tmp_path / "out"
    run_folder(tmp_path / "in", out, random_model)
    (tmp_path / "page").write_text("precious")
    os.symlink(tmp_path / "page", out / HTML_NAME)
    with pytest.raises(ReportError, match="symbolic link"):
        build(out)
    assert (tmp_path / "page").read_text() == "precious"
    os.unlink(out / HTML_NAME)
    (tmp_path / "assets").mkdir()
    os.symlink(tmp_path / "assets", out / ASSETS_NAME)
    with pytest.raises(ReportError, match="symbolic link"):
        build(out)
    assert os.listdir(tmp_path / "assets") == []


# ------------------------------------------------------------- 2. INPUT and OUTPUT overlap


def test_input_inside_output_never_overwrites_an_input(tmp_path, random_model, run_folder):
    lib = tmp_path / "lib"
    _inputs(lib / "scans")
    _inputs(lib / "scans" / "scans")
    before = {p: p.read_bytes() for p in lib.rglob("*.png")}
    summary, rows = run_folder(lib / "scans", lib, random_model)
    for p, data in before.items():
        assert p.read_bytes() == data, p
    inner = [r for r in rows.values() if "/scans/scans/" in r["input"]]
    assert len(inner) == 2
    for r in inner:
        assert r["status"] == "error" and "inside INPUT" in r["error"], r
    assert (lib / "p0.png").is_file()  # the top-level inputs still ran
    assert summary.exit_code == 1


def test_an_earlier_output_inside_input_is_not_walked(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    _inputs(inp)
    run_folder(inp, inp / "old_out", random_model)
    assert (inp / "old_out" / STATE_NAME).exists()
    summary, rows = run_folder(inp, tmp_path / "new_out", random_model)
    assert not (tmp_path / "new_out" / "old_out").exists()
    assert rows["old_out"]["status"] == "skipped" and "earlier batchsr OUTPUT" in rows["old_out"]["notes"]
    assert summary.ok == 2


def test_the_dry_run_says_why_an_earlier_output_is_not_walked(tmp_path, random_model, run_folder):
    inp = tmp_path / "in"
    _inputs(inp / "old")
    (inp / "old" / STATE_NAME).write_text("")
    lines = []
    pipeline.dry_run(_cfg(inp, tmp_path / "out", random_model, dry_run=True), random_model, lines.append)
    assert any("old" in x and "earlier batchsr OUTPUT" in x for x in lines), lines
    assert not any(x.startswith("process") for x in lines)


# ------------------------------------------------------------- 4. exit codes for cron


def test_an_empty_input_is_a_warning_and_rc_4(tmp_path, random_model_path):
    (tmp_path / "in").mkdir()
    r = _cli(tmp_path / "in", tmp_path / "out", "--model", random_model_path, "--no-psnr")
    assert r.returncode == 4, (r.stdout, r.stderr)
    assert "no images found" in r.stderr
    d = _cli(tmp_path / "in", tmp_path / "out2", "--model", random_model_path, "--dry-run")
    assert d.returncode == 4


def test_output_that_cannot_be_created_is_rc_2_with_one_line(tmp_path, random_model_path):
    _inputs(tmp_path / "in")
    (tmp_path / "file.txt").write_text("x")
    r = _cli(tmp_path / "in", tmp_path / "file.txt" / "out", "--model", random_model_path, "--no-psnr")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("batchsr: error: cannot write to OUTPUT ") and "not a directory" in last, last


def test_a_lock_that_cannot_be_taken_is_rc_2(tmp_path, random_model_path):
    _inputs(tmp_path / "in")
    (tmp_path / "out" / LOCK_NAME).mkdir(parents=True)  # root ignores permissions; a folder cannot be opened
    r = _cli(tmp_path / "in", tmp_path / "out", "--model", random_model_path, "--no-psnr")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("batchsr: error: cannot write to OUTPUT ")


def test_a_report_that_cannot_be_written_is_rc_2(tmp_path, random_model_path):
    _inputs(tmp_path / "in")
    (tmp_path / "file.txt").write_text("x")
    r = _cli(
        tmp_path / "in",
        tmp_path / "out",
        "--model",
        random_model_path,
        "--no-psnr",
        "--report",
        tmp_path / "file.txt" / "r.csv",
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("batchsr: error: cannot write the report ") and "not a directory" in last, last
    assert not [p for p in (tmp_path / "out").rglob("*.png")]  # before any work
