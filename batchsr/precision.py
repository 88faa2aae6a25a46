"""Which build of a model runs: float32, or the int8 one where this CPU makes it pay.

Pure choices, tested without the hardware: :func:`choose_precision` takes the
providers and the CPU's feature flags as arguments; :func:`cpu_flags` is the
only function that looks at the machine.

``auto`` picks int8 only where onnxruntime's CPU provider runs first and the
CPU has an int8 dot-product instruction on which int8 was measured to pay:
AVX-512 VNNI, AVX-VNNI or AMX. ``python benchmarks/precision.py`` measures
both builds side by side (the model card's "int8" section quotes it). On an
AVX2-only CPU the int8 kernels lack that instruction and can saturate, so
``auto`` stays float32, as it does on a GPU or on CoreML, whose int8 paths
were not measured, and for a model shipped without an int8 build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

PRECISIONS = ("auto", "fp32", "int8")
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The CPU's feature flags as Linux names them (empty where /proc/cpuinfo is absent)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, ARM
            return frozenset(value.split())
    return frozenset()


def choose_precision(requested: str, providers: Sequence[str], flags: Iterable[str]) -> str:
    """``fp32`` or ``int8`` for ``requested`` (auto, fp32 or int8), given the providers that will
    run the model (best first) and the CPU's flags."""
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r} (choose from {', '.join(PRECISIONS)})")
    if requested != "auto":
        return requested
    on_cpu = not providers or providers[0] == "CPUExecutionProvider"
    return "int8" if on_cpu and INT8_FLAGS & set(flags) else "fp32"
