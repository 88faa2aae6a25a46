"""The command line end to end on generated folders: outputs, report, exit codes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, photo
from PIL import Image

from batchsr.cli import main
from batchsr.report import COLUMNS, read_rows

REQUIRED = [
    "input",
    "output",
    "status",
    "error",
    "width",
    "height",
    "out_width",
    "out_height",
    "scale",
    "model",
    "seconds",
    "psnr_bicubic",
    "psnr_model",
]


@pytest.fixture
def tree(tmp_path) -> Path:
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    # Clean images (no grain, a high JPEG quality): the PSNR experiment runs on every one.
    photo(0, 61, 47, grain=0).save(src / "a.jpg", quality=95)
    photo(1, 40, 33, grain=0).save(src / "sub" / "b.png")
    photo(2, 29, 31, "L", grain=0).save(src / "sub" / "deeper" / "grey.png")
    (src / "notes.txt").write_text("not an image, no image suffix")
    return src


def test_tree_is_mirrored_with_sizes_and_formats(tree, tmp_path, random_model_path, capsys):
    out = tmp_path / "out"
    assert main([str(tree), str(out), "--model", str(random_model_path)]) == 0
    for rel, size, mode in [
        ("a.jpg", (183, 141), "RGB"),
        ("sub/b.png", (120, 99), "RGB"),
        ("sub/deeper/grey.png", (87, 93), "L"),
    ]:
        with Image.open(out / rel) as im:
            assert im.size == size and im.mode == mode, rel
    assert not (out / "notes.txt").exists()
    rows = read_rows(out / "batchsr-report.csv")
    assert list(rows[0].keys()) == COLUMNS and COLUMNS[: len(REQUIRED)] == REQUIRED
    assert [Path(r["input"]).name for r in rows] == ["a.jpg", "b.png", "grey.png"]  # sorted walk
    for r in rows:
        assert r["status"] == "ok" and r["error"] == ""
        assert int(r["out_width"]) == 3 * int(r["width"]) and r["scale"] == "3"
        assert float(r["psnr_bicubic"]) > 10 and float(r["psnr_model"]) > 0
        assert float(r["seconds"]) >= 0 and "CPUExecutionProvider" in r["providers"]
    assert "3 ok, 0 skipped, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("precision, label", [("fp32", "default x3"), ("int8", "default x3 int8")])
def test_default_model_beats_bicubic_on_real_photos(tmp_path, default_model, precision, label):
    out = tmp_path / "out"
    assert main([str(ROOT / "examples" / "photos"), str(out), "--quiet", "--precision", precision]) == 0
    rows = read_rows(out / "batchsr-report.csv")
    assert len(rows) == 5
    for r in rows:
        assert float(r["psnr_model"]) > float(r["psnr_bicubic"]), r["input"]
        assert r["model"] == label


def test_bad_file_is_a_row_and_exit_1(tree, tmp_path, random_model_path):
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    assert main([str(tree), str(out), "--model", str(random_model_path), "--quiet"]) == 1
    rows = {Path(r["input"]).name: r for r in read_rows(out / "batchsr-report.csv")}
    assert rows["broken.jpg"]["status"] == "error" and rows["broken.jpg"]["error"]
    assert rows["broken.jpg"]["output"] == "" and not (out / "broken.jpg").exists()
    assert sum(r["status"] == "ok" for r in rows.values()) == 3


def test_tiled_and_whole_runs_write_the_same_pixels(tree, tmp_path, random_model_path):
    a, b = tmp_path / "whole", tmp_path / "tiled"
    assert main([str(tree), str(a), "--model", str(random_model_path), "--tile", "0", "--quiet"]) == 0
    assert main([str(tree), str(b), "--model", str(random_model_path), "--tile", "7", "--quiet"]) == 0
    for rel in ["sub/b.png", "sub/deeper/grey.png"]:
        x, y = np.asarray(Image.open(a / rel)).astype(int), np.asarray(Image.open(b / rel)).astype(int)
        assert np.abs(x - y).max() <= 1  # float-exact tiles; at most a rounding flip in 8 bits
        assert (x != y).mean() < 1e-3


def test_output_inside_input_is_not_walked(tree, random_model_path):
    out = tree / "restored"
    assert main([str(tree), str(out), "--model", str(random_model_path), "--quiet"]) == 0
    assert main([str(tree), str(out), "--model", str(random_model_path), "--quiet"]) == 0
    rows = read_rows(out / "batchsr-report.csv")
    assert len(rows) == 3 and not any("restored" in r["input"] for r in rows)


def test_single_file_and_custom_report(tree, tmp_path, random_model_path):
    rep = tmp_path / "reports" / "r.csv"
    assert (
        main(
            [
                str(tree / "a.jpg"),
                str(tmp_path / "o"),
                "--model",
                str(random_model_path),
                "--report",
                str(rep),
                "--quiet",
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "a.jpg").is_file()
    assert len(read_rows(rep)) == 1 and not (tmp_path / "o" / "batchsr-report.csv").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing_dir", "out"], "input not found"),
        (["IN", "out", "--scale", "5"], "invalid choice"),
        (["IN", "out", "--tile", "-1"], "--tile"),
        (["IN", "out", "--model", "nosuchmodel"], "no shipped model 'nosuchmodel'"),
        (["IN", "out", "--model", "missing.onnx"], "model file not found"),
        (["IN", "out", "--providers", "cuda"], "not available here"),
        (["IN", "IN"], "OUTPUT must differ from INPUT"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tree, tmp_path, args, message):
    args = [str(tree) if a == "IN" else str(tmp_path / a) if a in ("out", "missing_dir") else a for a in args]
    p = subprocess.run([sys.executable, "-m", "batchsr", *args], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr


def test_quiet_prints_only_the_summary(tree, tmp_path, random_model_path):
    p = subprocess.run(
        [sys.executable, "-m", "batchsr", str(tree), str(tmp_path / "o"), "--model", str(random_model_path), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0
    assert p.stderr == ""
    assert p.stdout.strip().splitlines() == [p.stdout.strip()]
    assert p.stdout.startswith("batchsr: 3 ok, 0 skipped, 0 failed")


def test_plain_log_lines_when_not_a_terminal(tree, tmp_path, random_model_path):
    p = subprocess.run(
        [sys.executable, "-m", "batchsr", str(tree), str(tmp_path / "o"), "--model", str(random_model_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0
    lines = p.stderr.splitlines()
    assert any("providers CPUExecutionProvider" in line for line in lines)
    assert sum(line.startswith("batchsr: ok ") for line in lines) == 3
    assert "\r" not in p.stderr  # no progress bar redraws in logs


def test_console_script_help(tmp_path):
    exe = Path(sys.executable).with_name("batchsr")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "batchsr"]
    p = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "INPUT" in p.stdout and "exit codes" in p.stdout


def test_help_does_not_import_heavy_modules():
    heavy = "('numpy', 'PIL', 'onnxruntime', 'tensorflow')"
    code = f"import sys; from batchsr import cli; print(' '.join(sorted(m for m in {heavy} if m in sys.modules)))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.stdout.strip() == ""


def test_models_command_lists_shipped(capsys):
    from batchsr.models import shipped

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(shipped()) + 1
    assert lines[0].split()[:3] == ["default", "x2", "default_x2.onnx"] and "default_x2_int8.onnx" in lines[0]
    assert lines[-1].startswith("auto       x2 x3 x4  the default: photo for damaged inputs")
