"""The package's layout: modules import one way, and no module shadows the library API."""

import importlib
import pkgutil
import subprocess
import sys

from helpers import ROOT

import batchsr


def test_no_import_cycle_function_level_imports_included():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no import cycle")


def test_the_cycle_check_finds_a_cycle():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import import_graph
    finally:
        sys.path.pop(0)
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_graph.cycles({"a": {"b"}, "b": set()}) == []
    assert "pipeline" in import_graph.graph()["cli"]  # function-level imports count


def test_every_module_imports_and_the_api_stays_functions():
    for info in pkgutil.iter_modules(batchsr.__path__):
        if info.name not in ("__main__", "ray_engine"):  # ray is an extra
            importlib.import_module(f"batchsr.{info.name}")
    assert callable(batchsr.upscale) and callable(batchsr.run_folder)
