"""scripts/gst_vs_full.py runs in its smallest form for every mode."""

import math

import pytest
from tiny_runs import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("gst_vs_full")


@pytest.mark.parametrize(
    "extra",
    [
        ["--mode", "full"],
        ["--mode", "segments"],
        ["--mode", "gst"],
        ["--mode", "gst", "--refresh", "--keep-prob", "1"],
        ["--mode", "gst", "--schedule", "cosine", "--finetune-head-steps", "1"],
    ],
)
def test_smallest_comparison_gives_a_curve(script, tmp_path_factory, extra, capsys):
    data = tmp_path_factory.getbasetemp() / "gst-vs-full-data"  # shared by the runs
    # (32 configs are sampled per graph, so every graph needs at least 32.)
    args = ["--data", str(data), "--train-graphs", "2", "--valid-graphs", "1"]
    args += ["--nodes", "60", "90", "--configs", "34", "40", "--steps", "2", "--eval-every", "1"]
    args += ["--segment-nodes", "40", "--method", "contiguous", "--graphs-per-step", "2"]
    curve = script.main(args + extra)
    assert len(curve) == 2 + ("--finetune-head-steps" in extra)
    assert all(math.isfinite(t) and -1.0 <= t <= 1.0 for t in curve)
    out = capsys.readouterr().out
    assert "(4 graph visits): valid tau" in out and "peak RSS" in out


def test_head_finetuning_changes_only_the_head(script, tmp_path_factory, monkeypatch):
    """The finetuning phase trains the prediction head alone: every other weight keeps the
    value it had when the main training ended."""
    import torch

    snapshots = []
    real_adam = torch.optim.Adam

    def recording_adam(params, **kwargs):
        params = list(params)
        optimizer = real_adam(params, **kwargs)
        snapshots.append(optimizer)
        return optimizer

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    data = tmp_path_factory.getbasetemp() / "gst-vs-full-data"
    args = ["--data", str(data), "--train-graphs", "2", "--valid-graphs", "1"]
    args += ["--nodes", "60", "90", "--configs", "34", "40", "--steps", "2", "--eval-every", "2"]
    args += ["--segment-nodes", "40", "--method", "contiguous", "--graphs-per-step", "2"]
    args += ["--finetune-head-steps", "3"]
    before = {}
    original_step = real_adam.step

    def step(self, *a, **k):
        if self is snapshots[-1] and len(snapshots) == 2 and not before:
            model_params = snapshots[0].param_groups[0]["params"]
            before.update({id(p): p.detach().clone() for p in model_params})
        return original_step(self, *a, **k)

    monkeypatch.setattr(real_adam, "step", step)
    script.main(args)
    assert len(snapshots) == 2  # the main optimizer, then the head's
    head = {id(p) for p in snapshots[1].param_groups[0]["params"]}
    changed = {
        pid
        for p in snapshots[0].param_groups[0]["params"]
        if not torch.equal(before[(pid := id(p))], p.detach())
    }
    assert changed and changed <= head
