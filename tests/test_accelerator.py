"""Issue 15: a model opened for an accelerator gets a CPU session beside it, a session pinned to
one window shape where the provider compiles per shape, and a self-check against the CPU that
falls back to the CPU with a note. No accelerator here: a real CPU session stands in for one
(``chosen=`` names the provider it plays), pinned by onnxruntime exactly as CoreML's would be."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from batchsr import accelerator, models, session, tiling, upscaling
from batchsr.session import SessionOptions

CPU, COREML, CUDA = "CPUExecutionProvider", "CoreMLExecutionProvider", "CUDAExecutionProvider"


def _model(path: Path, chosen: list[str], options: SessionOptions = SessionOptions(model_cache="")) -> models.Model:
    """``path`` opened as models.load does, as if ``chosen`` were the providers picked here."""
    loaded = models.load(str(path), options=options)
    sessions = accelerator.open_sessions(str(path), options, loaded.sha256, chosen)
    return replace(loaded, session=sessions.main, cpu=sessions.cpu, note=sessions.note)


def test_the_cpu_alone_opens_one_session(random_model):
    assert random_model.cpu is None and random_model.note is None
    assert random_model.session.window is None  # takes any shape


def test_a_shape_compiling_provider_gets_one_pinned_shape_and_a_cpu_session(random_model_path):
    m = _model(random_model_path, [COREML, CPU])
    side = tiling.AUTO_TILE + 2 * m.radius
    assert m.session.window == (tiling.FIXED_BATCH, side, side)
    assert m.cpu is not None and m.cpu.window is None and m.note is None
    with pytest.raises(Exception, match="dimensions"):  # onnxruntime itself holds the pin
        m.session.run_batch(np.zeros((1, side, side), np.float32))


def test_a_gpu_that_takes_any_shape_is_not_pinned(random_model_path):
    m = _model(random_model_path, [CUDA, CPU])
    assert m.session.window is None and m.cpu is not None and m.note is None


def test_pinned_runs_feed_one_shape_and_give_the_whole_image_pixels(random_model_path, monkeypatch):
    """Every call on the pinned session is FIXED_BATCH windows of its one shape (whatever --tile
    says), images smaller than a window run on the CPU session, and the pixels are those of a
    whole-image run on the CPU."""
    m = _model(random_model_path, [COREML, CPU])
    calls = []
    real = session.Session.run_batch
    monkeypatch.setattr(
        session.Session, "run_batch", lambda self, ys: calls.append((self is m.session, ys.shape)) or real(self, ys)
    )
    rng = np.random.default_rng(7)
    side = m.session.window[1]
    for shape, tile in (((300, 700, 3), None), ((side, side + 1, 3), 0), ((300, 700, 3), 64)):
        px = rng.uniform(0, 1, shape).astype(np.float32)
        calls.clear()
        tiled = upscaling.upscale_pixels(px, m, tile)
        assert {c for c in calls} == {(True, (tiling.FIXED_BATCH, side, side))}
        np.testing.assert_allclose(tiled, upscaling.upscale_pixels(px, replace(m, session=m.cpu, cpu=None)), atol=2e-5)
    small = rng.uniform(0, 1, (side - 1, 900, 3)).astype(np.float32)
    calls.clear()
    assert m.session_for(side - 1, 900) is m.cpu
    upscaling.upscale_pixels(small, m)
    assert all(not on_main for on_main, _ in calls)  # the CPU session, which takes any shape


def test_an_accelerator_that_disagrees_with_the_cpu_is_dropped_with_a_note(random_model_path, monkeypatch, caplog):
    real = session.Session.run_batch

    def drifting(self, ys):  # a "CoreML" output three levels off: a broken conversion
        out = real(self, ys)
        return out + 3 / 255 if self.window else out

    monkeypatch.setattr(session.Session, "run_batch", drifting)
    m = _model(random_model_path, [COREML, CPU])
    assert m.session.window is None and m.cpu is None  # the CPU session runs everything
    assert (
        m.note
        == "CoreMLExecutionProvider differed from the CPU by 3.0 levels on its self-check; the model runs on the CPU"
    )
    assert m.note in caplog.text


def test_an_accelerator_within_the_tolerance_is_kept(random_model_path, monkeypatch):
    real = session.Session.run_batch
    monkeypatch.setattr(session.Session, "run_batch", lambda self, ys: real(self, ys) + (1 / 255 if self.window else 0))
    m = _model(random_model_path, [COREML, CPU])
    assert m.session.window is not None and m.note is None


@pytest.mark.parametrize("broken", ["nan", "raises"])
def test_an_accelerator_that_fails_is_dropped_with_a_note(random_model_path, monkeypatch, broken):
    real = session.Session.run_batch

    def failing(self, ys):
        if not self.window:
            return real(self, ys)
        if broken == "raises":
            raise RuntimeError("Error compiling model: unsupported op\nmore detail")
        return np.full_like(real(self, ys), np.nan)

    monkeypatch.setattr(session.Session, "run_batch", failing)
    m = _model(random_model_path, [COREML, CPU])
    assert m.cpu is None and m.session.window is None
    expected = (
        "failed its self-check (Error compiling model: unsupported op)" if broken == "raises" else "by inf levels"
    )
    assert expected in m.note


def test_a_run_on_a_dropped_accelerator_says_so_per_image(random_model_path, monkeypatch, tmp_path, run_folder):
    from PIL import Image

    real = session.Session.run_batch
    monkeypatch.setattr(session.Session, "run_batch", lambda self, ys: real(self, ys) * (0.5 if self.window else 1))
    m = _model(random_model_path, [COREML, CPU])
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    summary, rows = run_folder(tmp_path / "in", tmp_path / "out", m)
    assert rows["a.png"]["status"] == "ok" and rows["a.png"]["providers"] == CPU
    assert "the model runs on the CPU" in rows["a.png"]["notes"]


def test_the_probe_is_deterministic_photo_like_and_in_range():
    a, b = accelerator.probe((2, 40, 60)), accelerator.probe((2, 40, 60))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert not np.array_equal(a[0], a[1])  # each window differs
    assert a.std() > 0.1  # edges and stripes, not a flat field


def test_pinning_needs_three_named_free_dimensions():
    from types import SimpleNamespace

    pin = accelerator.pin_for
    assert pin(SimpleNamespace(input_shape=["batch", "height", "width", 1]), 256, 8) == {
        "batch": 4,
        "height": 272,
        "width": 272,
    }
    assert pin(SimpleNamespace(input_shape=[1, "h", "w", 1]), 256, 8) is None  # a fixed batch of 1
    assert pin(SimpleNamespace(input_shape=["n", "s", "s", 1]), 256, 8) is None  # one name for H and W
    assert pin(SimpleNamespace(input_shape=["n", "h", "w"]), 256, 8) is None


def test_coreml_options_are_chosen_deliberately(tmp_path):
    opts = session.provider_options(COREML, static_shapes=True, cache_dir=str(tmp_path))
    assert opts == {
        "ModelFormat": "MLProgram",
        "MLComputeUnits": "ALL",
        "RequireStaticInputShapes": "1",
        "ModelCacheDirectory": str(tmp_path),
    }
    assert "RequireStaticInputShapes" not in session.provider_options(COREML)  # unpinned: any shape
    assert session.provider_options(CUDA, 1, True, str(tmp_path)) == {
        "cudnn_conv_algo_search": "HEURISTIC",
        "device_id": "1",
    }


def test_the_compiled_model_cache_is_keyed_by_checksum_onnxruntime_and_shape(tmp_path):
    root = session.user_cache_dir("darwin", {"HOME": "/Users/ann"})
    assert root == Path("/Users/ann/Library/Caches/batchsr")
    assert session.user_cache_dir("linux", {"HOME": "/home/ann"}) == Path("/home/ann/.cache/batchsr")
    assert session.user_cache_dir("linux", {"HOME": "/h", "XDG_CACHE_HOME": "/c"}) == Path("/c/batchsr")
    d = session.compiled_model_dir(root, "ab" * 32, "1.32.0", (4, 272, 272))
    assert d == root / "compiled" / f"{'ab' * 8}-ort1.32.0-4x272x272"
    assert (
        len(
            {
                session.compiled_model_dir(root, s, v, w)
                for s, v, w in [
                    ("ab" * 32, "1.32.0", (4, 272, 272)),
                    ("cd" * 32, "1.32.0", (4, 272, 272)),
                    ("ab" * 32, "1.33.0", (4, 272, 272)),
                    ("ab" * 32, "1.32.0", (4, 144, 144)),
                ]
            }
        )
        == 4
    )


def test_a_cpu_run_keeps_no_compiled_model_cache(random_model_path, tmp_path):
    """Only a shape-compiling provider's pinned session gets a cache folder: the pinned CPU
    session standing in for CoreML here compiles nothing and makes none."""
    m = _model(random_model_path, [COREML, CPU], SessionOptions(model_cache=str(tmp_path / "cache")))
    assert m.session.window is not None
    assert not (tmp_path / "cache").exists()


def test_the_cache_folder_is_made_or_left_out_with_a_warning(tmp_path, caplog):
    pin = {"batch": 4, "height": 272, "width": 272}

    def cache(root, sha="ab" * 32, pin=pin, provider=COREML):
        return session._cache_dir(SessionOptions(model_cache=root), sha, "1.32.0", pin, provider)

    made = cache(str(tmp_path / "c"))
    assert Path(made).is_dir() and Path(made).parent == tmp_path / "c" / "compiled"
    assert cache("") is None  # turned off
    assert cache(str(tmp_path / "d"), sha=None) is None  # no key
    assert cache(str(tmp_path / "d"), pin=None) is None  # any shape: nothing compiled once
    # TensorRT compiles per shape too, but takes no ModelCacheDirectory: no empty folder for it
    assert cache(str(tmp_path / "d"), provider="TensorrtExecutionProvider") is None
    assert not (tmp_path / "d").exists()
    (tmp_path / "file").write_text("in the way")
    assert cache(str(tmp_path / "file")) is None
    assert "each run compiles the model again" in caplog.text


@pytest.mark.parametrize("tile,fixed_tile", [(None, tiling.AUTO_TILE), (128, 128), (0, None)])
def test_the_runs_tile_decides_the_pinned_window(random_model_path, tile, fixed_tile):
    """--tile N pins shape-compiling providers to windows of N + 2R; --tile 0 (whole images) pins
    none, so each image size is its own shape there."""
    from batchsr.choice import session_options
    from batchsr.config import RunConfig

    options = session_options(RunConfig(input=Path("in"), output=Path("out"), tile=tile), threads=1)
    assert options.fixed_tile == fixed_tile
    m = _model(random_model_path, [COREML, CPU], replace(options, model_cache=""))
    side = fixed_tile + 2 * m.radius if fixed_tile else None
    assert m.session.window == ((tiling.FIXED_BATCH, side, side) if side else None)
