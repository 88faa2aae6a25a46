"""Discovery: order, what is skipped and why, content sniffing, output names."""

import os
from pathlib import Path

from helpers import photo

from batchsr.discover import Job, Skip, discover
from batchsr.formats import sniff


def _names(items, kind=Job):
    return [(i.src if kind is Job else i.path).name for i in items if isinstance(i, kind)]


def test_sorted_recursive_and_mirrors_folders(tmp_path):
    for rel in ("b/2.jpg", "a.jpg", "b/1.png", "c.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        photo(0, 8, 8).save(tmp_path / rel)
    jobs = [i for i in discover(tmp_path, tmp_path / "out") if isinstance(i, Job)]
    assert [j.rel.as_posix() for j in jobs] == ["a.jpg", "b/1.png", "b/2.jpg", "c.png"]


def test_hidden_system_and_appledouble_files_are_skipped(tmp_path):
    photo(0, 8, 8).save(tmp_path / "real.jpg")
    for name in (".DS_Store", "._real.jpg", "Thumbs.db", "desktop.ini", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff junk")
    (tmp_path / "__MACOSX").mkdir()
    photo(0, 8, 8).save(tmp_path / "__MACOSX" / "x.jpg")
    items = list(discover(tmp_path, tmp_path / "out"))
    assert _names(items) == ["real.jpg"]
    skipped = {i.path.name: i for i in items if isinstance(i, Skip)}
    assert {"._real.jpg", ".DS_Store", "Thumbs.db", "desktop.ini", ".hidden.jpg", "__MACOSX"} <= set(skipped)
    assert not any(s.report for s in skipped.values())  # noise, not report rows


def test_files_are_recognised_by_content(tmp_path):
    photo(0, 8, 8).save(tmp_path / "scan001", format="JPEG")  # no suffix
    photo(0, 8, 8).save(tmp_path / "actually_png.jpg", format="PNG")  # lying suffix
    (tmp_path / "notes.txt").write_text("BM not a bitmap")
    (tmp_path / "fake.jpg").write_text("just text")  # image suffix: a job, so it gets an error row
    jobs = {j.src.name: j for j in discover(tmp_path, tmp_path / "out") if isinstance(j, Job)}
    assert set(jobs) == {"scan001", "actually_png.jpg", "fake.jpg"}
    assert jobs["scan001"].rel.name == "scan001.jpg" and jobs["scan001"].format == "JPEG"
    assert jobs["actually_png.jpg"].rel.name == "actually_png.png" and jobs["actually_png.jpg"].format == "PNG"
    assert "content is PNG, not JPEG" in jobs["actually_png.jpg"].notes[0]


def test_sniff_signatures():
    assert sniff(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff(b"\x89PNG\r\n\x1a\n") == "PNG"
    assert sniff(b"GIF89a") == "GIF"
    assert sniff(b"II*\0") == "TIFF" and sniff(b"MM\0*") == "TIFF"
    assert sniff(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff(b"BM" + b"\0" * 12 + (40).to_bytes(4, "little")) == "BMP"
    assert sniff(b"BM not a bitmap at all") is None
    assert sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic") == "HEIF"
    assert sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf") == "AVIF"
    assert sniff(b"hello") is None and sniff(b"") is None


def test_two_inputs_never_share_an_output(tmp_path):
    for name in ("a.jpg", "a.png", "a.gif", "A.PNG"):
        photo(0, 8, 8).save(
            tmp_path / name, format={"jpg": "JPEG", "png": "PNG", "gif": "GIF", "PNG": "PNG"}[name.rsplit(".", 1)[1]]
        )
    for fmt in ("keep", "png", "jpg"):
        jobs = [j for j in discover(tmp_path, tmp_path / "out", fmt) if isinstance(j, Job)]
        outs = [j.rel.name.casefold() for j in jobs]
        assert len(set(outs)) == len(outs) == 4, (fmt, outs)
    jobs = {j.src.name: j for j in discover(tmp_path, tmp_path / "out", "keep") if isinstance(j, Job)}
    # Sorted order decides between names that differ only in case (A.PNG < a.png).
    assert {n: j.rel.name for n, j in jobs.items()} == {
        "A.PNG": "A.PNG",
        "a.gif": "a.gif.png",
        "a.jpg": "a.jpg",
        "a.png": "a-2.png",
    }
    assert "output renamed to a.gif.png: A.PNG also maps to a.png" in jobs["a.gif"].notes
    again = [j.rel for j in discover(tmp_path, tmp_path / "out", "keep") if isinstance(j, Job)]
    assert again == [j.rel for j in jobs.values()]  # deterministic


def test_symlinks_outside_input_loops_and_broken_links(tmp_path):
    inp, outside = tmp_path / "in", tmp_path / "outside"
    inp.mkdir()
    outside.mkdir()
    photo(0, 8, 8).save(inp / "real.jpg")
    photo(0, 8, 8).save(outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", inp / "escape.jpg")
    os.symlink(outside, inp / "escape_dir")
    os.symlink(inp / "real.jpg", inp / "inner_link.jpg")
    os.symlink(inp / "loop_b.jpg", inp / "loop_a.jpg")
    os.symlink(inp / "loop_a.jpg", inp / "loop_b.jpg")
    os.symlink(inp, inp / "self")  # a folder loop
    os.symlink(tmp_path / "nowhere.jpg", inp / "broken.jpg")
    items = list(discover(inp, tmp_path / "out"))
    assert _names(items) == ["inner_link.jpg", "real.jpg"]
    reasons = {i.path.name: i.reason for i in items if isinstance(i, Skip)}
    assert "outside the input" in reasons["escape.jpg"] and "outside the input" in reasons["escape_dir"]
    assert "loop" in reasons["loop_a.jpg"] and "loop" in reasons["loop_b.jpg"]
    assert "not followed" in reasons["self"] and "broken" in reasons["broken.jpg"]
    assert all(i.report for i in items if isinstance(i, Skip))


def test_output_inside_input_is_not_walked(tmp_path):
    photo(0, 8, 8).save(tmp_path / "a.jpg")
    (tmp_path / "out").mkdir()
    photo(0, 8, 8).save(tmp_path / "out" / "a.jpg")
    assert _names(discover(tmp_path, tmp_path / "out")) == ["a.jpg"]


def test_single_file_input(tmp_path):
    photo(0, 8, 8).save(tmp_path / "one.png")
    (tmp_path / "text.jpg").write_text("x")
    assert [j.rel for j in discover(tmp_path / "one.png", tmp_path / "o")] == [Path("one.png")]
    assert [j.rel for j in discover(tmp_path / "text.jpg", tmp_path / "o")] == [Path("text.jpg")]
