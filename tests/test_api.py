"""The library API: batchsr.upscale and batchsr.run_folder."""

import numpy as np
from conftest import photo

import batchsr
from batchsr.report import read_rows


def test_upscale_keeps_mode_and_scales(random_model_path):
    for mode in ("RGB", "L", "RGBA"):
        im = photo(0, 21, 17).convert(mode)
        out = batchsr.upscale(im, scale=3, model=str(random_model_path))
        assert out.size == (63, 51) and out.mode == mode


def test_upscale_default_model_is_close_to_bicubic_colour():
    im = photo(1, 30, 20)
    out = np.asarray(batchsr.upscale(im), dtype=float)
    bic = np.asarray(im.resize((90, 60), 3), dtype=float)  # 3 = BICUBIC
    assert np.abs(out - bic).mean() < 12  # same picture, sharper: not garbage


def test_run_folder(tmp_path, random_model_path):
    src = tmp_path / "in"
    src.mkdir()
    photo(2, 12, 10).save(src / "x.png")
    s = batchsr.run_folder(src, tmp_path / "out", model=str(random_model_path), quiet=True)
    assert (s.ok, s.failed, s.exit_code) == (1, 0, 0)
    assert read_rows(tmp_path / "out" / "batchsr-report.csv")[0]["status"] == "ok"
