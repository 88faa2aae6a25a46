"""`batchsr eval`: the protocol's numbers, per folder and per image."""

import csv

import pytest

from batchsr.cli import main


def test_eval_table_and_csv(shared, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["eval", f"Set5={shared}/data/benchmarks/Set5", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(l for l in text.splitlines() if l.startswith("| Set5 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    n, bic_psnr, bic_ssim, mod_psnr, mod_ssim = int(cells[1]), *map(float, cells[2:6])
    assert n == 5
    assert bic_psnr == pytest.approx(30.40, abs=0.02)  # shared/README.md sanity figure
    assert mod_psnr > bic_psnr + 0.5 and mod_ssim > bic_ssim
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    assert sum(float(r["psnr_bicubic"]) for r in rows) / 5 == pytest.approx(bic_psnr, abs=0.006)


def test_eval_rejects_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path / "nope")])
    assert e.value.code == 2


@pytest.mark.parametrize("content,message", [(None, "no images in"), (b"not a png", "cannot evaluate"),
                                             (b"", "cannot evaluate")])
def test_eval_bad_folders_are_one_line_errors(tmp_path, content, message):
    import subprocess
    import sys

    from conftest import ROOT

    if content is not None:
        (tmp_path / "a.png").write_bytes(content)
    p = subprocess.run([sys.executable, "-m", "batchsr", "eval", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
