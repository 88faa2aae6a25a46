"""The distributor seam: order, bounded work in flight, and identical results whatever the engine."""

import threading
import time

import numpy as np
import pytest
from helpers import photo

from batchsr.cli import main
from batchsr.distribute import LocalDistributor
from batchsr.report import read_rows


@pytest.mark.parametrize("jobs", [1, 3])
def test_results_come_back_in_order(jobs):
    def slow(i):
        time.sleep(0.02 * ((7 * i) % 5))
        return i * i

    with LocalDistributor(jobs) as d:
        assert list(d.map(slow, range(12))) == [(i, i * i) for i in range(12)]


def test_only_a_window_of_items_is_in_flight():
    started, lock = [], threading.Lock()
    release = threading.Event()

    def fn(i):
        with lock:
            started.append(i)
        release.wait(5)
        return i

    def items():
        yield from range(100)

    with LocalDistributor(2, window=4) as d:
        it = d.map(fn, items())
        t = threading.Thread(target=lambda: list(it))
        t.start()
        time.sleep(0.3)
        assert len(started) <= 4  # the rest of the 100 were not pulled or decoded yet
        release.set()
        t.join(5)
    assert sorted(started) == list(range(100))


def test_pipelined_run_writes_the_same_bytes_and_rows(tmp_path, random_model_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(7):
        photo(i, 20 + 3 * i, 17 + 2 * i).save(src / ("sub" if i % 2 else ".") / f"p{i}.png")
    (src / "bad.png").write_bytes(b"nope")
    a, b = tmp_path / "seq", tmp_path / "par"
    assert main([str(src), str(a), "--model", str(random_model_path), "--jobs", "1", "--quiet"]) == 1
    assert main([str(src), str(b), "--model", str(random_model_path), "--jobs", "3", "--quiet"]) == 1
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.png")) and len(files_a) == 7
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel

    def strip(rows, root):
        return [{k: v.replace(str(root), "OUT") for k, v in r.items() if k != "seconds"} for r in rows]

    assert strip(read_rows(a / "batchsr-report.csv"), a) == strip(read_rows(b / "batchsr-report.csv"), b)


def test_an_image_that_runs_alone_gets_every_core(random_model_path, tmp_path, monkeypatch):
    """Two jobs on two cores run one thread each; a big scan (or a lone image) gets both."""
    from batchsr import pipeline, resume, runner, upscaling
    from batchsr.config import RunConfig
    from batchsr.models import load
    from batchsr.session import SessionOptions

    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    narrow = load(str(random_model_path), options=SessionOptions(threads=1))
    cfg = RunConfig(input=tmp_path, output=tmp_path / "out", jobs=2)
    state = resume.State(tmp_path / "out")
    try:
        work = runner.ImageRunner(cfg, narrow, todo=10)
        small, big = 1_000_000, runner.MEMORY_BUDGET_PIXELS  # a big one cannot share the budget
        assert work.choice_for(small).clean is narrow
        wide = work.choice_for(big).clean
        assert wide.session.options.threads == 2 and wide.sha256 == narrow.sha256
        assert work.choice_for(big).clean is wide  # built once
        assert runner.ImageRunner(cfg, narrow, todo=1).choice_for(small).clean.session.options.threads == 2
        explicit = RunConfig(input=tmp_path, output=tmp_path / "out", jobs=2, threads=1)
        assert runner.ImageRunner(explicit, narrow, todo=1).choice_for(big).clean is narrow
        # A Ray actor's --threads is its CPU count: it still widens for a big image.
        actor = runner.ImageRunner(explicit, narrow, cores=2, adapt=True)
        assert actor.choice_for(small).clean is narrow and actor.choice_for(big).clean.session.options.threads == 2
        # Same pixels from either session (up to a float rounding flip).
        px = np.random.default_rng(0).uniform(0, 1, (20, 30, 3)).astype(np.float32)
        a = upscaling.upscale_to_uint8(px, narrow)
        b = upscaling.upscale_to_uint8(px, wide)
        assert np.abs(a.astype(int) - b).max() <= 1
    finally:
        state.close()
