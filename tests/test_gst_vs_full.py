"""scripts/gst_vs_full.py runs in its smallest form for every mode."""

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gst_vs_full.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gst_vs_full", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "extra",
    [
        ["--mode", "full"],
        ["--mode", "segments"],
        ["--mode", "gst"],
        ["--mode", "gst", "--refresh", "--keep-prob", "1"],
    ],
)
def test_smallest_comparison_gives_a_curve(script, tmp_path_factory, extra, capsys):
    data = tmp_path_factory.getbasetemp() / "gst-vs-full-data"  # shared by the runs
    # (32 configs are sampled per graph, so every graph needs at least 32.)
    args = ["--data", str(data), "--train-graphs", "2", "--valid-graphs", "1"]
    args += ["--nodes", "60", "90", "--configs", "34", "40", "--steps", "2", "--eval-every", "1"]
    args += ["--segment-nodes", "40", "--method", "contiguous", "--graphs-per-step", "2"]
    curve = script.main(args + extra)
    assert len(curve) == 2
    assert all(math.isfinite(t) and -1.0 <= t <= 1.0 for t in curve)
    out = capsys.readouterr().out
    assert "(4 graph visits): valid tau" in out and "peak RSS" in out
