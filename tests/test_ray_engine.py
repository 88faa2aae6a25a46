"""--engine ray on a real local Ray cluster: the same outputs, rows, resume and failures as the local engine.

One cluster (``ray.init(num_cpus=2)``) serves the whole module; every run
kills its actors when it ends, and the cluster is shut down at the end.
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import ray
from helpers import ROOT, photo
from helpers.images import damaged_photos, png16
from helpers.processes import done_lines, wait_for
from PIL import Image

from batchsr import pipeline, ray_engine
from batchsr.cli import main
from batchsr.config import RunConfig
from batchsr.report import read_rows
from batchsr.resume import STATE_NAME


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module; yields its address for other processes to join."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=ray_engine.runtime_env())
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _folder(root: Path) -> list[str]:
    """Inputs of every kind the runner treats differently, plus a bad file; returns the good PNGs' paths."""
    (root / "sub").mkdir(parents=True)
    photo(1, 40, 31, grain=0).save(root / "rgb.png")  # clean: has a PSNR figure
    photo(2, 23, 37).convert("L").save(root / "sub" / "grey.png")
    rgba = photo(3, 30, 20).convert("RGBA")
    rgba.putalpha(Image.fromarray((np.arange(600).reshape(20, 30) % 256).astype(np.uint8)))
    rgba.save(root / "sub" / "alpha.png")
    png16(root / "deep.png", (np.arange(26 * 19).reshape(19, 26) * 97 % 65536).astype(np.uint16))
    photo(4, 33, 25).save(root / "photo.jpg", quality=90)  # written as PNG: --format png below
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "notes.txt").write_text("not an image")
    return ["rgb.png", "sub/grey.png", "sub/alpha.png", "deep.png", "photo.png"]


def _rows(out: Path) -> list[dict]:
    """The report's rows with OUTPUT's path neutralised and the timings dropped."""
    rows = [{k: v for k, v in r.items() if k != "seconds"} for r in read_rows(out / "batchsr-report.csv")]
    for r in rows:
        if r["output"]:
            assert r["output"].startswith(str(out))
            r["output"] = "OUT" + r["output"][len(str(out)) :]
    return rows


def _run(inp: Path, out: Path, model: Path, *extra: str) -> int:
    return main([str(inp), str(out), "--model", str(model), "--format", "png", "--quiet", *extra])


def test_same_folder_same_bytes_and_rows_as_the_local_engine(cluster, tmp_path, random_model_path, capsys, monkeypatch):
    written = _folder(tmp_path / "in")
    # Relative paths, as a user types them: the workers' working directory is not the driver's.
    monkeypatch.chdir(tmp_path)
    inp, local, remote = Path("in"), Path("local"), Path("ray")
    assert _run(inp, local, random_model_path) == 1  # broken.png
    assert _run(inp, remote, random_model_path, "--engine", "ray") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(ln.startswith("batchsr: 5 ok, 0 skipped, 1 failed in") for ln in lines)

    for rel in written:
        assert (local / rel).read_bytes() == (remote / rel).read_bytes(), rel
    assert sorted(p.relative_to(remote).as_posix() for p in remote.rglob("*.png")) == sorted(written)
    rows = _rows(remote)
    assert rows == _rows(local)
    assert [r["status"] for r in rows].count("error") == 1
    # The PSNR experiment ran on the workers too: a figure on the clean input, none on damaged ones.
    ok = {Path(r["input"]).name: r for r in rows if r["status"] == "ok"}
    assert ok["rgb.png"]["psnr_model"] and ok["rgb.png"]["noise_sigma"]
    assert all(bool(r["psnr_model"]) != ("no PSNR figure" in r["notes"]) for r in ok.values())
    # The resume record was written by the driver, one line per output, as the local engine writes it.
    state = _finished(remote)
    local_state = _finished(local)
    # Ray's driver also marks each output pending before it sends the job (the local engine need not).
    assert sorted(
        json.loads(ln)["out"] for ln in (remote / STATE_NAME).read_text().splitlines() if json.loads(ln).get("pending")
    ) == sorted(j for j in (*written, "broken.png"))
    assert sorted(state) == sorted(written)
    assert {k: (e["key"], e["size"], e["out_width"]) for k, e in state.items()} == {
        k: (e["key"], e["size"], e["out_width"]) for k, e in local_state.items()
    }
    assert not [p for p in remote.iterdir() if p.name.startswith(".batchsr-probe")]


def test_auto_ships_both_models_and_chooses_as_the_local_engine(cluster, shared, tmp_path, capsys):
    """Both sessions of --model auto (the int8 builds where the CPU runs them) on every worker."""
    inp = damaged_photos(shared, tmp_path / "in")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main([str(inp), str(local), "--quiet"]) == 0
    assert main([str(inp), str(remote), "--quiet", "--engine", "ray"]) == 0
    rows = _rows(remote)
    assert rows == _rows(local)
    assert sorted(r["model"].split(" ")[0] for r in rows) == ["default", "photo", "photo"]
    for name in ("clean.png", "q40.jpg", "noisy.png"):
        assert (local / name).read_bytes() == (remote / name).read_bytes(), name


def test_a_rerun_skips_what_is_done_and_redoes_only_a_changed_input(cluster, tmp_path, random_model_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _folder(inp)
    assert _run(inp, out, random_model_path, "--engine", "ray") == 1
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert _run(inp, out, random_model_path, "--engine", "ray") == 1
    photo(9, 40, 31).save(inp / "rgb.png")  # a new version of one input
    assert _run(inp, out, random_model_path, "--engine", "ray") == 1
    summaries = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("batchsr: ")]
    assert summaries[1].startswith("batchsr: 0 ok, 5 skipped, 1 failed")  # the broken file is retried, in vain
    assert summaries[2].startswith("batchsr: 1 ok, 4 skipped, 1 failed")
    changed = sorted(p.name for p, t in first.items() if p.stat().st_mtime_ns != t)
    assert changed == ["rgb.png"]
    statuses = {Path(r["input"]).name: r["status"] for r in read_rows(out / "batchsr-report.csv")}
    assert statuses == {
        "broken.png": "error",
        "deep.png": "skipped",
        "photo.jpg": "skipped",
        "rgb.png": "ok",
        "alpha.png": "skipped",
        "grey.png": "skipped",
    }


def test_kill_9_of_the_driver_then_resume(cluster, tmp_path, random_model_path, capsys):
    n = 90
    inp, out = tmp_path / "in", tmp_path / "out"
    names = _same_photos(inp, n)
    first = _ray_process(inp, out, random_model_path, cluster)
    wait_for(lambda: done_lines(out) >= 5, first, "five finished images", timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait()

    def complete() -> dict[str, tuple[int, int]]:
        found = {}
        for p in out.glob("*.png"):
            with Image.open(p) as o:
                assert o.size == (288, 288)
                o.load()  # a truncated file raises
            found[p.name] = (p.stat().st_ino, p.stat().st_mtime_ns)
        return found

    at_kill = complete()
    recorded = {}
    for line in (out / STATE_NAME).read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line cut by the kill
        if e.get("pending"):
            continue
        if e["out"] in at_kill and (out / e["out"]).stat().st_size == e["size"]:
            recorded[e["out"]] = at_kill[e["out"]]
    assert 5 <= len(recorded) < n
    # Finished but not yet recorded by the driver: at most the window in flight (1 actor x 2 x --jobs 2).
    assert len(set(at_kill) - set(recorded)) <= 4

    assert main([str(inp), str(out), "--model", str(random_model_path), "--engine", "ray", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"batchsr: {n - len(recorded)} ok, {len(recorded)} skipped, 0 failed")
    final = complete()
    assert sorted(final) == names
    assert {k: final[k] for k in recorded} == recorded  # nothing recorded was rewritten
    statuses = {Path(r["input"]).name: r["status"] for r in read_rows(out / "batchsr-report.csv")}
    assert statuses == {k: "skipped" if k in recorded else "ok" for k in names}
    assert not [p for p in out.iterdir() if p.name.endswith(".batchsr-tmp")]


def test_sigterm_stops_a_ray_run_with_report_state_and_disk_agreeing(cluster, tmp_path, random_model_path):
    n = 90
    inp, out = tmp_path / "in", tmp_path / "out"
    _same_photos(inp, n)
    proc = _ray_process(inp, out, random_model_path, cluster, "--no-psnr")
    wait_for(lambda: done_lines(out) >= 3, proc, "three finished images", timeout=90)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("batchsr: stopped by SIGTERM;"), stderr
    on_disk = {p.name for p in out.glob("*.png")}
    assert 3 <= len(on_disk) < n
    ok = {Path(r["output"]).name for r in read_rows(out / "batchsr-report.csv") if r["status"] == "ok"}
    assert ok == on_disk == set(_finished(out))
    assert not [p for p in out.iterdir() if p.name.endswith(".batchsr-tmp")]


def test_a_worker_that_dies_is_replaced_and_its_images_done_again(
    cluster, tmp_path, random_model_path, random_model, monkeypatch, caplog
):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    for i in range(16):
        photo(i, 64, 48).save(inp / f"{i:02d}.png")
    made = []
    real = pipeline.make_distributor
    monkeypatch.setattr(pipeline, "make_distributor", lambda *a: made.append(real(*a)) or made[-1])

    def kill_the_worker_once(row):
        if len(rows) == 3:
            ray.kill(made[0]._actors[0], no_restart=True)  # as the OS would for memory: in-flight images die
        rows.append(row)

    rows = []
    cfg = RunConfig(input=inp, output=out, model=str(random_model_path), scale=3, psnr=False, engine="ray")
    summary = pipeline.run(cfg, random_model, on_row=kill_the_worker_once)
    assert (summary.ok, summary.failed) == (16, 0)
    assert "a Ray worker died; starting another" in caplog.text
    assert [Path(r.input).name for r in rows] == [f"{i:02d}.png" for i in range(16)]
    for i in range(16):
        with Image.open(out / f"{i:02d}.png") as o:
            assert o.size == (192, 144)
            o.load()
    assert sorted(_finished(out)) == [f"{i:02d}.png" for i in range(16)]


def test_a_worker_that_cannot_see_input_stops_the_run_before_anything(
    cluster, tmp_path, random_model_path, monkeypatch, capsys
):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    photo(0, 20, 20).save(inp / "a.png")
    photo(1, 20, 20).save(inp / "b.png")
    real_plan = pipeline.plan

    def plan_then_hide(cfg, model):
        # The driver found the files; a worker that lacks the shared mount does not.
        items = real_plan(cfg, model)
        (inp / "a.png").unlink()
        return items

    monkeypatch.setattr(pipeline, "plan", plan_then_hide)
    assert main([str(inp), str(out), "--model", str(random_model_path), "--engine", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("batchsr: the Ray worker on ") and f"cannot read INPUT {inp / 'a.png'}" in err
    assert "every Ray node mounts at the same path" in err
    assert not (out / "batchsr-report.csv").exists()
    assert sorted(p.name for p in out.iterdir()) == [".batchsr-state.jsonl", ".batchsr.lock"]


def test_probe_tells_a_different_output_folder_from_the_drivers(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    (inp / "a.png").write_bytes(b"x")
    msg = ray_engine.probe_paths(str(inp), str(inp / "a.png"), str(out), ".batchsr-probe.t.batchsr-tmp", "t0k")
    assert msg == f"does not see the driver's OUTPUT {out} (a missing or different folder at that path)"
    (out / ".batchsr-probe.t.batchsr-tmp").write_text("t0k")
    assert ray_engine.probe_paths(str(inp), str(inp / "a.png"), str(out), ".batchsr-probe.t.batchsr-tmp", "t0k") is None
    assert [p.name for p in out.iterdir()] == [".batchsr-probe.t.batchsr-tmp"]  # its own probe file is gone
    assert ray_engine.probe_paths(str(inp / "gone"), None, str(out), "x", "y").startswith(
        f"cannot read INPUT {inp / 'gone'}: No such file"
    )


def test_engine_ray_without_ray_is_a_one_line_usage_error_naming_the_extra(
    tmp_path, random_model_path, monkeypatch, capsys
):
    photo(0, 8, 8).save(tmp_path / "a.png")
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is not installed
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "a.png"), str(tmp_path / "out"), "--model", str(random_model_path), "--engine", "ray"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'batchsr[ray]'" in err
    assert not (tmp_path / "out").exists()


def test_ray_address_without_engine_ray_is_a_usage_error(tmp_path, random_model_path, capsys):
    photo(0, 8, 8).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "a.png"), str(tmp_path / "out"), "--ray-address", "auto"])
    assert e.value.code == 2 and "--ray-address needs --engine ray" in capsys.readouterr().err


def test_a_worker_that_cannot_build_its_session_stops_the_run_with_one_line(
    cluster, tmp_path, random_model, random_model_path
):
    from batchsr.discover import Job
    from batchsr.distribute import EngineUnavailable

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    photo(0, 8, 8).save(inp / "a.png")
    # Asked for a provider that the worker nodes lack (the driver was not asked to run the model).
    cfg = RunConfig(
        input=inp,
        output=out,
        model=str(random_model_path),
        scale=3,
        engine="ray",
        providers=("NoSuchExecutionProvider",),
    )
    with pytest.raises(EngineUnavailable) as e:
        pipeline.make_distributor(cfg, random_model, [Job(src=inp / "a.png", rel=Path("a.png"))])
    assert str(e.value).startswith(
        "a Ray worker could not start: batchsr.session.SessionError: provider "
        "NoSuchExecutionProvider is not available here"
    )
    assert "\n" not in str(e.value) and list(out.iterdir()) == []


def _finished(out: Path) -> dict:
    """The resume record's finished outputs (the last line of each; pending lines left out)."""
    lines = [json.loads(ln) for ln in (out / STATE_NAME).read_text().splitlines()]
    return {e["out"]: e for e in lines if not e.get("pending")}


def _same_photos(inp: Path, n: int) -> list[str]:
    """``n`` copies of one 96x96 photo in ``inp`` (quick to write); returns their names."""
    inp.mkdir()
    im = photo(0, 96, 96)
    names = [f"{i:04d}.png" for i in range(n)]
    for name in names:
        im.save(inp / name, compress_level=1)
    return names


def _ray_process(inp: Path, out: Path, model: Path, cluster: str, *flags: str) -> subprocess.Popen:
    """A real batchsr process joining this module's cluster as a job of its own."""
    cmd = [sys.executable, "-m", "batchsr", str(inp), str(out), "--model", str(model), "--engine", "ray"]
    return subprocess.Popen(
        [*cmd, "--ray-address", cluster, *flags], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
