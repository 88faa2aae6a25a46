"""Issue 15, int8: every shipped model has an int8 build, --precision picks it (auto by a pure rule
tested here on made-up CPUs), tiling stays exact in int8, and the report says which build ran."""

import numpy as np
import pytest
from helpers import photo

from batchsr import models, upscaling
from batchsr.precision import INT8_FLAGS, choose_precision, cpu_flags
from train.quantize import NOT_QUANTIZED

CPU, CUDA, COREML = "CPUExecutionProvider", "CUDAExecutionProvider", "CoreMLExecutionProvider"
AVX2_ONLY = {"sse4_2", "avx", "avx2", "fma", "f16c"}
SAPPHIRE_RAPIDS = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"}
ALDER_LAKE = AVX2_ONLY | {"avx_vnni"}


@pytest.mark.parametrize(
    "providers, flags, want",
    [
        ([CPU], SAPPHIRE_RAPIDS, "int8"),
        ([CPU], ALDER_LAKE, "int8"),
        ([CPU], AVX2_ONLY | {"amx_int8"}, "int8"),
        ([CPU], AVX2_ONLY, "fp32"),  # measured: int8 pays less there, and may saturate
        ([CPU], set(), "fp32"),  # no /proc/cpuinfo (macOS, Windows): nothing known
        ([CPU], {"fp", "asimd", "asimddp"}, "fp32"),  # ARM dot product: not measured
        ([CUDA, CPU], SAPPHIRE_RAPIDS, "fp32"),
        ([COREML, CPU], SAPPHIRE_RAPIDS, "fp32"),
        ([], SAPPHIRE_RAPIDS, "int8"),
    ],
)
def test_auto_picks_int8_only_where_the_cpu_runs_it_with_vnni_or_amx(providers, flags, want):
    assert choose_precision("auto", providers, flags) == want


@pytest.mark.parametrize("requested", ["fp32", "int8"])
def test_an_explicit_precision_is_kept_whatever_the_machine(requested):
    for flags in (AVX2_ONLY, SAPPHIRE_RAPIDS):
        assert choose_precision(requested, [CUDA, CPU], flags) == requested


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="auto, fp32, int8"):
        choose_precision("fp16", [CPU], SAPPHIRE_RAPIDS)


def test_cpu_flags_reads_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 avx512_vnni amx_int8\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_vnni amx_int8\n"
    )
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_vnni", "amx_int8"} and INT8_FLAGS & cpu_flags(x86)
    assert cpu_flags(arm) == {"fp", "asimd", "asimddp", "i8mm"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


QUANTIZED = [e for e in models.shipped() if e.name not in NOT_QUANTIZED]


def test_only_the_paper_reference_model_ships_without_an_int8_build():
    assert {e.name for e in models.shipped() if e.int8 is None} == NOT_QUANTIZED == {"paper"}
    with pytest.raises(models.ModelError, match="no int8 build of 'paper' x3"):
        models.load("paper", 3, precision="int8")
    assert models.load("paper", 3, precision="auto").precision == "fp32"  # auto falls back


@pytest.mark.parametrize("entry", QUANTIZED, ids=lambda e: f"{e.name}_x{e.scale}")
def test_every_shipped_model_has_a_verified_int8_build(entry):
    assert entry.int8 is not None and entry.int8.path.is_file()
    assert models.sha256_file(entry.int8.path) == entry.int8.sha256
    m = models.load(entry.name, entry.scale, precision="int8")
    assert (m.precision, m.label) == ("int8", f"{entry.name} x{entry.scale} int8")
    assert m.radius == models.load(entry.name, entry.scale).radius


@pytest.mark.parametrize("entry", QUANTIZED, ids=lambda e: f"{e.name}_x{e.scale}")
def test_tiling_is_exact_in_int8(entry):
    m = models.load(entry.name, entry.scale, precision="int8")
    pixels = np.asarray(photo(7, 61, 47), dtype=np.float32) / 255.0
    whole = upscaling.upscale_pixels(pixels, m, tile=0)
    tiled = upscaling.upscale_pixels(pixels, m, tile=16)
    # As exact as float tiling: bit-identical on an Intel AMX machine, within 1e-4 of an 8-bit
    # level on an AMD EPYC (AVX-512 VNNI), whose kernels round differently by window width.
    # (Quantised to 8 bits, a handful of pixels in 100,000 may then round one level apart there.)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5)
    # and int8 is close to the float model (not a different picture)
    fp32 = upscaling.upscale_pixels(pixels, models.load(entry.name, entry.scale), tile=0)
    assert np.abs(whole - fp32).mean() < 2 / 255


def test_a_folder_run_reports_the_precision_that_ran(tmp_path, run_folder):
    inp = tmp_path / "in"
    inp.mkdir()
    photo(0, 24, 16).save(inp / "a.png")
    m = models.load("fast", 3, precision="int8")
    s, rows = run_folder(inp, tmp_path / "out", m, precision="int8")
    assert rows["a.png"]["model"] == "fast x3 int8" and s.line().endswith("; model fast x3 int8")


def test_a_model_file_has_no_int8_build_to_pick(tmp_path, random_model_path):
    with pytest.raises(models.ModelError, match="train.quantize"):
        models.load(str(random_model_path), precision="int8")
    assert models.load(str(random_model_path), precision="auto").precision == "fp32"
