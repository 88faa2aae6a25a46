"""The CSV report read back: what html_report and other tools build on."""

import math

import pytest

from batchsr.report import COLUMNS, CsvReport, ReportFormatError, Row, Summary, read_report, safe_cell, unsafe_cell


@pytest.mark.parametrize(
    "name", ["=cmd.jpg", "+1.png", "-scan.tif", "@home.png", "'quoted.jpg", "'=both.jpg", "plain.jpg", ""]
)
def test_cell_quoting_is_reversible(name):
    assert unsafe_cell(safe_cell(name)) == name
    assert not safe_cell(name).startswith(("=", "+", "-", "@"))


def test_rows_round_trip_through_the_csv(tmp_path):
    rows = [
        Row(
            input="=evil<script>.jpg",
            output="out/=evil<script>.jpg",
            width=10,
            height=8,
            out_width=30,
            out_height=24,
            scale=3,
            model="fast x3",
            seconds=0.1234,
            psnr_bicubic=27.12345,
            psnr_model=math.inf,
            providers="CPUExecutionProvider",
            notes="palette image converted to RGB",
        ),
        Row(input="bad.jpg", status="error", error="corrupt or truncated image: x", seconds=0.001),
    ]
    with CsvReport(tmp_path / "r.csv") as report:
        for r in rows:
            report.write(r)
    back = read_report(tmp_path / "r.csv")
    assert [b.input for b in back] == [r.input for r in rows]
    assert back[0].output == rows[0].output and back[0].width == 10 and back[0].scale == 3
    assert back[0].seconds == pytest.approx(0.123) and back[0].psnr_bicubic == pytest.approx(27.12345, abs=1e-4)
    assert math.isinf(back[0].psnr_model) and back[0].gain is None
    assert back[1].status == "error" and back[1].width is None and back[1].error == rows[1].error


def test_a_csv_that_is_not_a_report_is_refused(tmp_path):
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ReportFormatError, match="not a batchsr report"):
        read_report(tmp_path / "other.csv")
    (tmp_path / "bad.csv").write_text(",".join(COLUMNS) + "\nx.jpg,,ok,,wide,,,,,,,,,,\n")
    with pytest.raises(ReportFormatError, match="width"):
        read_report(tmp_path / "bad.csv")


def test_summary_of_many_rows_keeps_every_gain():
    s = Summary()
    for i in range(20000):
        s.add(Row(input=f"{i}.jpg", psnr_bicubic=30.0, psnr_model=30.0 + (i % 3)))
    assert s.ok == 20000 and len(s.gains) == 20000
    assert sum(s.gains) / len(s.gains) == pytest.approx(1.0, abs=1e-3)
