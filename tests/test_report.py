"""The CSV report: safe for spreadsheets, correctly quoted, one line per reason."""

import csv

from batchsr.report import CsvReport, Row, Summary, read_rows, safe_cell


def test_formula_cells_are_neutralised():
    for bad in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert safe_cell(bad) == "'" + bad
    for fine in ("photo.jpg", "/a/=b.jpg", "", "1-2"):
        assert safe_cell(fine) == fine


def test_names_with_commas_quotes_newlines_and_non_ascii_round_trip(tmp_path):
    names = [
        "a,b.jpg",
        'say "cheese".jpg',
        "two\nlines.jpg",
        "crlf\r\nname.jpg",
        "Zoë 東京.jpg",
        '=HYPERLINK("http://x").jpg',
    ]
    path = tmp_path / "r.csv"
    with CsvReport(path) as rep:
        for n in names:
            rep.write(Row(input=n, status="error", error='bad\nthing, "quoted"', notes=n))
    rows = read_rows(path)
    assert [r["input"] for r in rows] == names[:-1] + ["'" + names[-1]]
    assert all(r["error"] == 'bad thing, "quoted"' for r in rows)  # one line
    with open(path, newline="", encoding="utf-8") as f:
        assert len(list(csv.reader(f))) == len(names) + 1


def test_names_that_are_not_utf8_are_escaped_not_fatal(tmp_path):
    name = b"caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a Latin-1 name on a UTF-8 system
    path = tmp_path / "r.csv"
    with CsvReport(path) as rep:
        rep.write(Row(input=name))
    assert read_rows(path)[0]["input"] == "caf\\udce9.jpg"


def test_summary_line_and_exit_codes():
    s = Summary(ok=3, skipped=2, failed=0, seconds=2.0)
    assert s.line().startswith("batchsr: 3 ok, 2 skipped, 0 failed in 2.0 s, 1.50 images/s")
    assert s.exit_code == 0
    s.failed = 1
    assert s.exit_code == 1
    assert Summary(ok=4, dry_run=True).line() == "batchsr: dry run: 4 to process, 0 skipped, 0 failed; nothing written"
