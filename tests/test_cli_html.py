"""``batchsr INPUT OUTPUT --html`` and ``batchsr report OUTPUT`` end to end (random model, no browser)."""

import pytest
from helpers import photo
from helpers.pages import Page

import batchsr
from batchsr.cli import main
from batchsr.config import ASSETS_NAME, HTML_NAME, REPORT_NAME
from batchsr.report import read_rows


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photo(1, 36, 30).save(src / "one.png")
    photo(2, 30, 24).save(src / "sub" / "two.jpg", quality=95)
    (src / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return src


def test_run_with_html_writes_the_page(photos, tmp_path, random_model_path):
    out = tmp_path / "out"
    code = main([str(photos), str(out), "--model", str(random_model_path), "--html", "--quiet"])
    assert code == 1  # broken.jpg failed
    page = Page((out / HTML_NAME).read_text(encoding="utf-8"))
    rows = read_rows(out / REPORT_NAME)
    assert page.by_id["ok-count"] == str(sum(r["status"] == "ok" for r in rows)) == "2"
    assert page.by_id["failed-count"] == "1"
    assert len(page.imgs) == 8 and all((out / i["src"]).is_file() for i in page.imgs)
    assert "broken.jpg" in "".join(page.text)


def test_html_sample_implies_html(photos, tmp_path, random_model_path):
    out = tmp_path / "out"
    main([str(photos), str(out), "--model", str(random_model_path), "--html-sample", "1", "--quiet"])
    assert len(Page((out / HTML_NAME).read_text(encoding="utf-8")).imgs) == 4


def test_no_page_unless_asked(photos, tmp_path, random_model_path):
    out = tmp_path / "out"
    main([str(photos), str(out), "--model", str(random_model_path), "--quiet"])
    assert (out / REPORT_NAME).is_file()
    assert not (out / HTML_NAME).exists() and not (out / ASSETS_NAME).exists()


def test_report_rebuilds_the_page_from_the_csv(photos, tmp_path, random_model_path, capsys):
    out = tmp_path / "out"
    csv = tmp_path / "elsewhere.csv"
    main([str(photos), str(out), "--model", str(random_model_path), "--report", str(csv), "--quiet"])
    assert main(["report", str(out), "--report", str(csv), "--html-sample", "0"]) == 0
    assert str(out / HTML_NAME) in capsys.readouterr().out
    page = Page((out / HTML_NAME).read_text(encoding="utf-8"))
    assert page.imgs == [] and page.by_id["ok-count"] == "2"
    assert main(["report", str(out), "--report", str(csv)]) == 0
    assert len(Page((out / HTML_NAME).read_text(encoding="utf-8")).imgs) == 8


@pytest.mark.parametrize("args, message", [([], "no report at"), (["--html-sample", "-1"], "html-sample")])
def test_report_usage_errors(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)] + args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_library_run_folder_honours_html(photos, tmp_path, random_model_path):
    out = tmp_path / "out"
    batchsr.run_folder(photos, out, model=str(random_model_path), html=True, html_sample=2, quiet=True)
    assert len(Page((out / HTML_NAME).read_text(encoding="utf-8")).imgs) == 8
