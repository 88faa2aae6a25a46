"""The library API: batchsr.upscale and batchsr.run_folder."""

import numpy as np
from helpers import photo

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


def test_upscale_turns_an_image_upright_by_its_exif_like_the_cli(tmp_path, random_model_path):
    from PIL import Image

    from batchsr.cli import main

    im = photo(3, 24, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the camera was turned 90 degrees
    im.save(tmp_path / "side.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "side.jpg") as opened:
        out = batchsr.upscale(opened, scale=3, model=str(random_model_path))
    assert out.size == (16 * 3, 24 * 3)
    assert main([str(tmp_path / "side.jpg"), str(tmp_path / "out"), "--model", str(random_model_path), "--quiet"]) == 0
    with Image.open(tmp_path / "out" / "side.jpg") as cli_out:
        assert cli_out.size == out.size


def test_run_folder_refuses_what_the_cli_refuses_before_writing_anything(tmp_path, random_model_path):
    import pytest

    from batchsr.cli import main
    from batchsr.pipeline import UsageError

    with pytest.raises(UsageError, match="input not found"):
        batchsr.run_folder(tmp_path / "missing", tmp_path / "out", model=str(random_model_path))
    assert not (tmp_path / "out").exists()
    (tmp_path / "in").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        batchsr.run_folder(tmp_path / "in", tmp_path / "file", model=str(random_model_path))
    with pytest.raises(SystemExit) as cli:
        main([str(tmp_path / "missing"), str(tmp_path / "out")])
    assert cli.value.code == 2


def test_the_library_sizes_threads_as_the_cli_does(tmp_path, random_model_path, monkeypatch):
    """Each of --jobs images in flight gets its share of the cores, from run_folder as from the CLI."""
    from batchsr import choice, session
    from batchsr.config import RunConfig

    monkeypatch.setattr(session.os, "cpu_count", lambda: 4)
    model = str(random_model_path)

    def threads(**options) -> int:
        found, cfg = choice.load_for_run(RunConfig(input=tmp_path, output=tmp_path / "o", model=model, **options))
        assert cfg.scale == 3 and cfg.precision == "fp32"  # resolved from the file
        return found.clean.session.options.threads

    assert threads(jobs=2) == 2 and threads(jobs=1) == 4 and threads(jobs=3) == 1
    assert threads(jobs=2, threads=3) == 3  # --threads is the user's word
    seen = []
    real = choice.load_for_run
    monkeypatch.setattr(choice, "load_for_run", lambda cfg: seen.append(cfg) or real(cfg))
    src = tmp_path / "in"
    src.mkdir()
    photo(4, 12, 10).save(src / "x.png")
    assert batchsr.run_folder(src, tmp_path / "out", model=model, jobs=2, quiet=True).ok == 1
    assert [c.jobs for c in seen] == [2]
