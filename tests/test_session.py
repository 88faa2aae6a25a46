import pytest

from batchsr.session import SessionError, choose_providers, parse_providers

CPU, CUDA, COREML = "CPUExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider"


def test_coreml_first_on_apple():
    assert choose_providers([CPU, COREML]) == [COREML, CPU]


def test_cuda_before_cpu():
    assert choose_providers(["AzureExecutionProvider", CPU, CUDA]) == [CUDA, CPU]


def test_cpu_only():
    assert choose_providers([CPU]) == [CPU]


def test_request_overrides_order():
    assert choose_providers([CPU, CUDA], [CPU]) == [CPU]


def test_unavailable_request_names_what_is_available():
    with pytest.raises(SessionError, match="CUDAExecutionProvider is not available here.*CPUExecutionProvider"):
        choose_providers([CPU], [CUDA, CPU])


def test_parse_aliases():
    assert parse_providers("cuda, cpu") == (CUDA, CPU)
    assert parse_providers("CoreML") == (COREML,)
    with pytest.raises(ValueError):
        parse_providers(" , ")


def test_engine_reports_its_providers(random_model):
    assert random_model.session.providers[-1] == CPU
    assert random_model.radius == 4 and random_model.scale == 3


@pytest.mark.parametrize(
    "providers,expected", [([CUDA, CPU], True), ([COREML, CPU], True), ([CPU], False), ([], False)]
)
def test_tiles_are_batched_on_accelerators_only(providers, expected):
    from types import SimpleNamespace

    from batchsr.session import Session

    assert Session.batches.fget(SimpleNamespace(providers=providers)) is expected


def test_local_jobs_share_the_cores_without_oversubscribing():
    from batchsr.session import threads_per_job

    assert threads_per_job(2, cpus=2) == 1  # two images in flight, one core each
    assert threads_per_job(1, cpus=2) == 2  # one image in flight gets every core
    assert threads_per_job(3, cpus=16) == 5
    assert threads_per_job(4, cpus=2) == 1  # never zero (zero would mean onnxruntime's own default)


def test_a_run_leaves_no_onnxruntime_telemetry_behind(tmp_path):
    """onnxruntime 1.29+ keeps a device id and an upload cache under ~/.cache/Microsoft unless
    ORT_DISABLE_TELEMETRY=1 is set before it starts: batchsr sets it, the user may still override."""
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    inp, home = tmp_path / "in", tmp_path / "home"
    inp.mkdir()
    home.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8)).save(inp / "a.png")
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    subprocess.run(
        [sys.executable, "-m", "batchsr", str(inp), str(tmp_path / "out"), "--quiet", "--no-psnr"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "out" / "a.png").is_file()
    assert not (home / ".cache" / "Microsoft").exists()
    probe = "import os, batchsr.session; print(os.environ['ORT_DISABLE_TELEMETRY'])"
    kept = subprocess.run(
        [sys.executable, "-c", probe],
        env={**env, "ORT_DISABLE_TELEMETRY": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert kept.stdout.strip() == "0"  # the user's own setting wins


def test_placement_is_what_onnxruntime_measured_not_the_registered_list():
    from batchsr import models
    from batchsr.session import placement_label

    m = models.load("fast", 3)
    assert set(m.session.placement) == {"CPUExecutionProvider"} and m.session.placement["CPUExecutionProvider"] > 0
    assert m.session.ran_on == "CPUExecutionProvider"
    assert (
        placement_label({"CoreMLExecutionProvider": 17, "CPUExecutionProvider": 2})
        == "CoreMLExecutionProvider 17/19, CPUExecutionProvider 2/19"
    )
    assert placement_label({}) == ""


def test_cuda_searches_convolution_algorithms_by_heuristic_on_the_chosen_device():
    from batchsr.session import provider_options

    assert provider_options(CUDA) == {"cudnn_conv_algo_search": "HEURISTIC"}
    assert provider_options(CUDA, 1) == {"cudnn_conv_algo_search": "HEURISTIC", "device_id": "1"}
    assert provider_options("TensorrtExecutionProvider", 2) == {"device_id": "2"}
    assert provider_options(CPU, 1) == {}  # the CPU has no device to choose
    assert provider_options(COREML, 1) == {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"}


def test_the_cli_takes_a_device_and_refuses_a_negative_one(tmp_path, capsys):
    from batchsr.cli import run_parser

    assert run_parser().parse_args(["in", "out", "--device", "1"]).device == 1
    with pytest.raises(SystemExit):
        run_parser().parse_args(["in", "out", "--device", "-1"])
