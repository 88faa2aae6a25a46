"""Training: a few real steps on a handful of shared images, resume, and the ONNX export."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402  (the train extra: pip install '.[train,test]')

from train.archs import ARCHS, DepthToSpace, facts  # noqa: E402
from train.data import TRAIN_DIRS, PatchDataset, list_images, load_pairs  # noqa: E402
from train.loop import TrainConfig, load_state, train  # noqa: E402

SMALL = dict(batch=4, patch=16, ckpt_every=3, max_images=4)


def test_architecture_facts():
    paper = facts(ARCHS["paper"](3))
    assert paper.receptive_radius == 7 and paper.macs_per_lr_pixel == 211_584
    fast = facts(ARCHS["skip4x32"](3))
    assert fast.receptive_radius == 5 and fast.macs_per_lr_pixel == 30_528
    default = facts(ARCHS["skip7x64"](3))
    assert default.receptive_radius == 8 and default.macs_per_lr_pixel < 250_000


@pytest.mark.parametrize("arch", ["skip4x32", "skip4x32k5", "skip7x24", "skip7x24k5", "skip14x16", "skip4x32d1231"])
def test_fast_candidates_fit_the_budget_and_their_radius_is_exact(arch):
    """Every `fast` candidate costs <= 35K MACs per LR pixel at x3, and a change to one
    input pixel reaches exactly ``receptive_radius`` LR pixels: the halo tiling relies on it."""
    m = ARCHS[arch](3)
    f = facts(m)
    assert f.macs_per_lr_pixel <= 35_000
    rng = np.random.default_rng(2)
    for w in m.weights:  # the last conv starts at zero: give every weight a value
        w.assign(rng.normal(0, 0.3, w.shape).astype(np.float32))
    n = 2 * f.receptive_radius + 9
    x = rng.uniform(0, 1, (1, n, n, 1)).astype(np.float32)
    x2 = x.copy()
    x2[0, n // 2, n // 2, 0] += 0.5
    diff = np.abs(keras.ops.convert_to_numpy(m(x2)) - keras.ops.convert_to_numpy(m(x)))[0, :, :, 0]
    rows = np.nonzero(diff.max(axis=1) > 0)[0] // 3  # output rows -> LR rows
    cols = np.nonzero(diff.max(axis=0) > 0)[0] // 3
    assert rows.min() == cols.min() == n // 2 - f.receptive_radius
    assert rows.max() == cols.max() == n // 2 + f.receptive_radius


def test_depth_to_space_is_dcr():
    import tensorflow as tf

    x = np.random.default_rng(0).standard_normal((2, 3, 5, 18)).astype(np.float32)
    ours = keras.ops.convert_to_numpy(DepthToSpace(3)(x))
    assert np.array_equal(ours, tf.nn.depth_to_space(x, 3).numpy())


def test_skip_net_starts_as_nearest_neighbour():
    m = ARCHS["skip4x32"](2)
    x = np.random.default_rng(1).uniform(0, 1, (1, 5, 4, 1)).astype(np.float32)
    out = keras.ops.convert_to_numpy(m(x))
    assert np.allclose(out[0, :, :, 0], np.kron(x[0, :, :, 0], np.ones((2, 2))))


def test_evaluation_sets_are_refused(shared):
    with pytest.raises(ValueError, match="evaluation set"):
        list_images([shared / "data/bsds500/val"])
    with pytest.raises(ValueError, match="evaluation set"):
        list_images([shared / "data/benchmarks/Set5"])


def test_patches_are_aligned_and_reproducible(shared):
    pairs = load_pairs(list_images(TRAIN_DIRS)[:2], 3, 16)
    a = PatchDataset(pairs, 3, 16, 4, 10, seed=7)[5]
    b = PatchDataset(pairs, 3, 16, 4, 10, seed=7)[5]
    assert np.array_equal(a[0], b[0]) and a[0].shape == (4, 16, 16, 1) and a[1].shape == (4, 48, 48, 1)
    # LR patch ~ HR patch averaged over 3x3 blocks (bicubic degradation, aligned crops)
    hr_mean = a[1][0, :, :, 0].reshape(16, 3, 16, 3).mean(axis=(1, 3))
    assert np.abs(hr_mean - a[0][0, :, :, 0]).mean() < 0.03


def test_realistic_pairs_share_the_hr_and_are_reproducible(shared):
    files = list_images(TRAIN_DIRS)[:2]
    pairs = load_pairs(files, 3, 16, "realistic", variants=3, seed=5)
    again = load_pairs(files, 3, 16, "realistic", variants=3, seed=5, processes=2)
    assert len(pairs) == 6 and pairs[0][1] is pairs[2][1] and pairs[0][1] is not pairs[3][1]
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(pairs, again, strict=True))
    assert not np.array_equal(pairs[0][0], pairs[1][0])  # each variant has its own damage
    bicubic = load_pairs(files, 3, 16)
    assert np.array_equal(bicubic[0][1], pairs[0][1]) and pairs[0][0].shape == bicubic[0][0].shape
    with pytest.raises(ValueError, match="unknown degradation"):
        load_pairs(files, 3, 16, "gaussian")


def test_mixed_precision_keeps_the_output_float32_and_the_policy_untouched():
    from train.loop import build

    before = keras.mixed_precision.dtype_policy().name
    m = build(TrainConfig(arch="skip4x32", scale=3, steps=10, precision="mixed_bfloat16"))
    assert keras.mixed_precision.dtype_policy().name == before
    convs = [layer for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs[0].compute_dtype == "bfloat16" and convs[-1].compute_dtype == "float32"
    assert m.output.dtype == "float32"
    assert all(w.dtype == "float32" for w in m.weights)  # checkpoints load into float32 models


def test_fine_tuning_starts_from_the_init_weights(trained, tmp_path):
    from train.loop import build, restore

    cfg, ckpt, _ = trained
    tuned = tmp_path / "tuned"
    state = train(TrainConfig(arch="skip4x32", scale=3, steps=0, init=str(ckpt), **SMALL), tuned, log=lambda m: None)
    assert state["init"]["step"] == 6
    # steps=0 trains nothing: the new checkpoint's model is the init model
    m0, m1 = build(cfg), build(cfg)
    restore(m0, ckpt)
    m1.load_weights(ckpt / "model.weights.h5")
    x = np.random.default_rng(0).random((1, 12, 12, 1)).astype("float32")
    assert np.array_equal(m0.predict(x, verbose=0), m1.predict(x, verbose=0))
    state = train(
        TrainConfig(arch="skip4x32", scale=3, steps=3, init=str(ckpt), degradation="realistic", variants=2, **SMALL),
        tmp_path / "tuned2",
        log=lambda m: None,
    )
    assert state["step"] == 3 and state["images"] == 4 and np.isfinite(state["history"][-1]["loss"])


def test_ssim_loss_term_is_the_runtime_metric(shared):
    """train.loop.ssim on Y/255 equals batchsr.metrics.ssim_y (what eval reports) on a real
    photo against its JPEG, and a perfect prediction scores 1 (the loss term 0)."""
    import io

    from PIL import Image

    from batchsr.color import y_metric
    from batchsr.metrics import ssim_y
    from train.loop import l1_ssim, ssim

    with Image.open(shared / "data" / "bsds500" / "val" / "3096.jpg") as im:
        clean = im.convert("RGB").crop((40, 30, 240, 180))
    buf = io.BytesIO()
    clean.save(buf, "JPEG", quality=20)
    a8, b8 = np.asarray(clean), np.asarray(Image.open(buf).convert("RGB"))
    ya, yb = ((y_metric(x) / 255.0).astype(np.float32)[None, ..., None] for x in (a8, b8))
    ours = float(keras.ops.convert_to_numpy(ssim(ya, yb))[0])
    assert ours == pytest.approx(ssim_y(a8, b8, 0), abs=1e-4) and ours < 0.99  # float32 sums
    assert float(keras.ops.convert_to_numpy(l1_ssim(0.3)(ya, ya))[0]) == pytest.approx(0.0, abs=1e-6)
    l1 = float(np.mean(np.abs(ya - yb)))
    assert float(keras.ops.convert_to_numpy(l1_ssim(0.3)(ya, yb))[0]) == pytest.approx(l1 + 0.3 * (1 - ours), abs=1e-5)


def test_l1_ssim_training_resumes_with_its_loss(tmp_path):
    cfg = TrainConfig(arch="skip4x32", scale=3, steps=3, loss="l1_ssim", ssim_weight=0.3, **SMALL)
    train(cfg, tmp_path, log=lambda m: None)
    assert {k: load_state(tmp_path)["config"][k] for k in ("loss", "ssim_weight")} == {
        "loss": "l1_ssim",
        "ssim_weight": 0.3,
    }
    state = train(TrainConfig(arch="skip4x32", scale=3, steps=6, loss="l1_ssim", **SMALL), tmp_path, log=lambda m: None)
    assert state["step"] == 6 and all(0 < h["loss"] < 1 for h in state["history"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    cfg = TrainConfig(arch="skip4x32", scale=3, steps=6, **SMALL)
    state = train(cfg, ckpt, log=lambda m: None)
    return cfg, ckpt, state


def test_training_checkpoints(trained):
    cfg, ckpt, state = trained
    assert state["step"] == 6 and len(state["history"]) == 2
    assert all(np.isfinite(h["loss"]) for h in state["history"])
    saved = load_state(ckpt)
    assert saved["step"] == 6 and saved["config"]["arch"] == "skip4x32" and saved["images"] == 4
    assert {p.name for p in ckpt.iterdir()} >= {"model.weights.h5", "optimizer.npz", "state.json"}


def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    import shutil

    from train.loop import build, restore

    cfg, ckpt, _ = trained
    resumed = tmp_path / "resumed"
    shutil.copytree(ckpt, resumed)
    m = build(cfg)
    restore(m, resumed)
    assert int(keras.ops.convert_to_numpy(m.optimizer.iterations)) == 6
    state = train(TrainConfig(arch="skip4x32", scale=3, steps=9, **SMALL), resumed, log=lambda m: None)
    assert state["step"] == 9 and len(state["history"]) == 3
    assert [h["step"] for h in state["history"]] == [3, 6, 9]
    with pytest.raises(ValueError, match="holds skip4x32 x3"):
        train(TrainConfig(arch="paper", scale=3, steps=12, **SMALL), resumed, log=lambda m: None)


def test_fitted_steps_lowers_the_total_to_what_the_time_allows():
    from train.loop import fitted_steps

    # 95 s left at 0.1 s/step from step 500: step 1,450 is reachable, rounded down to the interval.
    assert fitted_steps(500, 20_000, 300, 95.0, 0.1) == 1_200
    assert fitted_steps(500, 1_000, 300, 100.0, 0.1) == 1_000  # the asked-for total fits: kept
    assert fitted_steps(500, 20_000, 300, -5.0, 0.1) == 500  # out of time: stop where we are


def test_fit_finishes_the_schedule_inside_the_deadline(tmp_path):
    import time

    from train.loop import Cosine, build, restore

    ckpt = tmp_path / "fit"
    cfg = TrainConfig(arch="skip4x32", scale=3, steps=10_000, **SMALL)
    started = time.monotonic()
    state = train(cfg, ckpt, log=lambda m: None, fit=True, deadline=started + 8.0)
    # 10,000 steps cannot run in 8 s here: the total was lowered, and the run reached it.
    assert state["fitted"] and state["fitted"][0]["from"] == 10_000
    assert state["step"] == state["config"]["steps"] < 10_000
    assert state["step"] % SMALL["ckpt_every"] == 0
    assert time.monotonic() - started < 60
    # The checkpoint resumes with the lowered total, so its schedule decayed to the end.
    saved = load_state(ckpt)
    assert saved["config"]["steps"] == state["step"]
    m = build(TrainConfig(**{**saved["config"], "data_dirs": tuple(saved["config"]["data_dirs"])}))
    restore(m, ckpt)
    sched = m.optimizer._learning_rate
    assert isinstance(sched, Cosine) and sched.total == state["step"]


def test_export_parity_metadata_and_registry(trained, tmp_path):
    from batchsr import models
    from train.export import export_checkpoint

    _, ckpt, _ = trained
    out = tmp_path / "m" / "tiny_x3.onnx"
    meta = export_checkpoint(ckpt, out, "tiny", validate=False, aliases=["other"], log=lambda m: None)
    assert float(meta["parity_max_abs_diff"]) <= 1e-4
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert {(m["name"], m["file"]) for m in manifest["models"]} == {("tiny", "tiny_x3.onnx"), ("other", "tiny_x3.onnx")}
    assert manifest["models"][0]["sha256"] == models.sha256_file(out)
    m = models.load(str(out))
    assert (m.scale, m.radius, m.metadata["arch"], m.metadata["steps"]) == (3, 5, "skip4x32", "6")
    y = np.random.default_rng(0).uniform(0.1, 0.9, (11, 19)).astype(np.float32)
    assert m.session.run(y).shape == (33, 57)


def test_command_line_trains_and_exports(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT

    out = tmp_path / "cli_x2.onnx"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            "--name",
            "cli",
            "--arch",
            "paper",
            "--scale",
            "2",
            "--steps",
            "2",
            "--batch",
            "2",
            "--patch",
            "12",
            "--ckpt-every",
            "2",
            "--max-images",
            "2",
            "--ckpt",
            str(tmp_path / "ck"),
            "--out",
            str(out),
            "--no-validate",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "parity onnxruntime vs keras" in p.stdout and out.is_file()


@pytest.mark.parametrize(
    "args,message",
    [(["--fit"], "--fit needs --max-minutes"), (["--max-minutes", "0"], "--max-minutes must be positive")],
)
def test_fit_and_time_limit_options_are_checked(tmp_path, capsys, args, message):
    from train.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(
            ["--name", "x", "--arch", "skip4x32", "--scale", "3", "--steps", "3", "--ckpt", str(tmp_path / "ck"), *args]
        )
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()  # refused before any work
