"""The shipped models and the registry that finds and verifies them."""

import shutil

import numpy as np
import pytest
from helpers.onnx_models import conv_net
from PIL import Image

from batchsr import models
from batchsr.models import ModelError

ENTRIES = models.shipped()


def test_something_is_shipped_for_x3():
    assert ("default", 3) in {(e.name, e.scale) for e in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.name}_x{e.scale}")
def test_shipped_model_is_intact_and_described(entry):
    assert models.sha256_file(entry.path) == entry.sha256
    m = models.load(entry.name, entry.scale)
    assert m.scale == entry.scale and m.sha256 == entry.sha256
    meta = m.metadata
    for key in (
        "arch",
        "receptive_radius",
        "macs_per_lr_pixel",
        "parameters",
        "steps",
        "input",
        "training_data",
        "val_psnr_b100",
        "parity_max_abs_diff",
    ):
        assert key in meta, key
    assert 0 < m.radius < 32
    assert float(meta["parity_max_abs_diff"]) <= 1e-4


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: f"{e.name}_x{e.scale}")
def test_shipped_model_upscales_and_beats_bicubic(entry, shared):
    from batchsr import metrics
    from batchsr.experiment import paper_experiment

    m = models.load(entry.name, entry.scale)
    gains = []
    # B100 is the validation set: evaluating on it is allowed, training never.
    for p in sorted((shared / "data/bsds500/val").glob("*.jpg"))[:3]:
        truth = np.asarray(Image.open(p).convert("RGB"))
        gt, bic, sr = paper_experiment(truth, m)
        assert sr.shape == gt.shape and gt.shape[0] == (truth.shape[0] // m.scale) * m.scale
        gains.append(metrics.psnr_y(gt, sr, m.scale) - metrics.psnr_y(gt, bic, m.scale))
    assert np.mean(gains) > 0.3, gains


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "models"
    shutil.copytree(models.models_dir(), d)
    entry = models.load_manifest(d)[0]
    data = bytearray(entry.path.read_bytes())
    data[-1] ^= 0xFF
    (d / entry.path.name).write_bytes(bytes(data))
    monkeypatch.setattr(models, "_PACKAGE_DIR", d)
    with pytest.raises(ModelError, match="corrupt"):
        models.load(entry.name, entry.scale)


def test_unknown_name_lists_what_is_shipped():
    with pytest.raises(ModelError, match=r"no shipped model 'nope' for x3 \(shipped: .*default x3"):
        models.resolve("nope", 3)


def test_onnx_without_our_metadata_is_refused(tmp_path):
    p = conv_net(tmp_path / "bare.onnx", metadata={"receptive_radius": None})
    with pytest.raises(ModelError, match="lacks batchsr metadata"):
        models.load(str(p))


def test_scale_must_match_the_file(tmp_path):
    p = conv_net(tmp_path / "x2.onnx", scale=2)
    assert models.load(str(p)).scale == 2
    with pytest.raises(ModelError, match="x2 model"):
        models.load(str(p), 3)


def test_a_model_from_its_bytes_is_the_same_model_and_its_checksum_is_enforced(random_model_path):
    on_disk = models.load(str(random_model_path))
    data = random_model_path.read_bytes()
    shipped = models.from_bytes(data, on_disk.name, on_disk.sha256)
    assert (shipped.label, shipped.radius, shipped.sha256) == (on_disk.label, on_disk.radius, on_disk.sha256)
    y = np.random.default_rng(0).random((9, 11), np.float32)
    assert np.array_equal(shipped.session.run(y), on_disk.session.run(y))
    with pytest.raises(ModelError, match="do not match its checksum"):
        models.from_bytes(data[:-1] + bytes([data[-1] ^ 1]), on_disk.name, on_disk.sha256)


# Compute budgets the models are held to (MACs per LR pixel): they set the speed on a CPU.
COST_LIMITS = {"default": 250_000, "fast": 35_000, "photo": 250_000}


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.name in COST_LIMITS], ids=lambda e: f"{e.name}_x{e.scale}")
def test_shipped_models_stay_within_their_compute_budget(entry):
    meta = models.load(entry.name, entry.scale).metadata
    assert int(meta["macs_per_lr_pixel"]) <= COST_LIMITS[entry.name]
    assert int(meta["scale"]) == entry.scale and meta["name"] == entry.name


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.name == "photo"], ids=lambda e: f"photo_x{e.scale}")
def test_photo_restores_damaged_photos_better_than_default_and_bicubic(entry, shared):
    """What `photo` is for: on blurred, noisy, JPEG-damaged inputs (the realistic sets'
    degradation, fixed seeds) it is closer to the clean original than `default`, which
    sharpens the damage, and than bicubic."""
    from batchsr.degrade import degrade_realistic
    from batchsr.evaluate import REALISTIC_SETS, score
    from batchsr.upscaling import upscale_u8

    photo, default = models.load("photo", entry.scale), models.load("default", entry.scale)
    s = entry.scale
    wins = {"default": [], "bicubic": []}
    for i, p in enumerate(sorted((shared / "data/bsds500/val").glob("*.jpg"))[:6]):
        gt, lr = degrade_realistic(Image.open(p), s, 1000 + i, REALISTIC_SETS)
        gt, lr = np.asarray(gt), np.asarray(lr)
        bicubic = np.asarray(Image.fromarray(lr).resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
        mine = score(gt, upscale_u8(lr, photo), s).psnr
        wins["default"].append(mine - score(gt, upscale_u8(lr, default), s).psnr)
        wins["bicubic"].append(mine - score(gt, bicubic, s).psnr)
    assert np.mean(wins["default"]) > 0.2 and np.mean(wins["bicubic"]) > 0.2, wins
