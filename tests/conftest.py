from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers package
from helpers import ROOT, SHARED  # noqa: E402

sys.path.insert(0, str(ROOT))  # the train package lives beside batchsr, uninstalled

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared() -> Path:
    assert (SHARED / "data").is_dir(), f"shared data missing at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> Path:
    from helpers.onnx_models import conv_net

    return conv_net(tmp_path_factory.mktemp("models") / "rand_x3.onnx", scale=3, kernels=(5, 3, 3))


@pytest.fixture(scope="session")
def random_model(random_model_path):
    from batchsr.models import load

    return load(str(random_model_path))


@pytest.fixture(scope="session")
def default_model():
    from batchsr.models import load

    return load("default", 3)


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
