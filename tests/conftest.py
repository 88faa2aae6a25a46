from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the train package lives beside batchsr, uninstalled
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED = ROOT.parent / "shared"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared() -> Path:
    assert (SHARED / "data").is_dir(), f"shared data missing at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> Path:
    from onnx_factory import conv_net

    return conv_net(tmp_path_factory.mktemp("models") / "rand_x3.onnx", scale=3, kernels=(5, 3, 3))


@pytest.fixture(scope="session")
def random_model(random_model_path):
    from batchsr.models import load

    return load(str(random_model_path))


@pytest.fixture(scope="session")
def default_model():
    from batchsr.models import load

    return load("default", 3)


def photo(seed: int, w: int, h: int, mode: str = "RGB") -> Image.Image:
    """A smooth, photo-like test image (gradients + blobs + texture), reproducible by seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for c in range(3):
        a = 0.5 + 0.3 * np.sin(xx / (7 + 5 * c + rng.uniform(0, 5)) + rng.uniform(0, 6))
        a += 0.2 * np.cos(yy / (5 + 3 * c + rng.uniform(0, 5)) + rng.uniform(0, 6))
        a += 0.05 * rng.standard_normal((h, w))
        chans.append(a)
    arr = np.clip(np.stack(chans, -1), 0, 1)
    im = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
    return im if mode == "RGB" else im.convert(mode)


@pytest.fixture
def run_folder():
    """Run a folder job in-process like the CLI does; returns (summary, report rows by input name)."""
    from batchsr import pipeline
    from batchsr.config import RunConfig
    from batchsr.report import read_rows

    def go(inp: Path, out: Path, model, **options):
        options.setdefault("psnr", False)
        cfg = RunConfig(input=Path(inp), output=Path(out), model=model.name, scale=model.scale, **options)
        summary = pipeline.run(cfg, model)
        rows = {} if cfg.dry_run else {Path(r["input"]).name: r for r in read_rows(cfg.report_path)}
        return summary, rows

    return go
