"""Banded assembly: the 8-bit output is built band by band and equals the float path."""

import threading
import time

import numpy as np
import pytest

from batchsr import color
from batchsr.distribute import MemoryBudget
from batchsr.upscaling import upscale_bands, upscale_pixels, upscale_to_uint8


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("tile", [0, 6, 11])
def test_uint8_bands_equal_the_whole_float_path(random_model, channels, tile):
    rng = np.random.default_rng(channels * 10 + tile)
    px = rng.uniform(0, 1, (29, 23, channels)).astype(np.float32)
    whole = color.to_uint(upscale_pixels(px, random_model, 0), 8)
    banded = upscale_to_uint8(px, random_model, tile)
    assert banded.shape == (87, 69, channels)
    diff = np.abs(banded.astype(int) - whole)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # float-exact; at most a rounding flip


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_merge_sub_bands_equal_one_merge(random_model, channels, monkeypatch):
    """Wide images merge a tile row in sub-bands (bounded temporaries); the pixels must not change."""
    from batchsr import upscaling

    px = np.random.default_rng(channels).uniform(0, 1, (31, 17, channels)).astype(np.float32)
    one = upscale_pixels(px, random_model, 0)
    monkeypatch.setattr(upscaling, "MERGE_PIXELS", 4 * 17 * 3 * 3)  # 4 LR rows of 17 pixels at x3
    bands = list(upscale_bands(px, random_model, 0))
    assert len(bands) == 8 and [b[1] - b[0] for b in bands] == [12] * 7 + [9]
    # The banded bicubic is the whole resize's rows, up to BLAS's float rounding (far below 1/255).
    assert np.abs(np.concatenate([b for _, _, b in bands]) - one).max() < 1e-5


def test_bands_cover_the_output_in_order(random_model):
    px = np.random.default_rng(0).uniform(0, 1, (40, 9, 3)).astype(np.float32)
    bands = [(r0, r1) for r0, r1, _ in upscale_bands(px, random_model, tile=7)]
    assert bands[0][0] == 0 and bands[-1][1] == 120 and len(bands) == 6
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:], strict=False))


def test_memory_budget_lets_small_images_share_and_big_ones_run_alone():
    budget = MemoryBudget(100)
    events, lock = [], threading.Lock()

    def job(name, cost):
        budget.acquire(cost)
        with lock:
            events.append(("start", name, budget.used))
        time.sleep(0.05)
        with lock:
            events.append(("end", name, budget.used))
        budget.release(cost)

    threads = [threading.Thread(target=job, args=(n, c)) for n, c in [("a", 40), ("b", 40), ("big", 500)]]
    for t in threads:
        t.start()
        time.sleep(0.01)
    for t in threads:
        t.join()
    big_start = next(u for e, n, u in events if e == "start" and n == "big")
    assert big_start == 500  # nothing else in flight while the big image runs
    assert max(u for e, n, u in events if n in "ab") == 80  # the two small ones shared


def test_compression_level_trades_size_not_pixels(tmp_path, random_model_path):
    from PIL import Image

    from batchsr import encode
    from batchsr.cli import main

    assert encode._fast(2) and not encode._fast(0) and not encode._fast(4)  # ISA-L is installed and used
    src = tmp_path / "in"
    src.mkdir()
    yy, xx = np.mgrid[0:70, 0:90]
    smooth = np.stack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 7), (xx + yy) % 256], -1)
    Image.fromarray(smooth.astype(np.uint8)).save(src / "p.png")
    Image.fromarray(smooth.astype(np.uint8)).save(src / "t.tif")
    sizes, pixels = {}, {}
    for level in (0, 1, 2, 3, 4, 9):  # stored, ISA-L's three levels, zlib's
        out = tmp_path / f"o{level}"
        assert (
            main([str(src), str(out), "--model", str(random_model_path), "--compression", str(level), "--quiet"]) == 0
        )
        for name in ("p.png", "t.tif"):
            sizes[level, name] = (out / name).stat().st_size
            pixels[level, name] = np.asarray(Image.open(out / name))
    for name in ("p.png", "t.tif"):
        # What is guaranteed on every CPU: the pixels never change, and stored (0) is larger
        # than any compressed level. Between compressed levels no order is: ISA-L picks its
        # code paths by CPU (on AVX-512 Xeons level 3 came out larger than level 1).
        for level in (1, 2, 3, 4, 9):
            assert np.array_equal(pixels[0, name], pixels[level, name])
            assert sizes[0, name] > sizes[level, name]


@pytest.mark.parametrize("bits,channels", [(8, 1), (8, 2), (8, 3), (8, 4), (16, 1), (16, 3), (16, 4)])
def test_streamed_png_decodes_exactly_across_blocks(tmp_path, bits, channels):
    from batchsr import atomic, decode, encode

    rng = np.random.default_rng(bits + channels)
    h, w = 150, 3000  # several 1 MiB blocks: the filter must carry the row above across blocks
    dtype = np.uint16 if bits == 16 else np.uint8
    a = rng.integers(0, 1 << bits, (h, w, channels), dtype=np.int64).astype(dtype)
    a[:, : w // 2] = a[:, : w // 2].mean(axis=0).astype(dtype)  # smooth half, noisy half
    dst = tmp_path / "x.png"
    bands = [a[r : r + 37] for r in range(0, h, 37)]
    atomic.write_atomic(
        dst, lambda f: encode._write_png(f, bands, w, h, channels, bits, exif=None, icc=None, dpi=None, level=1)
    )
    got = np.round(decode.load(dst).pixels * ((1 << bits) - 1)).astype(np.int64)
    assert np.array_equal(got, a.astype(np.int64))
