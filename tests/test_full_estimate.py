"""scripts/full_estimate.py: the recipe's budget on a full collection, and one measured size."""

import pytest
from tiny_runs import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("full_estimate")


def test_budget_follows_the_recipe_and_the_collection(script):
    # layout_fast: 150 epochs of 61 graphs, one graph a step, validated every 5 epochs.
    plan = script.budget(["experiment=layout_fast"], 61, "layout_xla_random")
    assert plan == {"steps": 150 * 61, "validations": 30, "dedup": "mean"}
    assert script.budget([], 61, "layout_xla_random")["dedup"] is False


@pytest.mark.slow
def test_measure_reads_times_and_memory_of_a_real_run(script, tmp_path):
    """The step time, the validation time per config and the process's peak memory come
    out of one short train.py run (the parsing follows train.py's output lines)."""
    row = script.measure(["experiment=layout_fast"], "xla", 300, 2, tmp_path)
    assert row["s_per_step"] > 0 and row["s_per_config"] > 0
    # A train.py process imports torch and PyG: well over 100 MB, far under 100 GB.
    assert 100 < row["rss_mb"] < 100_000
    assert "valid step 2" in (tmp_path / "xla-300.log").read_text()


def test_read_cost_compares_a_file_of_many_configs_with_the_timed_one(script, tmp_path):
    """The size reported is the graph's node_config_feat, the array an item without the
    cache decompresses whole and the cache keeps on disk."""
    import numpy as np

    read = script.read_cost("nlp", 200, 4000, tmp_path, dedup="mean")
    (cached,) = (tmp_path / "cache").rglob("*.node_config_feat.npy")
    feat = np.load(cached, mmap_mode="r")
    assert feat.shape[0] == 4000 and feat.shape[2] == 18
    assert read["gb"] == feat.nbytes / 1e9
    assert all(np.isfinite(read[k]) for k in ("plain", "cached", "fill", "dedup"))
    assert read["fill"] > 0
    assert script.read_cost("nlp", 200, 400, tmp_path / "plain")["dedup"] == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "error: --steps must be >= 1, got 0"),
        (
            ["--override", "experiment=layout_fast", "trainer.max_step=3"],
            "error: --override: trainer.max_step is not a setting of this config; did you mean "
            "trainer.max_steps? (python train.py experiment=layout_fast --cfg job prints every "
            "key)",
        ),
        (["--override", "experiment=layout_fastest"], "Could not find 'experiment/layout_fastest'"),
    ],
)
def test_bad_options_are_one_line_before_any_graph_is_written(
    script, monkeypatch, capsys, args, message
):
    def measure(*args):
        raise AssertionError("measured despite a bad option")

    monkeypatch.setattr(script, "measure", measure)
    with pytest.raises(SystemExit) as info:
        script.main(args)
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert info.value.code == 2 and message in line


def test_help_names_the_default_recipe(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--help"])
    assert "(default: experiment=layout_fast)" in " ".join(capsys.readouterr().out.split())
