"""Whole runs in-process: bad input, model output checks, resume, dry run, locking, what is written where."""

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import photo
from helpers.images import png_header_only
from helpers.onnx_models import conv_net
from onnx import numpy_helper
from PIL import Image

from batchsr import cli, decode, pipeline
from batchsr.config import RunConfig
from batchsr.lock import LOCK_NAME, Locked, RunLock
from batchsr.models import load
from batchsr.resume import STATE_NAME


def _jpeg_bytes(seed=0, w=40, h=30):
    buf = io.BytesIO()
    photo(seed, w, h).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _bad_inputs(folder: Path) -> dict[str, str]:
    """Every kind of bad input the issue lists, plus good images around them; name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    photo(1, 40, 30).save(folder / "good1.jpg")
    photo(2, 40, 30).save(folder / "good2.png")
    jpg = _jpeg_bytes()
    (folder / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not a photo\n")
    png_header_only(folder / "bomb.png", 20000, 20000)  # 400 megapixels claimed
    buf = io.BytesIO()
    photo(3, 40, 30).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[60:80] = b"\0" * 20  # damage the compressed pixel data
    (folder / "corrupt.png").write_bytes(bytes(data))
    (folder / "header_only.tif").write_bytes(b"II*\0" + b"\xff" * 20)
    (folder / "unreadable.jpg").write_bytes(jpg)
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    return {
        "truncated.jpg": "truncated",
        "zero.png": "empty file",
        "text.jpg": "not an image",
        "bomb.png": "over the limit",
        "corrupt.png": "corrupt",
        "header_only.tif": "corrupt TIFF",
        "unreadable.jpg": "cannot read",
    }


@pytest.fixture
def deny_unreadable(monkeypatch):
    # The tests run as root, which chmod cannot lock out: refuse opening one file instead.
    real_open = open

    def guarded(path, *a, **k):
        if str(path).endswith("unreadable.jpg"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(decode, "open", guarded, raising=False)


def test_bad_input_never_stops_the_batch(tmp_path, random_model, run_folder, deny_unreadable):
    expected = _bad_inputs(tmp_path / "in")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", random_model)
    assert summary.ok == 2 and summary.failed == len(expected) and summary.exit_code == 1
    for name, reason in expected.items():
        r = rows[name]
        assert r["status"] == "error" and reason in r["error"], (name, r["error"])
        assert "\n" not in r["error"] and r["output"] == ""
    assert rows["good1.jpg"]["status"] == rows["good2.png"]["status"] == "ok"
    assert rows["loop_a.jpg"]["status"] == "skipped" and "loop" in rows["loop_a.jpg"]["notes"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert written == ["batchsr-report.csv", "good1.jpg", "good2.png"]


def test_cli_bad_input_gives_one_line_reasons_and_no_traceback(tmp_path, random_model_path):
    import subprocess

    from helpers import ROOT

    _bad_inputs(tmp_path / "in")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchsr",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--model",
            str(random_model_path),
            "--no-psnr",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "batchsr: error " in r.stderr and "empty file (0 bytes)" in r.stderr
    assert r.stdout.strip().startswith("batchsr: 3 ok, 2 skipped, 6 failed in")  # unreadable.jpg is fine here
    assert "images/s" in r.stdout


def test_default_pixel_limit_is_pillows_179_megapixels(tmp_path):
    from batchsr.config import DEFAULT_MAX_PIXELS

    assert 178_000_000 < DEFAULT_MAX_PIXELS < 180_000_000
    with pytest.raises(decode.ImageError, match="corrupt"):  # 150 MP passes the size check
        decode.load(png_header_only(tmp_path / "big.png", 15000, 10000))
    with pytest.raises(decode.ImageError, match="over the limit of 179"):
        decode.load(png_header_only(tmp_path / "bigger.png", 15000, 12000))


def test_fifo_with_an_image_name_is_an_error_row_not_a_hang(tmp_path, random_model, run_folder):
    (tmp_path / "in").mkdir()
    os.mkfifo(tmp_path / "in" / "pipe.jpg")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", random_model)
    assert rows["pipe.jpg"]["status"] == "error" and "not a regular file" in rows["pipe.jpg"]["error"]
    assert summary.exit_code == 1


def test_an_output_that_would_overwrite_its_input_is_refused(tmp_path, random_model, run_folder):
    photo(0, 20, 20).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    summary, rows = run_folder(tmp_path / "a.png", tmp_path, random_model, report=tmp_path / "r" / "r.csv")
    assert rows["a.png"]["status"] == "error" and "input file itself" in rows["a.png"]["error"]
    assert (tmp_path / "a.png").read_bytes() == before


def test_max_pixels_option(tmp_path, random_model, run_folder):
    (tmp_path / "in").mkdir()
    photo(1, 40, 30).save(tmp_path / "in" / "a.png")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", random_model, max_pixels=1000)
    assert rows["a.png"]["status"] == "error" and "over the limit" in rows["a.png"]["error"]


def _model_variant(tmp_path, name, **kw):
    path = conv_net(tmp_path / f"{name}.onnx", **{k: v for k, v in kw.items() if k != "edit"})
    if "edit" in kw:
        m = onnx.load(path)
        for init in m.graph.initializer:
            init.CopyFrom(numpy_helper.from_array(kw["edit"](numpy_helper.to_array(init)), init.name))
        onnx.save(m, path)
    return load(str(path))


@pytest.mark.parametrize(
    "variant,reason",
    [
        ("nan", "NaN or infinity"),
        ("constant", "constant"),
        ("wrong_size", "model returned"),
    ],
)
def test_bad_model_output_is_an_error_not_a_success(tmp_path, run_folder, variant, reason):
    if variant == "nan":
        model = _model_variant(
            tmp_path, variant, edit=lambda a: np.full_like(a, np.nan) if a.dtype.kind == "f" and a.ndim == 1 else a
        )
    elif variant == "constant":
        model = _model_variant(
            tmp_path, variant, skip=False, edit=lambda a: np.zeros_like(a) if a.dtype.kind == "f" else a
        )
    else:
        model = _model_variant(tmp_path, variant, scale=2, metadata={"scale": 3})
    (tmp_path / "in").mkdir()
    photo(1, 40, 30).save(tmp_path / "in" / "a.png")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", model)
    assert rows["a.png"]["status"] == "error" and reason in rows["a.png"]["error"]
    assert not (tmp_path / "out" / "a.png").exists()


def _tree(root: Path, skip: Path | None = None) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        out[p] = (st.st_size, st.st_mtime_ns, p.read_bytes() if p.is_file() and not p.is_symlink() else None)
    return out


def test_input_untouched_and_nothing_written_outside_output(tmp_path, random_model, run_folder, deny_unreadable):
    _bad_inputs(tmp_path / "in")
    (tmp_path / "in" / "sub").mkdir()
    photo(4, 20, 20).save(tmp_path / "in" / "sub" / "c.webp")
    before = _tree(tmp_path)
    report = tmp_path / "elsewhere" / "r.csv"
    run_folder(tmp_path / "in", tmp_path / "out", random_model, report=report)
    after = _tree(tmp_path, skip=tmp_path / "out")
    assert set(after) - set(before) == {report, report.parent}
    assert all(after[p] == before[p] for p in before)  # INPUT byte for byte, mtimes included


def _mtimes(folder: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir() if p.suffix in (".jpg", ".png")}


def test_resume_skips_up_to_date_outputs_and_redoes_the_rest(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i, name in enumerate(("a.jpg", "b.png", "c.jpg")):
        photo(i, 40, 30).save(inp / name)
    (inp / "bad.jpg").write_text("x")
    s1, _ = run_folder(inp, out, random_model)
    assert (s1.ok, s1.failed) == (3, 1)
    first = _mtimes(out)

    s2, rows = run_folder(inp, out, random_model)
    assert (s2.ok, s2.skipped, s2.failed) == (0, 3, 1)  # errors are retried, not skipped
    assert _mtimes(out) == first  # nothing rewritten
    assert rows["a.jpg"]["status"] == "skipped" and rows["a.jpg"]["out_width"] == "120"
    assert "up to date" in rows["a.jpg"]["notes"]

    photo(9, 40, 30).save(inp / "a.jpg")  # new content
    (out / "b.png").unlink()  # output lost
    s3, rows = run_folder(inp, out, random_model)
    assert rows["a.jpg"]["status"] == "ok" and rows["b.png"]["status"] == "ok"
    assert rows["c.jpg"]["status"] == "skipped"

    s4, rows = run_folder(inp, out, random_model, quality=50)  # changes JPEG pixels, not PNG ones
    assert rows["a.jpg"]["status"] == rows["c.jpg"]["status"] == "ok" and rows["b.png"]["status"] == "skipped"

    other = load(str(conv_net(tmp_path / "other.onnx", seed=5)))
    s5, _ = run_folder(inp, out, other, quality=50)
    assert s5.ok == 3  # another model: everything again

    s6, _ = run_folder(inp, out, other, quality=50, overwrite=True)
    assert s6.ok == 3 and s6.skipped == 0


def test_resume_survives_a_state_line_cut_by_a_kill(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(3):
        photo(i, 30, 20).save(inp / f"{i}.png")
    run_folder(inp, out, random_model)
    state = out / STATE_NAME
    lines = state.read_text().splitlines()
    assert len(lines) == 3
    cut = json.loads(lines[2])["out"]  # with --jobs > 1, lines come in completion order
    state.write_text("\n".join(lines[:2]) + "\n" + lines[2][:25])  # the last append was cut short
    # The kill came before the rename that follows the append: no output, a temporary file.
    (out / cut).unlink()
    (out / f".{cut}.abc123.batchsr-tmp").write_bytes(b"partial")
    s, rows = run_folder(inp, out, random_model)
    assert {name: rows[name]["status"] for name in rows} == {
        f"{i}.png": "ok" if f"{i}.png" == cut else "skipped" for i in range(3)
    }
    assert not list(out.glob("*.batchsr-tmp"))
    assert all(json.loads(x) for x in state.read_text().splitlines())


def test_an_output_replaced_by_someone_else_is_left_alone_unless_overwrite(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 30, 20).save(inp / "a.png")
    run_folder(inp, out, random_model)
    photo(5, 10, 10).save(out / "a.png")  # retouched by hand
    theirs = (out / "a.png").read_bytes()
    s, rows = run_folder(inp, out, random_model)
    assert rows["a.png"]["status"] == "skipped" and "changed since batchsr wrote it" in rows["a.png"]["notes"]
    assert (out / "a.png").read_bytes() == theirs and s.exit_code == 0
    s, rows = run_folder(inp, out, random_model, overwrite=True)
    assert rows["a.png"]["status"] == "ok"
    with Image.open(out / "a.png") as im:
        assert im.size == (90, 60)


def test_dry_run_lists_and_writes_nothing(tmp_path, random_model, run_folder, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 30, 20).save(inp / "a.png")
    photo(1, 30, 20).save(inp / "b.png")
    os.symlink(tmp_path, inp / "up")
    s, _ = run_folder(inp, out, random_model, dry_run=True)
    assert not out.exists() and (s.ok, s.skipped) == (2, 1)
    text = capsys.readouterr().out
    assert f"process {inp / 'a.png'} -> {out / 'a.png'}" in text
    assert "not followed" in text

    run_folder(inp, out, random_model, report=tmp_path / "r.csv")
    (inp / "b.png").touch()
    os.utime(inp / "b.png", ns=(1, 1))
    before = _tree(out)
    s, _ = run_folder(inp, out, random_model, dry_run=True)
    text = capsys.readouterr().out
    assert f"skip    {inp / 'a.png'}: up to date" in text and f"process {inp / 'b.png'}" in text
    assert _tree(out) == before


def test_report_has_a_row_for_every_discovered_input(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    names = ["a,b.jpg", 'q"uote.png', "new\nline.png", "Zoë 東京.jpg", "=cmd.png"]
    for i, n in enumerate(names):
        photo(i, 20, 20).save(inp / n, format="PNG" if n.endswith("png") else "JPEG")
    os.symlink(tmp_path, inp / "up")
    (inp / ".DS_Store").write_bytes(b"\0")
    (inp / "readme.txt").write_text("notes")
    s, rows = run_folder(inp, out, random_model)
    assert sorted(rows) == sorted(names + ["up"])
    assert all(rows[n]["status"] == "ok" for n in names) and rows["up"]["status"] == "skipped"
    for n in names:
        assert Path(rows[n]["output"]).name == n and (out / n).exists()


def test_second_run_on_a_locked_output_exits_3(tmp_path, random_model_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    photo(0, 20, 20).save(inp / "a.png")
    with RunLock(out):
        cfg = RunConfig(input=inp, output=out, model=str(random_model_path), psnr=False)
        with pytest.raises(Locked, match=f"pid {os.getpid()}"):
            pipeline.run(cfg, load(str(random_model_path)))
        code = cli.main([str(inp), str(out), "--model", str(random_model_path), "--quiet"])
    assert code == 3
    assert "is in use by batchsr pid" in capsys.readouterr().err
    assert not (out / "batchsr-report.csv").exists() and not (out / "a.png").exists()


def test_a_stale_lock_is_taken_over(tmp_path, random_model, run_folder, caplog):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    photo(0, 20, 20).save(inp / "a.png")
    (out / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "darkroom", "started": 0}))
    s, rows = run_folder(inp, out, random_model)
    assert s.ok == 1
    assert "left by batchsr pid 999999 on darkroom" in caplog.text
    assert (out / LOCK_NAME).read_text() == ""  # a clean end leaves no stale details


def _exit_code(args):
    try:
        return cli.main(args)
    except SystemExit as e:  # argparse leaves by SystemExit
        return e.code


def test_cli_usage_errors_exit_2(tmp_path, random_model_path, capsys):
    photo(0, 20, 20).save(tmp_path / "a.png")
    a, o = str(tmp_path / "a.png"), str(tmp_path / "o")
    assert _exit_code([str(tmp_path / "missing"), o]) == 2
    assert _exit_code([a, o, "--format", "gif"]) == 2
    assert _exit_code([a, o, "--quality", "0"]) == 2
    assert _exit_code([a, o, "--model", str(tmp_path / "nope.onnx")]) == 2
    assert not Path(o).exists()


def test_cli_summary_line_and_exit_codes(tmp_path, random_model_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(0, 20, 20).save(inp / "a.png")
    args = [str(inp), str(tmp_path / "o"), "--model", str(random_model_path), "--quiet"]
    assert cli.main(args) == 0
    assert "1 ok, 0 skipped, 0 failed" in capsys.readouterr().out
    assert cli.main(args) == 0  # all skipped is success
    assert "0 ok, 1 skipped, 0 failed" in capsys.readouterr().out
    (inp / "b.jpg").write_text("x")
    assert cli.main(args) == 1
    assert cli.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "dry run" in out


def test_an_image_waiting_for_its_fsync_lets_the_next_one_compute(tmp_path, random_model_path, monkeypatch):
    """--jobs 2: two images compute at once; while both wait on the disk (fsync), a third starts.

    A handshake, not timing: the first two images to compute wait for each other
    (a barrier), so both hold a compute slot at once; then each one's fsync waits
    until a third image computes, which it can only do with a slot one of them
    handed on. Before compute slots were handed on at the fsync, nothing could
    free one and the waits timed out. Every wait has a timeout, so a regression
    fails instead of hanging.
    """
    import os
    import threading

    from PIL import Image

    from batchsr import process, upscaling
    from batchsr.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 14, 3), 40 * i, np.uint8)).save(src / f"{i}.png")
    both_computing = threading.Barrier(2, timeout=30)
    third_computing = threading.Event()
    failures = []
    computing, held, most = [0], [0], [0]
    lock = threading.Lock()
    real_fsync, real_bands = os.fsync, upscaling.upscale_bands
    real_acquire, real_release = process.ComputeSlot.acquire, process.ComputeSlot.release

    def fsync(fd):
        # Only the images' outputs wait: workers fsync nothing else; the driver (the main
        # thread) writes its own files.
        if threading.current_thread() is not threading.main_thread() and not third_computing.wait(30):
            failures.append("an fsync waited for a third image that never started computing")
        real_fsync(fd)

    def bands(*a, **k):
        # Called with the image's compute slot held, before its first band is computed.
        with lock:
            computing[0] += 1
            nth = computing[0]
        if nth <= 2:
            try:
                both_computing.wait()
            except threading.BrokenBarrierError:
                failures.append("the first two images did not compute at the same time")
        else:
            third_computing.set()
        return real_bands(*a, **k)

    def acquire(self):
        was = self._held
        real_acquire(self)
        if not was:
            with lock:
                held[0] += 1
                most[0] = max(most[0], held[0])

    def release(self):
        was = self._held
        real_release(self)
        if was:
            with lock:
                held[0] -= 1

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(process, "upscale_bands", bands)
    monkeypatch.setattr(process.ComputeSlot, "acquire", acquire)
    monkeypatch.setattr(process.ComputeSlot, "release", release)
    out = tmp_path / "out"
    assert main([str(src), str(out), "--model", str(random_model_path), "--jobs", "2", "--no-psnr", "--quiet"]) == 0
    assert failures == [] and computing[0] == 3 and third_computing.is_set()
    assert most[0] == 2  # two at once (the barrier), never more than --jobs
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png", "2.png"]
