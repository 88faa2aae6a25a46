"""Process settings: glibc's malloc keeps temporaries, BLAS runs on one thread during a run."""

import platform
import sys

from threadpoolctl import threadpool_info, threadpool_limits

from batchsr.tuning import single_threaded_blas, tune_allocator


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_the_allocator_takes_the_settings_where_it_is_glibc():
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert tune_allocator() is expected


def test_blas_runs_on_one_thread_inside_and_as_before_after():
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    assert _blas_threads(), "numpy's BLAS should be visible to threadpoolctl"
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine with two or more cores
        before = _blas_threads()
        with single_threaded_blas():
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before


def test_a_run_holds_blas_to_one_thread(tmp_path, random_model_path, monkeypatch):
    """pipeline.run wraps the whole run, so the chroma resize's products never fan out."""
    import numpy as np
    from PIL import Image

    from batchsr import color, pipeline
    from batchsr.config import RunConfig
    from batchsr.models import load

    seen = []
    real = color.resize_rows

    def spy(*a, **k):
        seen.append(set(_blas_threads()))
        return real(*a, **k)

    monkeypatch.setattr(color, "resize_rows", spy)  # the band resize, as color calls it
    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 20, 3), np.uint8)).save(inp / "a.png")
    cfg = RunConfig(input=inp, output=tmp_path / "out", psnr=False, quiet=True, jobs=2)
    with threadpool_limits(limits=2, user_api="blas"):  # as on a machine with two or more cores
        summary = pipeline.run(cfg, load(str(random_model_path)))
    assert summary.ok == 1 and seen and all(s == {1} for s in seen)
