"""Input tree -> jobs, in a sorted, deterministic order, saying why anything is skipped."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from batchsr.config import ASSETS_NAME

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp",
                  ".gif", ".heic", ".heif", ".avif"}
# Files that operating systems and sync tools leave in photo folders.
SYSTEM_NAMES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
# Suffix of outputs whose input format cannot be written back (GIF -> PNG, ...).
KEEP_SUFFIX = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp"}
FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
                 "tif": ".tif", "bmp": ".bmp"}


@dataclass(frozen=True)
class Job:
    """One input image and where its output goes, relative to the run's roots."""

    src: Path
    rel: Path  # output path relative to OUTPUT (mirrors the input tree)


@dataclass(frozen=True)
class Skip:
    path: Path
    reason: str


def output_rel(rel: Path, fmt: str = "keep") -> Path:
    """The output's relative path: same folders and stem; suffix kept unless the format changes."""
    if fmt != "keep":
        return rel.with_suffix(FORMAT_SUFFIX[fmt.lower()])
    if rel.suffix.lower() in KEEP_SUFFIX:
        return rel
    return rel.with_suffix(".png")


def _is_hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def discover(input_path: Path, output_root: Path, fmt: str = "keep") -> Iterator[Job | Skip]:
    """Yield a Job per image under ``input_path`` (a folder, walked recursively, or one file).

    Sorted by path; hidden and system files, non-image suffixes, ``output_root``
    (when it lies inside the input) and symlinks leading outside the input are
    yielded as Skip with the reason. Folder symlinks are never followed, so
    link loops cannot trap the walk.
    """
    input_path = Path(input_path)
    if input_path.is_file():
        yield Job(input_path, output_rel(Path(input_path.name), fmt))
        return
    root = input_path.resolve()
    out_resolved = Path(output_root).resolve()

    def walk(folder: Path) -> Iterator[Job | Skip]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skip(folder, f"cannot list folder: {exc.strerror}")
            return
        for e in entries:
            p = Path(e.path)
            if _is_hidden_or_system(e.name):
                yield Skip(p, "hidden or system file")
                continue
            if e.name == ASSETS_NAME and e.is_dir(follow_symlinks=False):
                # an earlier run's report pictures, when a previous OUTPUT is the INPUT
                yield Skip(p, "batchsr report assets")
                continue
            if e.is_symlink():
                target = p.resolve()
                if not _inside(target, root):
                    yield Skip(p, "symlink leads outside the input folder")
                    continue
                if target.is_dir():
                    yield Skip(p, "folder symlink not followed")
                    continue
            if e.is_dir(follow_symlinks=False):
                if p.resolve() == out_resolved:
                    yield Skip(p, "the output folder")
                    continue
                yield from walk(p)
            elif e.is_file():
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    yield Skip(p, "not an image file suffix")
                    continue
                rel = p.relative_to(input_path)
                yield Job(p, output_rel(rel, fmt))

    yield from walk(input_path)
