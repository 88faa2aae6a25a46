"""Issue 16: a file at an output path that batchsr did not write, or that changed since, is left
alone (a skipped row saying why) unless --overwrite; and a rerun's report still describes the
whole archive, the rows of images done before keeping their figures and notes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, photo
from PIL import Image

from batchsr.report import read_rows
from batchsr.resume import STATE_NAME, State

KEY = "k" * 64


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "batchsr", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_users_own_file_in_output_is_left_alone_by_a_real_run(tmp_path, random_model_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "1950s").mkdir(parents=True)
    photo(0, 16, 12).save(inp / "1950s" / "wedding.jpg")
    photo(1, 16, 12).save(inp / "1950s" / "garden.jpg")
    (out / "1950s").mkdir(parents=True)
    (out / "1950s" / "wedding.jpg").write_text("my precious file\n")
    r = _cli(inp, out, "--model", random_model_path, "--no-psnr")
    assert r.returncode == 0, r.stderr
    assert (out / "1950s" / "wedding.jpg").read_text() == "my precious file\n"
    rows = {Path(x["input"]).name: x for x in read_rows(out / "batchsr-report.csv")}
    assert rows["garden.jpg"]["status"] == "ok"
    assert rows["wedding.jpg"]["status"] == "skipped"
    assert "batchsr did not write" in rows["wedding.jpg"]["notes"] and "--overwrite" in rows["wedding.jpg"]["notes"]
    assert r.stdout.startswith("batchsr: 1 ok, 1 skipped, 0 failed")

    again = _cli(inp, out, "--model", random_model_path, "--no-psnr")  # still not batchsr's on a rerun
    assert again.returncode == 0 and (out / "1950s" / "wedding.jpg").read_text() == "my precious file\n"
    forced = _cli(inp, out, "--model", random_model_path, "--no-psnr", "--overwrite")
    assert forced.returncode == 0, forced.stderr
    with Image.open(out / "1950s" / "wedding.jpg") as im:
        assert im.size == (16 * 3, 12 * 3)


def test_the_dry_run_says_which_outputs_would_be_left_alone(tmp_path, random_model, run_folder, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 16, 12).save(inp / "a.png")
    out.mkdir()
    (out / "a.png").write_bytes(b"theirs")
    s, _ = run_folder(inp, out, random_model, dry_run=True)
    assert (s.ok, s.skipped) == (0, 1) and not s.empty
    assert "a file that batchsr did not write" in capsys.readouterr().out
    assert (out / "a.png").read_bytes() == b"theirs"


def test_a_folder_at_an_output_path_is_left_alone(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 16, 12).save(inp / "a.png")
    (out / "a.png").mkdir(parents=True)
    (out / "a.png" / "notes.txt").write_text("mine")
    s, rows = run_folder(inp, out, random_model)
    assert rows["a.png"]["status"] == "skipped" and "a folder that batchsr did not write" in rows["a.png"]["notes"]
    assert (out / "a.png" / "notes.txt").read_text() == "mine" and s.exit_code == 0


def test_an_output_touched_since_it_was_written_is_left_alone(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 16, 12).save(inp / "a.png")
    photo(1, 16, 12).save(inp / "b.png")
    run_folder(inp, out, random_model)
    os.utime(out / "a.png", ns=(1, 1))  # same bytes, another mtime: batchsr cannot know what changed
    photo(2, 16, 12).save(inp / "b.png")  # a new input version: batchsr's own unchanged output is redone
    s, rows = run_folder(inp, out, random_model)
    assert rows["a.png"]["status"] == "skipped" and "changed since batchsr wrote it" in rows["a.png"]["notes"]
    assert rows["b.png"]["status"] == "ok"
    assert (out / "a.png").stat().st_mtime_ns == 1


def test_the_record_knows_the_file_on_disk_when_a_later_write_never_renamed(tmp_path):
    """A kill after the record's append but before the rename leaves the older output in place,
    described by the older line: still batchsr's (redone, not left alone), and compaction keeps that line."""
    (tmp_path / "a.png").write_bytes(b"older output")
    st = os.stat(tmp_path / "a.png")
    older = {"out": "a.png", "key": "old" + KEY[3:], "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    newer = {"out": "a.png", "key": KEY, "size": 999, "mtime_ns": 5}
    (tmp_path / STATE_NAME).write_text(json.dumps(older) + "\n" + json.dumps(newer) + "\n")
    state = State(tmp_path)
    assert state.check("a.png", None)[1] is None
    assert state.check("a.png", older["key"])[0] == older and state.check("a.png", KEY)[0] is None
    state.compact()
    state.close()
    assert [json.loads(x) for x in (tmp_path / STATE_NAME).read_text().splitlines()] == [older]


def test_a_pending_line_makes_an_unrecorded_output_batchsrs(tmp_path):
    (tmp_path / "a.png").write_bytes(b"renamed, then the driver was killed")
    (tmp_path / "b.png").write_bytes(b"the user's")
    state = State(tmp_path)
    state.compact()
    state.intend("a.png")
    state.close()
    again = State(tmp_path)
    assert again.check("a.png", None)[1] is None
    assert again.check("b.png", None)[1] == "is a file that batchsr did not write"
    assert again.check("c.png", None)[1] is None  # nothing there: free
    again.compact()  # the pending line survives compaction while its file is unrecorded
    again.close()
    assert State(tmp_path).check("a.png", None)[1] is None


def test_a_damaged_record_costs_redoing_not_leaving_alone(tmp_path):
    (tmp_path / "a.png").write_bytes(b"an output whose line was lost")
    (tmp_path / STATE_NAME).write_bytes(b"\x00\xff garbage\n")
    assert State(tmp_path).check("a.png", None)[1] is None


def test_a_rerun_report_keeps_the_figures_and_notes_of_earlier_runs(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 60, 48).save(inp / "a.jpg", quality=70)
    photo(1, 60, 48, grain=0).save(inp / "b.png")
    _, first = run_folder(inp, out, random_model, psnr=True, format="png")
    assert first["a.jpg"]["jpeg_quality"] and first["b.png"]["psnr_model"] and first["b.png"]["noise_sigma"]
    assert "no PSNR figure for a damaged input (JPEG quality 70)" in first["a.jpg"]["notes"]
    assert "JPEG written as PNG" in first["a.jpg"]["notes"]
    s, again = run_folder(inp, out, random_model, psnr=True, format="png")
    assert s.skipped == 2
    carried = (
        "width",
        "height",
        "out_width",
        "out_height",
        "psnr_bicubic",
        "psnr_model",
        "jpeg_quality",
        "noise_sigma",
    )
    for name in ("a.jpg", "b.png"):
        assert again[name]["status"] == "skipped"
        assert {k: again[name][k] for k in carried} == {k: first[name][k] for k in carried}
        assert again[name]["notes"].startswith("up to date")
    assert "JPEG written as PNG" in again["a.jpg"]["notes"]
    # A third run reads the record the second one compacted: still the same figures.
    _, third = run_folder(inp, out, random_model, psnr=True, format="png")
    for name in ("a.jpg", "b.png"):
        assert {k: third[name][k] for k in carried} == {k: first[name][k] for k in carried}


def test_planning_looks_at_each_output_once(tmp_path, random_model, run_folder, monkeypatch):
    """The resume state looks at each output path once while planning (one lstat), whether the
    output is up to date, stale or the user's."""
    import os

    from batchsr import work
    from batchsr.config import RunConfig

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(3):
        photo(i, 12, 10).save(inp / f"{i}.png")
    run_folder(inp, out, random_model)
    os.utime(inp / "1.png", ns=(1, 1))  # a changed input: its output is stale
    (out / "3.png").write_bytes(b"mine")
    photo(3, 12, 10).save(inp / "3.png")  # its output path holds the user's file
    seen = []
    real = State._on_disk
    monkeypatch.setattr(State, "_on_disk", lambda self, rel: seen.append(rel) or real(self, rel))
    cfg = RunConfig(input=inp, output=out, model=random_model.name, scale=random_model.scale, psnr=False)
    items = work.plan(cfg, random_model)
    assert sorted(seen) == [f"{i}.png" for i in range(4)]
    assert [type(i).__name__ for i, _ in items] == ["Job", "Job", "Job", "Skip"]
    assert items[0][1] is not None and items[1][1] is None  # 0.png up to date, 1.png stale
