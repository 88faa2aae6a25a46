"""Issue 16, names: any name the file system accepts can be processed (the temporary file's name
stays within the limit), and a file and a folder that map to one output path both get done."""

import os
from pathlib import Path

import pytest
from helpers import photo
from PIL import Image

from batchsr.atomic import TMP_SUFFIX, write_atomic
from batchsr.discover import discover


def _name_max(folder: Path) -> int:
    return os.pathconf(folder, "PC_NAME_MAX")  # 255 on ext4, tmpfs, xfs, btrfs


def _longest(folder: Path, stem_char: str, suffix: str) -> str:
    """The longest name of ``stem_char`` repeated plus ``suffix`` that ``folder`` accepts (in UTF-8 bytes)."""
    room = _name_max(folder) - len(suffix.encode())
    return stem_char * (room // len(stem_char.encode())) + suffix


@pytest.mark.parametrize("stem_char", ["a", "é", "相"], ids=["ascii", "two-byte", "three-byte"])
def test_a_name_at_the_length_limit_is_processed(tmp_path, random_model, run_folder, stem_char):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    name = _longest(inp, stem_char, ".png")
    photo(0, 16, 12).save(inp / name)
    s, rows = run_folder(inp, out, random_model)
    assert rows[name]["status"] == "ok", rows[name]
    with Image.open(out / name) as im:
        assert im.size == (48, 36)
    assert not [p for p in os.listdir(out) if p.endswith(TMP_SUFFIX)]


def test_a_temporary_name_that_would_cross_the_limit_is_cut_to_fit(tmp_path):
    name = _longest(tmp_path, "相", ".png")
    seen = []

    def write(f):
        seen.extend(os.listdir(os.fsencode(tmp_path)))  # bytes: the cut may fall inside a character
        f.write(b"x")

    write_atomic(tmp_path / name, write)
    assert (tmp_path / name).read_bytes() == b"x"
    [tmp] = seen
    assert len(tmp) <= _name_max(tmp_path) and tmp.startswith(b".") and tmp.endswith(TMP_SUFFIX.encode())


def test_a_file_and_a_folder_with_one_output_path_are_both_done(tmp_path, random_model, run_folder):
    inp, out = tmp_path / "in", tmp_path / "out"
    (inp / "x.png").mkdir(parents=True)  # a folder named like an image
    photo(0, 16, 12).save(inp / "x.png" / "inside.png")
    photo(1, 16, 12).save(inp / "x.jpg")  # --format png maps it to x.png, the folder's name
    s, rows = run_folder(inp, out, random_model, format="png")
    assert rows["x.jpg"]["status"] == rows["inside.png"]["status"] == "ok", rows
    assert Path(rows["x.jpg"]["output"]) == out / "x.jpg.png"
    assert "the folder x.png also maps to x.png" in rows["x.jpg"]["notes"]
    assert (out / "x.png" / "inside.png").is_file() and (out / "x.jpg.png").is_file()
    # The same on a rerun: both up to date, nothing fails.
    s, rows = run_folder(inp, out, random_model, format="png")
    assert (s.skipped, s.failed) == (2, 0)


def test_a_folder_wins_its_name_case_insensitively(tmp_path):
    (tmp_path / "Scan.PNG").mkdir()
    photo(0, 8, 8).save(tmp_path / "scan.png")
    jobs = [j for j in discover(tmp_path, tmp_path / "out") if hasattr(j, "rel")]
    assert [j.rel.as_posix() for j in jobs] == ["scan-2.png"]
