"""decode.load and the writers change no process-wide state that other threads (or a library
caller) could see: Pillow's pixel limit, the warnings machinery, the umask."""

import io
import os
import struct
import threading
import warnings

import numpy as np
import pytest
from helpers import photo
from helpers.images import exif_with
from helpers.writes import save_whole
from PIL import Image

from batchsr import decode


def _run_threads(n: int, work) -> tuple[list[threading.Thread], list[BaseException]]:
    errors: list[BaseException] = []

    def guarded(i):
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, errors


def test_loads_never_touch_pillows_pixel_limit(tmp_path, monkeypatch):
    """A library caller's Image.MAX_IMAGE_PIXELS is its own: never written by a load, at any moment,
    and its decompression-bomb guard keeps working in its thread while batchsr's threads load."""
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    photo(0, 30, 20).save(small)  # 600 pixels
    photo(1, 60, 50).save(big)  # 3,000: over twice the caller's limit below
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    writes = []

    class Spy(type(Image)):
        def __setattr__(self, name, value):
            if name == "MAX_IMAGE_PIXELS":
                writes.append(value)
            super().__setattr__(name, value)

    monkeypatch.setattr(Image, "__class__", Spy)

    def work(i):
        for _ in range(15):
            assert decode.load(small).width == 30
            assert decode.load(big).width == 60  # batchsr's own limit (default) allows it
            with pytest.raises(decode.ImageError, match="over the limit"):
                decode.load(big, max_pixels=2000)

    threads, errors = _run_threads(4, work)
    seen, guard_lost = set(), 0
    try:
        while any(t.is_alive() for t in threads):
            seen.add(Image.MAX_IMAGE_PIXELS)
            try:
                Image.open(big).close()
                guard_lost += 1
            except Image.DecompressionBombError:
                pass
    finally:
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert writes == []  # not even set and restored
    assert seen == {1000} and Image.MAX_IMAGE_PIXELS == 1000
    assert guard_lost == 0


def _jpeg_with_app1(payload: bytes) -> bytes:
    buf = io.BytesIO()
    photo(3, 40, 30).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def test_decoder_warnings_become_notes_of_their_own_image_only(tmp_path, monkeypatch):
    """Pillow's warnings for one image are that image's notes, whatever the other threads do,
    and a warning from a thread that is not loading goes to the caller's own handler, never
    into an image's notes."""
    shown = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *a, **k: shown.append(str(message)))
    bad, clean = tmp_path / "bad.jpg", tmp_path / "clean.jpg"
    tiff = exif_with(1).tobytes()[6:]
    bad.write_bytes(_jpeg_with_app1(b"Exif\0\0" + tiff[:20]))  # IFD cut short: Pillow warns
    clean.write_bytes(_jpeg_with_app1(exif_with(1).tobytes()))
    expected = decode.load(bad).notes
    assert any("EXIF" in n for n in expected)
    assert decode.load(bad).notes == expected  # every time, not once per process
    assert decode.load(clean).notes == []
    results = []

    def work(i):
        for k in range(40):
            p = bad if (i + k) % 2 else clean
            results.append((p, decode.load(p).notes))

    threads, errors = _run_threads(4, work)
    while any(t.is_alive() for t in threads):
        warnings.warn("the caller's own warning", UserWarning, stacklevel=1)
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(results) == 160
    for p, notes in results:
        assert notes == (expected if p == bad else []), (p.name, notes)
    assert "the caller's own warning" in shown and not any("EXIF" in w for w in shown)


def test_writes_never_open_the_umask(tmp_path, monkeypatch):
    """The umask is read once, not set to 0 and back around every write (another thread's
    files would be created world-writable in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda m: (calls.append(m), real(m))[1])
    px = np.full((6, 7, 3), 0.5, np.float32)

    def work(i):
        for k in range(5):
            save_whole(px, 8, tmp_path / f"{i}-{k}.png", "PNG")

    threads, errors = _run_threads(4, work)
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert 0 not in calls and len(calls) <= 2
    for p in tmp_path.glob("*.png"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_declared_size_reads_a_header_whatever_pillows_limit(tmp_path, monkeypatch):
    """What the runner sizes its memory budget with: no DecompressionBombError for an image
    over Pillow's limit (batchsr's own limit decides), no warning, no global touched."""
    big = tmp_path / "big.png"
    photo(1, 60, 50).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    assert decode.declared_size(big) == (60, 50)
    assert decode.declared_size(tmp_path / "missing.png") is None
    (tmp_path / "text.png").write_text("not an image")
    assert decode.declared_size(tmp_path / "text.png") is None
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(big)  # the caller's own guard, in the caller's thread
