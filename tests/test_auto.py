"""--model auto: per image, `default` for clean inputs and `photo` for damaged ones (batchsr.choice)."""

import math
from pathlib import Path

import numpy as np
import pytest
from helpers.images import damaged_photos
from PIL import Image

from batchsr import choice as C
from batchsr.cli import main
from batchsr.estimate import Damage, DamageRule
from batchsr.report import read_rows

FP32 = ["--precision", "fp32"]  # labels and pixels that do not depend on the CPU


def damaged_folder(shared: Path, root: Path) -> Path:
    return damaged_photos(shared, root / "in")


def rows_of(out: Path) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in read_rows(out / "batchsr-report.csv")}


def test_the_rule_as_written():
    rule = DamageRule()
    assert rule.seen(Damage(85.0, 0.5)) == "JPEG quality 85"  # at most 85 is damaged
    assert rule.seen(Damage(86.0, 0.5)) is None
    assert rule.seen(Damage(None, 2.0)) == "noise 2.0"  # at least 2 levels is damaged
    assert rule.seen(Damage(None, 1.99)) is None
    assert rule.seen(Damage(95.0, 3.14)) == "noise 3.1"
    assert rule.seen(Damage(None, math.nan)) is None  # too small to tell: clean


def test_the_help_and_the_api_state_the_shipped_thresholds(capsys):
    """The numbers are written out where numpy may not be imported (--help): they must follow the rule."""
    import batchsr

    rule = DamageRule()
    said = f"JPEG quality {rule.max_jpeg_quality:.0f} or less, or noise {rule.min_noise_sigma:.0f} levels"
    with pytest.raises(SystemExit):
        main(["--help"])
    assert said in " ".join(capsys.readouterr().out.split())
    assert f"quality {rule.max_jpeg_quality:.0f} or less, or noise of {rule.min_noise_sigma:.0f} levels" in " ".join(
        batchsr.upscale.__doc__.split()
    )


def test_the_resume_identity_covers_both_models_and_the_rule(default_model, random_model):
    one = C.Choice(default_model)
    assert one.digest == default_model.sha256 and one.label == default_model.label and not one.auto
    auto = C.Choice(default_model, random_model)
    assert auto.auto and auto.digest not in (default_model.sha256, random_model.sha256)
    assert C.Choice(random_model, default_model).digest != auto.digest
    stricter = C.Choice(default_model, random_model, DamageRule(max_jpeg_quality=80))
    assert stricter.digest != auto.digest
    assert auto.pick(None) == (default_model, None) and auto.pick(Damage(40.0, 0.0)) == (
        random_model,
        "JPEG quality 40",
    )


def test_auto_is_the_default_and_runs_photo_on_damaged_inputs_only(shared, tmp_path, capsys):
    inp = damaged_folder(shared, tmp_path)
    assert main([str(inp), str(tmp_path / "auto"), *FP32]) == 0
    rows = rows_of(tmp_path / "auto")
    assert {n: r["model"] for n, r in rows.items()} == {
        "clean.png": "default x3",
        "q40.jpg": "photo x3",
        "noisy.png": "photo x3",
    }
    assert rows["q40.jpg"]["notes"] == "photo chosen for JPEG quality 40; no PSNR figure for a damaged input"
    assert rows["noisy.png"]["notes"].startswith("photo chosen for noise ") and rows["clean.png"]["notes"] == ""
    assert rows["noisy.png"]["notes"].endswith("; no PSNR figure for a damaged input")
    # Only the clean input has a figure, and the summary says of how many images its mean is.
    assert {n: bool(r["psnr_model"]) for n, r in rows.items()} == {
        "clean.png": True,
        "q40.jpg": False,
        "noisy.png": False,
    }
    out = capsys.readouterr().out
    assert "dB (1 of 3 images); model auto x3 (default x3: 1, photo x3: 2)" in out
    # Each output is what the chosen model writes when it is forced.
    for name, forced in (("q40.jpg", "photo"), ("noisy.png", "photo"), ("clean.png", "default")):
        (tmp_path / forced / "in").mkdir(parents=True, exist_ok=True)
        (tmp_path / forced / "in" / name).write_bytes((inp / name).read_bytes())
    for forced in ("photo", "default"):
        assert main([str(tmp_path / forced / "in"), str(tmp_path / forced / "out"), "--model", forced, *FP32]) == 0
        forced_rows = rows_of(tmp_path / forced / "out")
        if forced == "photo":  # its folder holds the two damaged inputs
            # A forced model withholds the figure on damaged inputs too, naming the damage once.
            assert set(forced_rows) == {"q40.jpg", "noisy.png"}
            for r in forced_rows.values():
                assert r["psnr_model"] == "" and r["notes"].startswith("no PSNR figure for a damaged input (")
        else:
            assert forced_rows["clean.png"]["psnr_model"] != ""
        for p in (tmp_path / forced / "out").glob("*.*g"):
            with Image.open(p) as a, Image.open(tmp_path / "auto" / p.name) as b:
                assert np.array_equal(np.asarray(a), np.asarray(b)), p.name


def test_a_rerun_repeats_which_model_ran_and_another_choice_redoes(shared, tmp_path, capsys):
    inp = damaged_folder(shared, tmp_path)
    out = tmp_path / "out"
    assert main([str(inp), str(out), "--no-psnr", "--quiet", *FP32]) == 0
    first = rows_of(out)
    # With --no-psnr the estimates still run: auto needs them, and the report says what it saw.
    assert first["q40.jpg"]["jpeg_quality"] == "40" and float(first["noisy.png"]["noise_sigma"]) > 4
    assert main([str(inp), str(out), "--no-psnr", "--quiet", *FP32]) == 0
    again = rows_of(out)
    assert all(r["status"] == "skipped" for r in again.values())
    assert {n: r["model"] for n, r in again.items()} == {n: r["model"] for n, r in first.items()}
    assert again["q40.jpg"]["notes"].endswith("; photo chosen for JPEG quality 40")
    # Forcing one model is another recipe: every output is redone with it.
    assert main([str(inp), str(out), "--no-psnr", "--quiet", "--model", "default", *FP32]) == 0
    forced = rows_of(out)
    assert all(r["status"] == "ok" and r["model"] == "default x3" for r in forced.values())
    assert forced["q40.jpg"]["jpeg_quality"] == ""  # forced and --no-psnr: nothing estimated


def test_the_library_runs_auto_too(shared, tmp_path):
    import batchsr

    inp = damaged_folder(shared, tmp_path)
    summary = batchsr.run_folder(inp, tmp_path / "out", precision="fp32")
    assert summary.ran == {"default x3": 1, "photo x3": 2} and summary.model == "auto x3"


def test_auto_without_a_photo_model_for_the_scale_says_so(monkeypatch):
    real = C.resolve

    def resolve(name, scale, precision="fp32"):
        if name == C.DAMAGED:
            raise C.ModelError("no such model")
        return real(name, scale, precision)

    monkeypatch.setattr(C, "resolve", resolve)
    with pytest.raises(C.ModelError, match="--model auto needs the shipped 'default' and 'photo' models for x2"):
        C.load_choice("auto", 2)


def test_eval_scores_one_model_and_refuses_auto(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tmp_path), "--model", "auto"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batchsr eval scores one model; --model auto chooses per image" in err[0]


def test_the_page_counts_the_damaged_and_names_each_images_model(shared, tmp_path):
    from helpers.pages import Page

    inp = damaged_folder(shared, tmp_path)
    assert main([str(inp), str(tmp_path / "out"), "--html", "--quiet", *FP32]) == 0
    text = (tmp_path / "out" / "batchsr-report.html").read_text()
    page = Page(text)
    assert page.by_id["damaged"] == "2 of 3" and page.by_id["model"] == "photo x3 (2), default x3 (1)"
    table = text[text.index('<table class="all"') :]
    for name, model, quality in (("q40.jpg", "photo x3", "40"), ("clean.png", "default x3", "")):
        row = table[table.index(name) :].split("</tr>")[0]
        assert f"<td>{model}</td>" in row and f'<td class="n">{quality}</td>' in row, row


def test_upscale_chooses_like_the_command_line(shared, tmp_path):
    import batchsr

    inp = damaged_folder(shared, tmp_path)
    assert main([str(inp), str(tmp_path / "out"), "--no-psnr", "--quiet", *FP32]) == 0
    ran = {n: r["model"].split(" ")[0] for n, r in rows_of(tmp_path / "out").items()}
    assert sorted(ran.values()) == ["default", "photo", "photo"]
    for name, model in ran.items():
        with Image.open(inp / name) as opened:  # as opened: a JPEG's tables are still there
            chosen = np.asarray(batchsr.upscale(opened, precision="fp32"))
            forced = {m: np.asarray(batchsr.upscale(opened, model=m, precision="fp32")) for m in ("default", "photo")}
        assert np.array_equal(chosen, forced[model]) and not np.array_equal(
            chosen, forced[({"default", "photo"} - {model}).pop()]
        ), name
