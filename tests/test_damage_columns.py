"""The report's damage columns: what a run measured of each input's JPEG quality and noise."""

import numpy as np
from PIL import Image

from batchsr.report import COLUMNS


def test_each_row_says_the_jpeg_quality_and_noise_of_its_input(shared, tmp_path, run_folder, random_model):
    src = Image.open(sorted((shared / "data/bsds500/val").glob("*.jpg"))[3]).convert("RGB")
    clean = np.asarray(src.resize((160, 107), Image.BICUBIC)).astype(np.float32)
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 8.0, clean.shape[:2] + (1,)), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(inp / "noisy.png")
    Image.fromarray(clean.astype(np.uint8)).save(inp / "q40.jpg", quality=40)
    Image.fromarray(clean.astype(np.uint8)).convert("L").save(inp / "grey_q85.jpg", quality=85)
    summary, rows = run_folder(inp, tmp_path / "out", random_model, psnr=True)
    assert summary.ok == 3 and COLUMNS.index("jpeg_quality") > COLUMNS.index("psnr_model")
    assert rows["q40.jpg"]["jpeg_quality"] == "40" and rows["grey_q85.jpg"]["jpeg_quality"] == "85"
    assert rows["noisy.png"]["jpeg_quality"] == ""
    # Grey noise of sigma 8 in RGB is sigma 8 * 219/255 in studio-range luma (the estimate's units).
    assert abs(float(rows["noisy.png"]["noise_sigma"]) - 8 * 219 / 255) < 1.5
    assert float(rows["q40.jpg"]["noise_sigma"]) < 3


def test_no_psnr_leaves_the_damage_columns_empty_too(shared, tmp_path, run_folder, random_model):
    inp = tmp_path / "in"
    inp.mkdir()
    Image.new("RGB", (40, 30), (90, 120, 150)).save(inp / "a.jpg", quality=70)
    _, rows = run_folder(inp, tmp_path / "out", random_model, psnr=False)
    assert rows["a.jpg"]["jpeg_quality"] == "" and rows["a.jpg"]["noise_sigma"] == ""
