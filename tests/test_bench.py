"""The bench's bookkeeping: round order and paired ratios (its timings are measured by hand, never here)."""

import json
import math
import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput as bench  # noqa: E402

BASE = {
    "batchsr default x3 end to end": 6.0,
    "batchsr default x3 model only": 5.0,
    "batchsr fast x3 end to end": 1.5,
    "batchsr fast x3 model only": 0.8,
    "Pillow bicubic": 1.6,
    "OpenCV dnn_superres ESPCN x3": 2.0,
    "OpenCV dnn_superres FSRCNN x3": 2.4,
}


def _fake_runs(monkeypatch, opencv=True):
    """Each method takes its BASE time times the round's slowness (round 2 is twice as slow)."""
    calls = []

    def label_of(cmd):
        if "_model_only" in cmd:
            return f"batchsr {cmd[cmd.index('_model_only') + 2]} x3 model only"
        if "_pillow" in cmd:
            return "Pillow bicubic"
        if "_opencv" in cmd:
            return f"OpenCV dnn_superres {cmd[cmd.index('_opencv') + 3].upper()} x3"
        return f"batchsr {cmd[cmd.index('--model') + 1]} x3 end to end"

    def measure(cmd):
        label = label_of(cmd)
        if label not in BASE:
            return 1.0, 50.0, json.dumps({"seconds": 1.0}) + "\n{}"  # paper and any other shipped model: not under test
        if "OpenCV" in label and not opencv:
            raise RuntimeError("No module named 'cv2'")
        calls.append(label)
        seconds = BASE[label] * (1 + sum(c == label for c in calls[:-1]))  # the n-th call of a method: n x slower
        return seconds, 100.0, json.dumps({"seconds": seconds}) + "\n{}"

    monkeypatch.setattr(bench, "_measure", measure)
    return calls


def test_odd_rounds_run_in_reverse_and_ratios_are_paired(monkeypatch):
    calls = _fake_runs(monkeypatch)
    results = bench.run_bench(images=2, large=0, scale=3, threads=None, repeat=2)
    first, second = calls[: len(calls) // 2], calls[len(calls) // 2 :]
    assert second == first[::-1]
    row = {r["method"]: r for r in results}
    # Times are medians (here of 1x and 2x the base); ratios are taken within a round, so the slowdown cancels.
    assert math.isclose(row["batchsr fast x3 end to end"]["seconds"], 1.5 * 1.5)
    assert all(math.isclose(v, 2.0 / 1.5) for v in row["batchsr fast x3 end to end"]["vs_espcn"])
    assert all(math.isclose(v, 5.0 / 6.0) for v in row["batchsr default x3 end to end"]["vs_model_only"])
    text = bench.table(results)
    assert "| 0.33x (0.33-0.33) | 83 % (83-83) |" in text  # default
    assert "| 1.33x (1.33-1.33) | 53 % (53-53) |" in text  # fast


def test_without_opencv_the_rows_say_so_and_the_rest_stand(monkeypatch, capsys):
    _fake_runs(monkeypatch, opencv=False)
    results = bench.run_bench(images=2, large=0, scale=3, threads=None, repeat=2)
    methods = {r["method"] for r in results}
    assert "OpenCV dnn_superres ESPCN x3" not in methods and "batchsr fast x3 end to end" in methods
    assert capsys.readouterr().out.count("No module named 'cv2'") == 2  # once per OpenCV method, not per round
    assert "| - |" in bench.table(results)
