"""scripts/quality.py in its smallest form: runs, aggregation, ensemble, table, resume."""

import json
import math

import pytest
from tiny_runs import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("quality")


@pytest.mark.slow
def test_quick_table_has_every_row_and_resumes(script, tmp_path, capsys):
    out = tmp_path / "quality.md"
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]
    args += ["--families", "roofline", "--recipes", "layout_fast", "tile_xla", "--seeds", "0", "1"]
    assert script.main(args) == 0
    results = json.loads(out.with_suffix(".json").read_text())
    row = results["layout"]["roofline"]["recipes"]["layout_fast"]
    assert len(row["tau"]["values"]) == 2
    assert row["best_member_tau"] == max(row["tau"]["values"])
    assert -1.0 <= row["ensemble_tau"] <= 1.0
    oracle = results["layout"]["roofline"]["oracle"]["kendall_tau"]
    assert 0.0 < oracle <= 1.0
    tile = results["tile"]["tile_spill"]["recipes"]["tile_xla"]
    assert all(math.isfinite(v) for v in tile["top5_error"]["values"])
    # The seeds' ensemble: errors as the metric's, not below a perfect ranking's 0.
    assert set(tile["ensemble"]) == {"top1_error", "top5_error", "top10_error"}
    assert all(v >= 0.0 for v in tile["ensemble"].values())
    table = out.read_text()
    assert "| roofline | layout_fast |" in table and "| tile_spill | tile_xla |" in table
    assert "ensemble top-1 / 5 / 10" in table
    row = next(line for line in table.splitlines() if line.startswith("| tile_spill | tile_xla"))
    ensemble = " / ".join(f"{tile['ensemble'][k]:.4f}" for k in script.ERRORS)
    assert f"| {ensemble} |" in row
    capsys.readouterr()
    # A second call reads the finished runs instead of training them again.
    assert script.main(args) == 0
    assert "$ train.py" not in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["layout"] == results["layout"]


def test_unknown_recipe_or_family_is_refused(script, capsys):
    for bad in (["--recipes", "fastest"], ["--families", "nope"]):
        with pytest.raises(SystemExit):
            script.main(bad)
        assert "unknown" in capsys.readouterr().err


def test_a_finished_run_is_read_back_unless_retrain(script, tmp_path, monkeypatch):
    run, overrides = tmp_path / "run", ["experiment=layout_fast", "trainer.seed=0"]
    run.mkdir()
    command = ["train.py", *overrides, "trainer.progress=false"]
    command += [f"hydra.run.dir={run}", "trainer.overwrite=true"]
    row = {"command": command, "best": {"kendall_tau": 0.5}}
    (run / "quality.json").write_text(json.dumps(row))

    class Launched(Exception):
        pass

    def popen(*args, **kwargs):
        raise Launched

    monkeypatch.setattr(script.subprocess, "Popen", popen)
    assert script.train(run, overrides, 1, print) == row
    with pytest.raises(Launched):
        script.train(run, overrides, 1, print, retrain=True)
    with pytest.raises(Launched):  # another command: not the finished run's
        script.train(run, [*overrides, "model.layout_tiling=true"], 1, print)
