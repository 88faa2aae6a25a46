"""`batchsr eval`: the protocol's numbers, per folder and per image."""

import csv

import pytest

from batchsr.cli import main


def test_eval_table_and_csv(shared, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["eval", f"Set5={shared}/data/benchmarks/Set5", "--csv", str(out)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| Set5 "))
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


@pytest.mark.parametrize(
    "content,message", [(None, "no images in"), (b"not a png", "cannot evaluate"), (b"", "cannot evaluate")]
)
def test_eval_bad_folders_are_one_line_errors(tmp_path, content, message):
    import subprocess
    import sys

    from helpers import ROOT

    if content is not None:
        (tmp_path / "a.png").write_bytes(content)
    p = subprocess.run(
        [sys.executable, "-m", "batchsr", "eval", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert p.returncode == 1
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


def _table_row(text: str, name: str) -> list[float]:
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} "))
    return [float(c) for c in row.strip("|").split("|")[1:]]


def test_realistic_sets_are_fixed_damaged_versions(shared, tmp_path, capsys):
    """Same LR inputs every run (seeded per image), damaged well below the bicubic set's
    quality, with the colour figure in the table and the CSV."""
    set5 = f"Set5={shared}/data/benchmarks/Set5"
    assert main(["eval", set5, "--model", "fast"]) == 0
    clean = _table_row(capsys.readouterr().out, "Set5")
    out1, out2 = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["eval", set5, "--model", "fast", "--degradation", "realistic", "--csv", str(out1)]) == 0
    first = capsys.readouterr().out
    assert "realistic LR" in first
    real = _table_row(first, "Set5")
    assert main(["eval", set5, "--model", "fast", "--degradation", "realistic", "--csv", str(out2)]) == 0
    assert _table_row(capsys.readouterr().out, "Set5") == real
    assert out1.read_text() == out2.read_text()  # the same damage, byte for byte
    assert real[1] < clean[1] - 1.0  # bicubic PSNR: the realistic inputs are damaged
    assert real[-2] < clean[-2]  # ... in colour too
    assert main(["eval", set5, "--model", "fast", "--degradation", "realistic", "--seed", "1"]) == 0
    assert _table_row(capsys.readouterr().out, "Set5") != real  # another seed, another set
    with open(out1, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["degradation"] for r in rows} == {"realistic"}
    assert all(float(r["cpsnr_bicubic"]) > 20 for r in rows)


def test_image_seed_depends_on_name_scale_and_seed_only():
    from batchsr.evaluate import image_seed

    assert image_seed(0, 3, "a.png") == image_seed(0, 3, "a.png")
    assert (
        len(
            {image_seed(0, 3, "a.png"), image_seed(1, 3, "a.png"), image_seed(0, 4, "a.png"), image_seed(0, 3, "b.png")}
        )
        == 4
    )


def test_colour_psnr_is_chroma_only_and_none_for_grey():
    import numpy as np

    from batchsr import metrics

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)
    assert metrics.psnr_cbcr(a, a, 3) == float("inf")
    grey = np.repeat(a[..., :1], 3, axis=2)
    assert metrics.psnr_cbcr(grey, grey, 3) is None
    # A change of luma only (all channels +4) leaves chroma alone: Cb/Cr move by < 0.01.
    brighter = np.clip(a.astype(int) + 4, 0, 255).astype(np.uint8)
    keep = (a > 4).all(axis=2) & (a < 250).all(axis=2)
    b = np.where(keep[..., None], brighter, a)
    assert metrics.psnr_cbcr(a, b, 3) > 60
    assert metrics.psnr_y(a, b, 3) < 45
    # Colour noise (opposite in R and B) is seen.
    c = a.astype(int)
    c[..., 0] += 3
    c[..., 2] -= 3
    assert metrics.psnr_cbcr(a, np.clip(c, 0, 255).astype(np.uint8), 3) < 45
