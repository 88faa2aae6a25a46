"""Input tree -> jobs, in a sorted, deterministic order, saying why anything is skipped.

Files are recognised by their content (the first bytes), not only by their
suffix: a photo without a suffix is found, and a PNG named ``.jpg`` is
written as ``.png``. Each job's output path and format are decided here, once,
so two inputs never share an output path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from batchsr.config import ASSETS_NAME
from batchsr.formats import (
    CANONICAL_SUFFIX,
    IMAGE_SUFFIXES,
    KEEP_FORMATS,
    PILLOW_FORMAT,
    SNIFF_BYTES,
    SUFFIX_FORMAT,
    can_write,
    sniff,
)
from batchsr.resume import STATE_NAME

# Files and folders that operating systems, sync tools and NAS boxes leave in
# photo folders (compared in lower case). Names starting with "." (including
# macOS AppleDouble "._*" files and .DS_Store) are hidden and skipped too.
SYSTEM_NAMES = {
    "thumbs.db",
    "desktop.ini",
    "ehthumbs.db",
    "ehthumbs_vista.db",
    "icon\r",
    "__macosx",
    "@eadir",
    "$recycle.bin",
    "system volume information",
    ".ds_store",
}


@dataclass(frozen=True)
class Job:
    """One input image and where its output goes, relative to the run's roots.

    ``format`` is the Pillow format to write; ``kind`` the format the file's
    content announces (None if unrecognised); ``notes`` what discovery decided
    about this file (a renamed output, a content that contradicts the suffix).
    """

    src: Path
    rel: Path  # output path relative to OUTPUT (mirrors the input tree)
    format: str = "PNG"
    kind: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def input_rel(self) -> Path:
        """The input's path relative to INPUT (its name when INPUT is a file)."""
        return self.rel.with_name(self.src.name)


@dataclass(frozen=True)
class Skip:
    """A path discovery did not turn into a job. ``report``: a report row is due
    (``status`` skipped or error); hidden, system and non-image files get none."""

    path: Path
    reason: str
    report: bool = False
    status: str = "skipped"
    image: bool = False  # an image that was found but is not processed (counts as found)


def output_format(kind: str | None, suffix: str, fmt: str = "keep") -> str:
    """Pillow format to write for an input's sniffed format, its suffix and --format."""
    if fmt != "keep":
        return PILLOW_FORMAT[fmt.lower()]
    kind = kind or SUFFIX_FORMAT.get(suffix.lower())
    if kind in ("AVIF", "HEIF"):
        return kind if can_write(kind) else "PNG"
    return kind if kind in KEEP_FORMATS else "PNG"


def output_name(name: str, out_format: str) -> str:
    """The output's file name: the input's, unless its suffix does not fit the written format.

    A suffix that names another image format is replaced (``a.gif`` ->
    ``a.png``); any other suffix is kept and the format's added
    (``scan001`` -> ``scan001.jpg``), so the name stays recognisable.
    """
    stem, dot, suffix = name.rpartition(".")
    suffix = "." + suffix if dot else ""
    if SUFFIX_FORMAT.get(suffix.lower()) == out_format:
        return name
    if suffix.lower() in IMAGE_SUFFIXES:
        return stem + CANONICAL_SUFFIX[out_format]
    return name + CANONICAL_SUFFIX[out_format]


def _is_hidden_or_system(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_NAMES


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except OSError:
        return b""  # unreadable: the job's load reports why


def _make_job(path: Path, rel: Path, fmt: str) -> Job | None:
    """A Job for an image file (by suffix or by content), else None."""
    suffix = path.suffix.lower()
    kind = sniff(_read_head(path))
    if suffix not in IMAGE_SUFFIXES and kind is None:
        return None
    notes = []
    promised = SUFFIX_FORMAT.get(suffix)
    if kind and promised and kind != promised:
        notes.append(f"content is {kind}, not {promised} as the name says")
    elif kind and not promised:
        notes.append(f"recognised as {kind} by its content")
    out_format = output_format(kind, suffix, fmt)
    return Job(path, rel.with_name(output_name(rel.name, out_format)), out_format, kind, tuple(notes))


def _fold(name: str) -> str:
    # Case-folded: outputs may be copied to case-insensitive file systems.
    return name.casefold()


def resolve_collisions(jobs: list[Job], folders: Iterable[str] = ()) -> list[Job]:
    """Give jobs of one folder distinct output names, deterministically.

    An input whose output keeps its own name wins that name (else the first in
    sorted order); the others get their input suffix folded into the name
    (``a.png`` -> ``a.png.jpg`` beside ``a.jpg``), else a number
    (``a-2.jpg``), never a name another input's output wants. A subfolder
    (``folders``, walked into OUTPUT under its own name) always keeps its name.
    Names are compared case-insensitively, since outputs may be copied to file
    systems that ignore case.
    """
    groups: dict[str, list[int]] = {}
    for i, j in enumerate(jobs):
        groups.setdefault(_fold(j.rel.name), []).append(i)
    reserved = {_fold(f): f for f in folders}
    taken = set(groups) | set(reserved)
    result = list(jobs)
    for folded, idxs in groups.items():
        if len(idxs) == 1 and folded not in reserved:
            continue
        keep = None if folded in reserved else next((i for i in idxs if jobs[i].rel.name == jobs[i].src.name), idxs[0])
        for i in idxs:
            if i == keep:
                continue
            j = jobs[i]
            suffix = j.rel.suffix
            stem = j.rel.name[: len(j.rel.name) - len(suffix)]
            candidates = []
            if j.src.suffix and _fold(j.src.suffix) != _fold(suffix):
                candidates.append(j.src.name + suffix)
            candidates += (f"{stem}-{n}{suffix}" for n in range(2, len(taken) + 3))  # one is always free
            name = next(c for c in candidates if _fold(c) not in taken)
            taken.add(_fold(name))
            rival = f"the folder {reserved[folded]}" if keep is None else jobs[keep].src.name
            note = f"output renamed to {name}: {rival} also maps to {j.rel.name}"
            result[i] = Job(j.src, j.rel.with_name(name), j.format, j.kind, j.notes + (note,))
    return result


class _Folder:
    """A subfolder met in a listing, walked after its siblings are resolved."""

    def __init__(self, path: Path):
        self.path = path


def discover(input_path: Path, output_root: Path, fmt: str = "keep") -> Iterator[Job | Skip]:
    """Yield a Job per image under ``input_path`` (a folder, walked recursively, or one file).

    Sorted by path. Hidden and system files, non-images, ``output_root`` (when
    it lies inside the input), symlinks leading outside the input, folder
    symlinks, broken links and unreadable folders are yielded as Skip with the
    reason. Subfolders holding a batchsr state file (earlier OUTPUTs) are not
    walked either. Folder symlinks are never followed, so link loops cannot trap the
    walk. Nothing is written.
    """
    input_path = Path(input_path)
    if input_path.is_file():
        job = _make_job(input_path, Path(input_path.name), fmt)
        if job is None:  # named explicitly: the user wants to hear why nothing happens
            out_format = output_format(None, input_path.suffix, fmt)
            job = Job(input_path, Path(output_name(input_path.name, out_format)), out_format)
        yield job
        return
    yield from _Walk(input_path, Path(output_root).resolve(), fmt).folder(input_path)


class _Walk:
    """The walk of one INPUT folder: each listing sorted, classified, its names resolved."""

    def __init__(self, input_path: Path, out_resolved: Path, fmt: str):
        self.input_path, self.root, self.out_resolved, self.fmt = input_path, input_path.resolve(), out_resolved, fmt

    def folder(self, folder: Path) -> Iterator[Job | Skip]:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skip(folder, f"cannot list folder: {exc.strerror or exc}", report=True, status="error")
            return
        items = [self.entry(e) for e in entries]
        jobs = [i for i in items if isinstance(i, Job)]
        fixed = iter(resolve_collisions(jobs, (i.path.name for i in items if isinstance(i, _Folder))))
        for item in items:
            if isinstance(item, Job):
                yield next(fixed)
            elif isinstance(item, _Folder):
                yield from self.folder(item.path)
            else:
                yield item

    def entry(self, e: os.DirEntry) -> Job | Skip | _Folder:
        """What one listed entry is: a job, a skip with its reason, or a folder to walk."""
        p = Path(e.path)
        if _is_hidden_or_system(e.name):
            return Skip(p, "hidden or system file")
        if e.name == ASSETS_NAME and e.is_dir(follow_symlinks=False):
            # an earlier run's report pictures, when a previous OUTPUT is the INPUT
            return Skip(p, "batchsr report assets")
        try:
            link = self.link(p) if e.is_symlink() else None
            if link is not None:
                return link
            is_dir = e.is_dir(follow_symlinks=False)
            is_file = e.is_file()
        except OSError as exc:
            return Skip(p, f"cannot examine: {exc.strerror or exc}", report=True, status="error")
        if is_dir:
            if p.resolve() == self.out_resolved:
                return Skip(p, "the output folder")
            if os.path.lexists(p / STATE_NAME):
                # Its images are an earlier run's outputs: upscaling them again is never wanted.
                return Skip(p, f"an earlier batchsr OUTPUT (holds {STATE_NAME}): not walked", report=True)
            return _Folder(p)  # walked after its siblings, in sorted order
        if not is_file:  # a device or pipe: reading could block forever
            return Skip(p, "not a regular file", report=p.suffix.lower() in IMAGE_SUFFIXES, status="error")
        job = _make_job(p, p.relative_to(self.input_path), self.fmt)
        return job if job is not None else Skip(p, "not an image")

    def link(self, p: Path) -> Skip | None:
        """Why a symlink is not followed, or None for a link to a file inside INPUT (taken as a file)."""
        target = Path(os.path.realpath(p))
        if not os.path.exists(p):
            return Skip(p, "broken symlink or symlink loop", report=True)
        if not _inside(target, self.root):
            return Skip(p, "symlink leads outside the input folder: not followed", report=True)
        if target.is_dir():
            return Skip(p, "folder symlink not followed", report=True)
        return None
