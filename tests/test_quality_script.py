"""scripts/quality.py in its smallest form: runs, aggregation, ensemble, table, resume."""

import json
import math

import numpy as np
import pytest
import torch
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
    # The same checkpoints on the labelled test kernels, beside the oracle's errors there.
    assert all(len(tile["test"][k]["values"]) == 2 for k in script.ERRORS)
    assert set(tile["test_ensemble"]) == set(script.ERRORS)
    assert set(results["tile"]["tile_spill"]["test_oracle"]) >= set(script.ERRORS)
    # Layout's test graphs too: each seed's checkpoint and their ensemble.
    assert len(row["test"]["kendall_tau"]["values"]) == 2
    assert -1.0 <= row["test_ensemble"]["kendall_tau"] <= 1.0
    assert 0.0 < results["layout"]["roofline"]["test_oracle"]["kendall_tau"] <= 1.0
    table = out.read_text()
    assert "| roofline | layout_fast |" in table and "| tile_spill | tile_xla |" in table
    assert "ensemble top-1 / 5 / 10" in table
    held_out = table.split("Tile, held out")[1]
    assert f"{script.SIZES['quick']['tile']['test']} more labelled kernels" in held_out
    assert "| tile_spill | tile_xla |" in held_out
    assert "| roofline | layout_fast |" in table.split("Layout, held out")[1]
    row = next(line for line in table.splitlines() if line.startswith("| tile_spill | tile_xla"))
    ensemble = " / ".join(f"{tile['ensemble'][k]:.4f}" for k in script.ERRORS)
    assert f"| {ensemble} |" in row
    # Every run records the call that trained it: this one, so the header names no other.
    call = {"command": results["meta"]["command"], "started": results["meta"]["started"]}
    assert row_of(results)["trained_by"] == [call, call]
    assert "Read back from" not in table
    capsys.readouterr()
    # A second call reads the finished runs instead of training them again, and says which
    # call trained them.
    assert script.main(args) == 0
    assert "$ train.py" not in capsys.readouterr().out
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["layout"] == results["layout"]
    assert again["meta"]["started"] != call["started"]
    assert f"Read back from `--work`, trained by `{call['command']}`, {call['started']}: " in (
        out.read_text()
    )
    # --update with one recipe rewrites its rows and keeps the other's, saying from where.
    first = results["meta"]["command"]
    assert script.main([*args[:-6], "--recipes", "tile_xla", "--seeds", "0", "1", "--update"]) == 0
    updated = json.loads(out.with_suffix(".json").read_text())
    kept = updated["layout"]["roofline"]["recipes"]["layout_fast"]
    assert kept["tau"] == results["layout"]["roofline"]["recipes"]["layout_fast"]["tau"]
    assert (
        kept["measured"]["command"] == first
        and "measured" not in updated["tile"]["tile_spill"]["recipes"]["tile_xla"]
    )
    assert f"Kept from `{first}`" in out.read_text()


def row_of(results):
    return results["layout"]["roofline"]["recipes"]["layout_fast"]


def test_the_header_names_the_calls_that_trained_the_runs_read_back(script):
    """Runs trained by the measuring call go unnamed; others are grouped by their call;
    runs from before the field are said to be so; a kept row is compared with the call
    that measured it, not with this one."""
    now = {"command": "python scripts/quality.py --update", "started": "2026-12-03 07:00:00"}
    earlier = {"command": "python scripts/quality.py", "started": "2026-12-02 22:33:10"}
    results = {
        "meta": {**now, "seeds": [0, 1, 2]},
        "layout": {
            "roofline": {
                "recipes": {
                    "layout_fast": {"trained_by": [now, earlier, None]},
                    "kept": {"trained_by": [earlier] * 3, "measured": earlier},
                    "old": {},  # measured before runs recorded their call
                }
            }
        },
        "tile": {"tile_spill": {"recipes": {"tile_xla": {"trained_by": [earlier] * 3}}}},
        "real": {"real": {"trained_by": [now] * 3, "swapped": {"trained_by": [earlier] * 3}}},
    }
    assert script.read_back_lines(results) == [
        f"\nRead back from `--work`, trained by `{earlier['command']}`, {earlier['started']}: "
        "roofline layout_fast (seed 1), tile_spill tile_xla (seeds 0, 1, 2), "
        "real real swapped (seeds 0, 1, 2).",
        "\nRead back from `--work`, trained before runs recorded their call: "
        "roofline layout_fast (seed 2).",
    ]


def test_quick_writes_the_committed_table_only_when_out_names_it(script, tmp_path):
    """A smoke table of 4 steps once replaced benchmarks/quality.md by default."""
    work = tmp_path / "work"
    assert script.parse(["--quick", "--work", str(work)])[0].out == work / "quality.md"
    assert script.parse([])[0].out == script.OUT == script.REPO / "benchmarks/quality.md"
    out = ["--out", str(script.OUT)]
    assert script.parse(["--quick", "--work", str(work), *out])[0].out == script.OUT


def test_help_says_each_option_s_default(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "(default: benchmarks/quality.md, the committed table; with --quick, quality.md in --work)"
        in text
    )
    assert "(default: 0 1 2)" in text and "(default: /tmp/tpulearn-quality)" in text
    assert "(default: every one: neighbour_vote, " in text
    assert "(default: every one: tile_spill)" in text


def test_unknown_recipe_or_family_is_refused(script, capsys):
    for bad in (["--recipes", "fastest"], ["--families", "nope"]):
        with pytest.raises(SystemExit):
            script.main(bad)
        assert "unknown" in capsys.readouterr().err


def _finished_run(script, run, overrides, config=None):
    """A run folder as train() leaves it: its row and a last checkpoint holding the config
    (by default the one the overrides compose now)."""
    command = ["train.py", *overrides, "trainer.progress=false"]
    command += [f"hydra.run.dir={run}", "trainer.overwrite=true"]
    row = {"command": command, "best": {"kendall_tau": 0.5}}
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "quality.json").write_text(json.dumps(row))
    config = config or script.composed([*overrides, *script.PROCESS])
    torch.save({"config": config, "step": 4}, run / "checkpoints" / "last.pt")
    return row


class Launched(Exception):
    pass


def _no_training(script, monkeypatch):
    def popen(*args, **kwargs):
        raise Launched

    monkeypatch.setattr(script.subprocess, "Popen", popen)


def test_a_finished_run_is_read_back_unless_retrain(script, tmp_path, monkeypatch):
    run, overrides = tmp_path / "run", ["experiment=layout_fast", "trainer.seed=0"]
    row = _finished_run(script, run, overrides)
    _no_training(script, monkeypatch)
    assert script.train(run, overrides, 1, print) == row
    with pytest.raises(Launched):
        script.train(run, overrides, 1, print, retrain=True)
    with pytest.raises(Launched):  # another command: not the finished run's
        script.train(run, [*overrides, "model.layout_tiling=true"], 1, print)

    # The same command on other data (another --data-seed or --train-graphs written into
    # the same --work) is not the finished run either.
    data = {"family": "roofline", "seed": 2028, "train": 12}
    (run / "quality.json").write_text(json.dumps({**row, "data": data}))
    assert script.train(run, overrides, 1, print, data=data)["data"] == data
    with pytest.raises(Launched):
        script.train(run, overrides, 1, print, data={**data, "train": 48})
    with pytest.raises(Launched):
        script.train(run, overrides, 1, print)


def test_a_finished_run_whose_yaml_changed_since_trains_again(script, tmp_path, monkeypatch):
    """The same command composing another config (an experiment's YAML edited since the
    run) is not the finished run: it trains again, and the log says which keys changed."""
    run, overrides = tmp_path / "run", ["experiment=layout_fast", "trainer.seed=0"]
    config = script.composed([*overrides, *script.PROCESS])
    assert config["loss"]["terms"][1]["weight"] == 30.0  # the recipe's hinge weight
    _finished_run(script, run, overrides, config)
    _no_training(script, monkeypatch)
    log = []
    assert script.train(run, overrides, 1, log.append)["best"] == {"kendall_tau": 0.5}
    assert log == []
    # As if the run had trained before the YAML set the hinge's weight to 30.
    config["loss"]["terms"][1]["weight"] = 10.0
    _finished_run(script, run, overrides, config)
    with pytest.raises(Launched):
        script.train(run, overrides, 1, log.append)
    assert "run trains again" in log[0] and log[1].startswith("  $ train.py")
    assert "loss.terms: checkpoint" in log[0] and "'weight': 10.0" in log[0]
    # Keys that do not change what a run trains are not compared.
    config["loss"]["terms"][1]["weight"] = 30.0
    config["trainer"]["progress"] = True
    _finished_run(script, run, overrides, config)
    assert script.train(run, overrides, 1, log.append)["best"] == {"kendall_tau": 0.5}
    # A finished run without its checkpoint cannot be checked: it trains again.
    (run / "checkpoints" / "last.pt").unlink()
    with pytest.raises(Launched):
        script.train(run, overrides, 1, log.append)
    assert "checkpoint cannot be read" in log[-2] and "does not exist" in log[-2]


def test_the_config_key_follows_what_a_recipe_trains(script, monkeypatch):
    recipe = script.LAYOUT_RECIPES["layout_fast"]
    key = script.config_key("layout", recipe, [])
    assert len(key) == 16 and key == script.config_key("layout", recipe, [])
    # Another loss, or --quick's overrides: another config, another key.
    assert script.config_key("layout", [*recipe, "loss=listmle"], []) != key
    assert script.config_key("layout", recipe, script.QUICK_OVERRIDES) != key
    # Keys that do not change what a run trains leave it alone.
    assert script.config_key("layout", [*recipe, "data.eval_chunk=8"], []) == key
    # An environment variable a config reads does not enter it (unresolved).
    monkeypatch.setenv("TPUGRAPHS_ROOT", "/somewhere/else")
    assert script.config_key("layout", recipe, []) == key
    with pytest.raises(ValueError, match="do not compose"):
        script.config_key("layout", [*recipe, "model.no_such_key=1"], [])


def test_a_model_option_added_since_keeps_the_key_at_its_added_value(script, monkeypatch):
    # Rows measured before model.attn_gate existed keep their key: at "state" it trains
    # what those configs did. Another value is another config.
    recipe = ["model.readout=attn"]
    key = script.config_key("layout", recipe, [])
    assert script.config_key("layout", [*recipe, "model.attn_gate=state"], []) == key
    assert script.config_key("layout", [*recipe, "model.attn_gate=config_free"], []) != key
    compose_now = script.composed

    def composed_before(overrides, resolve):
        config = compose_now(overrides, resolve=resolve)
        assert config["model"].pop("attn_gate") == "state"
        return config

    monkeypatch.setattr(script, "composed", composed_before)
    assert script.config_key("layout", recipe, []) == key
    # In a segment model's wrapped model too; elsewhere the key is not an added option.
    assert script.at_added_default("model.model.attn_gate", "state")
    assert not script.at_added_default("data.attn_gate", "state")
    assert not script.at_added_default("model.attn_gate", "config_free")


def test_a_trainer_option_added_since_keeps_the_key_at_its_added_value(script, monkeypatch):
    # Rows measured before trainer.union_prob existed keep their key: at 0 it trains what
    # those configs did.
    recipe = ["model.readout=attn"]
    key = script.config_key("layout", recipe, [])
    assert script.config_key("layout", [*recipe, "trainer.union_prob=0.0"], []) == key
    assert script.config_key("layout", [*recipe, "trainer.union_prob=0.25"], []) != key
    _compose_without_trainer_key(script, monkeypatch, "union_prob")
    assert script.config_key("layout", [*recipe, "trainer.union_prob=0.0"], []) == key


def _compose_without_trainer_key(script, monkeypatch, option: str) -> None:
    """From now on the script composes configs as before ``trainer.<option>`` existed."""
    compose_now = script.composed

    def composed_before(overrides, resolve):
        config = compose_now(overrides, resolve=resolve)
        config["trainer"].pop(option)
        return config

    monkeypatch.setattr(script, "composed", composed_before)


def test_an_epoch_floor_that_does_not_bind_keeps_the_key(script, monkeypatch):
    # trainer.min_epoch_graphs came after rows of layout_fast were measured on 12 and 16
    # graphs: a floor of 8 trains what they trained there, not on one graph (the real
    # pairs) or on 4.
    recipe = ["model.readout=attn"]
    floor = [*recipe, "trainer.min_epoch_graphs=8"]
    key = script.config_key("layout", recipe, [], 12)
    assert script.config_key("layout", floor, [], 12) == key
    assert script.config_key("layout", floor, [], 8) == key
    assert script.config_key("layout", floor, [], 4) != key
    assert script.config_key("real", floor, [], 1) != script.config_key("real", recipe, [], 1)
    # Not where a run trains on fewer graphs than the table's (folds) or shards them.
    for more in ("data.folds=3", "trainer.shards=2"):
        with_more = script.config_key("layout", [*recipe, more], [], 12)
        assert script.config_key("layout", [*floor, more], [], 12) != with_more
    _compose_without_trainer_key(script, monkeypatch, "min_epoch_graphs")
    assert script.config_key("layout", recipe, [], 12) == key


def _table(script, seeds=(0, 1), layout=None, real=None, command="python scripts/quality.py"):
    meta = {"seeds": list(seeds), "sizes": script.SIZES["quick"], "jobs": 2}
    return {
        "layout": layout or {},
        "tile": {},
        "real": real or {},
        "meta": {**meta, "command": command, "started": "2026-01-01 00:00"},
    }


def _row(tau, overrides=None):
    row = {
        "tau": {"mean": tau, "std": 0.0, "values": [tau, tau]},
        "best_member_tau": tau,
        "ensemble_tau": tau,
        "wall_s": {"mean": 1.0, "std": 0.0, "values": [1.0, 1.0]},
        "rss_mb": 100.0,
        "steps": [4, 4],
    }
    if overrides is not None:
        row["overrides"] = overrides
    return row


def test_update_keeps_the_rows_not_run_that_still_measure_their_recipe(script, tmp_path):
    recipes = script.LAYOUT_RECIPES
    old = _table(
        script,
        layout={
            "roofline": {
                "oracle": {"kendall_tau": 0.7},
                "recipes": {
                    "gst_small": _row(0.1, recipes["gst_small"]),
                    "layout_fast": _row(0.2, recipes["layout_fast"]),
                    "defaults": _row(0.3, ["model=mlp"]),  # since changed
                    "gone": _row(0.4, []),  # no longer a recipe
                },
            },
            "edge_conversion": {"oracle": {"kendall_tau": 0.8}, "recipes": {"defaults": _row(0.5)}},
        },
        real={"real": _row(0.06, [])},
        command="python scripts/quality.py --jobs 2",
    )
    new_row = _row(0.25, recipes["layout_fast"])
    results = _table(
        script,
        layout={"roofline": {"oracle": {"kendall_tau": 0.7}, "recipes": {"layout_fast": new_row}}},
        command="python scripts/quality.py --update",
    )
    log = []
    script.keep_previous(old, results, log.append)
    roofline = results["layout"]["roofline"]["recipes"]
    # Run now: this call's row; kept: gst_small; dropped (and named): changed and gone.
    assert list(roofline) == ["layout_fast", "gst_small"]
    assert roofline["layout_fast"] is new_row and "measured" not in new_row
    assert roofline["gst_small"]["tau"]["mean"] == 0.1
    assert roofline["gst_small"]["measured"]["command"] == "python scripts/quality.py --jobs 2"
    assert any("roofline defaults" in line and "overrides changed" in line for line in log)
    assert any("roofline gone" in line and "no such recipe" in line for line in log)
    # A family this call did not run comes with its oracle, in the script's family order.
    assert list(results["layout"]) == [f for f in script.LAYOUT_FAMILIES if f in results["layout"]]
    assert results["layout"]["edge_conversion"]["oracle"] == {"kendall_tau": 0.8}
    assert any("kept by name: layout edge_conversion defaults" in line for line in log)
    assert results["real"]["real"]["tau"]["mean"] == 0.06
    # The table says which call measured the kept rows.
    header = "\n".join(script.kept_lines(results))
    assert "Kept from `python scripts/quality.py --jobs 2`, 2026-01-01 00:00" in header
    assert "roofline gst_small" in header and "real real" in header
    assert "layout_fast" not in header


def test_update_drops_a_row_whose_recipe_composes_another_config_now(script):
    """Same overrides, another composed config (a YAML edited since the row was measured):
    the row goes, named; rows from before config keys are kept by their overrides."""
    recipes = script.LAYOUT_RECIPES
    keyed = {
        **_row(0.1, recipes["gst_small"]),
        "config": script.config_key("layout", recipes["gst_small"], []),
    }
    stale = {**_row(0.2, recipes["layout_fast"]), "config": "0" * 16}
    old = _table(
        script,
        layout={
            "roofline": {
                "oracle": {"kendall_tau": 0.7},
                "recipes": {"gst_small": keyed, "layout_fast": stale, "defaults": _row(0.3, [])},
            }
        },
        real={"real_zscore": {**_row(0.09, ["loss=zscore"]), "config": "1" * 16}},
    )
    results = _table(script)
    log = []
    script.keep_previous(old, results, log.append)
    assert list(results["layout"]["roofline"]["recipes"]) == ["defaults", "gst_small"]
    assert results["real"] == {}
    for name in ("layout roofline layout_fast", "real real_zscore"):
        assert any(name in line and "compose changed" in line for line in log)
    assert any("kept by overrides: layout roofline defaults" in line for line in log)
    # The key includes the overrides every run of the call adds (--quick's).
    results = _table(script)
    script.keep_previous(old, results, log.append, extra=script.QUICK_OVERRIDES)
    assert list(results["layout"]["roofline"]["recipes"]) == ["defaults"]


def test_update_keeps_a_row_whose_recipe_spells_the_same_config_otherwise(script):
    # A recipe rewritten to compose what its row was measured with (here: an added model
    # option at the value the row trained with) keeps the row, which then records the
    # recipe's overrides now; a row without a config key needs the same overrides.
    spelled = ["model.readout=attn", "model.attn_gate=state", "loss=listmle"]
    recipes = {**script.RECIPES, "layout": {"keyed": spelled, "unkeyed": spelled}}
    keyed = {
        **_row(0.1, ["model.readout=attn", "loss=listmle"]),
        "config": script.config_key("layout", spelled, []),
    }
    unkeyed = _row(0.2, ["model.readout=attn", "loss=listmle"])
    old = _table(
        script,
        layout={
            "roofline": {
                "oracle": {"kendall_tau": 0.7},
                "recipes": {"keyed": keyed, "unkeyed": unkeyed},
            }
        },
    )
    results = _table(script)
    log = []
    script.keep_previous(old, results, log.append, recipes)
    kept = results["layout"]["roofline"]["recipes"]
    assert list(kept) == ["keyed"]
    assert kept["keyed"]["overrides"] == spelled and kept["keyed"]["tau"]["mean"] == 0.1
    assert any("kept: layout roofline keyed" in line for line in log)
    assert any("layout roofline unkeyed" in line and "overrides changed" in line for line in log)


def test_update_refuses_a_table_measured_another_way_before_training(script, tmp_path):
    path = tmp_path / "quality.json"
    measured_as = {"seeds": [0, 1], "sizes": script.SIZES["quick"], "jobs": 2}
    path.write_text(json.dumps(_table(script)))
    assert script.read_previous(path, measured_as)["meta"]["seeds"] == [0, 1]
    for old, key in ((_table(script, seeds=(0, 1, 2)), "seeds"), ({"layout": {}}, "not a table")):
        path.write_text(json.dumps(old))
        with pytest.raises(SystemExit, match=key):
            script.read_previous(path, measured_as)
    with pytest.raises(SystemExit, match="does not exist"):
        script.read_previous(tmp_path / "none.json", measured_as)
    # Tables from before --data-seed (no data_seed in their meta) were on the default data.
    path.write_text(json.dumps(_table(script)))
    default = {**measured_as, "data_seed": script.DATA_SEED}
    assert script.read_previous(path, default)["meta"]["seeds"] == [0, 1]
    with pytest.raises(SystemExit, match="data_seed 2026, this call uses 3026"):
        script.read_previous(path, {**measured_as, "data_seed": 3026})
    other = _table(script)
    other["meta"]["data_seed"] = 3026
    path.write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="data_seed 3026, this call uses 2026"):
        script.read_previous(path, default)
    # Through main: refused before any data is written or run trained.
    path.write_text(json.dumps(_table(script, seeds=(0, 1, 2))))
    work = tmp_path / "work"
    args = ["--quick", "--work", str(work), "--out", str(tmp_path / "quality.md")]
    with pytest.raises(SystemExit, match="seeds"):
        script.main(
            [*args, "--recipes", "tile_xla", "--seeds", "0", "1", "--jobs", "2", "--update"]
        )
    assert not work.exists()


def test_data_seed_writes_other_collections_of_the_same_shape(script, tmp_path):
    size = script.SIZES["quick"]["layout"]
    roots = {
        seed: script.write_data(tmp_path / str(seed), "layout", "roofline", 1, size, seed)
        for seed in (script.DATA_SEED, 3026)
    }
    marks = {seed: json.loads((root / "written.json").read_text()) for seed, root in roots.items()}
    assert (marks[script.DATA_SEED]["seed"], marks[3026]["seed"]) == (script.DATA_SEED + 1, 3027)
    files = {
        seed: sorted((root / "npz/layout/xla/random/train").glob("*.npz"))
        for seed, root in roots.items()
    }
    assert [p.name for p in files[3026]] == [p.name for p in files[script.DATA_SEED]]
    assert len(files[3026]) == size["train"]
    assert files[3026][0].read_bytes() != files[script.DATA_SEED][0].read_bytes()


def test_more_train_graphs_keep_the_first_ones_and_the_valid_ones(script, tmp_path):
    # What makes tables of several --train-graphs a learning curve.
    size = script.SIZES["quick"]["layout"]
    more = {**size, "train": size["train"] + 2}
    roots = [
        script.write_data(tmp_path / name, "layout", "neighbour_vote", 0, s)
        for name, s in (("few", size), ("more", more))
    ]
    files = {
        (i, split): sorted((root / "npz/layout/xla/random" / split).glob("*.npz"))
        for i, root in enumerate(roots)
        for split in ("train", "valid")
    }
    assert [len(files[i, "train"]) for i in (0, 1)] == [size["train"], size["train"] + 2]
    for split in ("train", "valid"):
        first = files[1, split][: len(files[0, split])]
        for few, more_file in zip(files[0, split], first, strict=True):
            assert few.name == more_file.name
            assert few.read_bytes() == more_file.read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train-graphs", "0"], "--train-graphs must be >= 1, got 0"),
        # Once a ZeroDivisionError after the data was written.
        (["--jobs", "0"], "--jobs must be >= 1, got 0"),
        # Once trained seed 0's folder twice at once and counted it as two seeds.
        (["--seeds", "0", "1", "0"], "--seeds must be distinct, got [0, 1, 0]"),
    ],
)
def test_bad_counts_are_refused_before_any_data(script, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit):
        script.main(["--quick", *args, "--work", str(tmp_path)])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_heldout_shape_writes_the_held_out_collections_shape(script, tmp_path, monkeypatch):
    trained = _stub_training(script, monkeypatch, lambda overrides: 0.2)
    scored = []

    def ensemble_metrics(root, collection, runs, split="valid"):
        scored.append((root.name, [r.name for r in runs], split))
        return {"kendall_tau": 0.25}

    monkeypatch.setattr(script, "ensemble_metrics", ensemble_metrics)
    # Two test graphs of the shape instead of 16 keep the data small.
    monkeypatch.setitem(script.SIZES["heldout"]["layout"], "test", 2)
    out = tmp_path / "quality.md"
    common = ["--work", str(tmp_path / "work"), "--out", str(out), "--heldout-shape"]
    # One train graph (--train-graphs still applies) keeps the data small; one seed, no ensemble.
    args = [*common, "--train-graphs", "1", "--families", "roofline", "--seeds", "0"]
    assert script.main([*args, "--recipes", "layout_fast"]) == 0
    assert list(trained) == ["roofline-layout_fast-0"]
    _, data = trained["roofline-layout_fast-0"]
    heldout = script.SIZES["heldout"]["layout"]
    assert data["valid"] == heldout["valid"] == 4 and data["train"] == 1
    assert data["nodes"] == [1400, 1600] and data["configs"] == [300, 300]
    valid = sorted((tmp_path / "work/data/layout-roofline/npz/layout/xla/random/valid").iterdir())
    assert len(valid) == 4
    with np.load(valid[0]) as npz:
        assert 1400 <= npz["node_feat"].shape[0] <= 1600
        assert npz["config_runtime"].shape == (300,)
    table = out.read_text()
    assert "1 train / 4 valid graphs of 1400-1600 nodes, 300 configs" in table
    # The test graphs: of the same shape, in a root of their own that no run reads.
    assert not list((tmp_path / "work/data/layout-roofline").rglob("*test*.npz"))
    test = sorted(
        (tmp_path / "work/data/layout-roofline-heldout/npz/layout/xla/random/test").iterdir()
    )
    assert len(test) == 2
    with np.load(test[0]) as npz:
        assert 1400 <= npz["node_feat"].shape[0] <= 1600
        assert npz["config_runtime"].shape == (300,) and npz["config_runtime"].min() > 0
    # The run's checkpoint is scored there (one seed: no ensemble), beside the oracle.
    assert scored == [("layout-roofline-heldout", ["roofline-layout_fast-0"], "test")]
    results = json.loads(out.with_suffix(".json").read_text())
    row = results["layout"]["roofline"]["recipes"]["layout_fast"]
    assert row["test"]["kendall_tau"]["values"] == [0.25] and "test_ensemble" not in row
    oracle = results["layout"]["roofline"]["test_oracle"]["kendall_tau"]
    held_out = table.split("Layout, held out")[1]
    assert "on 2 more labelled graphs of each collection" in held_out
    assert f"| roofline | layout_fast | 0.250 +- 0.000 | {100 * 0.25 / oracle:.0f}% | 0.250 |" in (
        held_out
    )


def test_the_held_out_graphs_are_the_collections_test_split_apart(script, tmp_path):
    size = script.SIZES["quick"]["layout"]
    root = script.write_data(tmp_path, "layout", "edge_conversion", 1, size)
    held_out = script.write_heldout(tmp_path, "edge_conversion", 1, size)
    # The run's root: train and valid alone, and a marker without the test split, so runs
    # trained before the table had test graphs are read back on the same data.
    assert not list(root.rglob("*test*.npz"))
    assert "test" not in json.loads((root / "written.json").read_text())
    # Byte for byte the test split the writer gives the collection itself, labelled.
    whole = tmp_path / "whole"
    counts = {split: size[split] for split in ("train", "valid", "test")}
    script.write_layout_collection(
        whole,
        family="edge_conversion",
        seed=script.DATA_SEED + 1,
        num_graphs=counts,
        nodes=size["nodes"],
        configs=size["configs"],
        labelled_test=True,
    )
    split = "npz/layout/xla/random/test"
    mine = sorted((held_out / split).iterdir())
    assert [p.name for p in mine] == [p.name for p in sorted((whole / split).iterdir())]
    assert len(mine) == size["test"]
    for path in mine:
        assert path.read_bytes() == (whole / split / path.name).read_bytes()
    assert script.write_heldout(tmp_path, "edge_conversion", 1, {**size, "test": 0}) is None


def test_heldout_shape_and_quick_together_are_refused(script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        script.main(["--quick", "--heldout-shape", "--work", str(tmp_path)])
    assert "--quick and --heldout-shape choose two sizes" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_update_drops_the_rows_of_a_task_measured_on_other_sizes(script):
    recipes = script.TILE_RECIPES
    old = _table(script, real={"real": _row(0.06, [])})
    old["tile"] = {
        "tile_spill": {
            "oracle": {"top5_error": 0.001},
            "recipes": {"tile_xla": _row(0.1, recipes["tile_xla"])},
        }
    }
    old["layout"] = {
        "roofline": {
            "oracle": {"kendall_tau": 0.7},
            "recipes": {"defaults": _row(0.3, script.LAYOUT_RECIPES["defaults"])},
        }
    }
    results = _table(script)
    results["meta"]["sizes"] = {**script.SIZES["quick"], "tile": {"train": 1}}
    log = []
    script.keep_previous(old, results, log.append)
    # Other tile sizes: the tile row goes (and is named); layout and real rows stay.
    assert results["tile"] == {}
    assert any("tile tile_spill tile_xla" in line and "other tile sizes" in line for line in log)
    assert list(results["layout"]["roofline"]["recipes"]) == ["defaults"]
    assert list(results["real"]) == ["real"]


def test_update_keeps_a_row_measured_on_other_test_graphs_without_its_numbers_there(script):
    quick = script.SIZES["quick"]
    old = _table(script)
    old["meta"]["sizes"] = {**quick, "layout": {**quick["layout"], "test": 5}}
    row = _row(0.3, script.LAYOUT_RECIPES["defaults"])
    row["test"] = {"kendall_tau": {"mean": 0.2, "std": 0.0, "values": [0.2, 0.2]}}
    row["test_ensemble"] = {"kendall_tau": 0.21}
    oracles = {"oracle": {"kendall_tau": 0.7}, "test_oracle": {"kendall_tau": 0.69}}
    old["layout"] = {"roofline": {**oracles, "recipes": {"defaults": row}}}
    results = _table(script)
    log = []
    script.keep_previous(old, results, log.append)
    # The runs read train and valid alone: their tau stays, the other test graphs' goes.
    kept = results["layout"]["roofline"]
    assert kept["recipes"]["defaults"]["tau"]["mean"] == 0.3
    assert script.HELD_OUT.isdisjoint(kept["recipes"]["defaults"]) and "test_oracle" not in kept
    assert any("kept without its test-split numbers: layout roofline defaults" in x for x in log)
    assert script.layout_held_out_lines(results) == []


def test_update_keeps_a_row_from_before_the_layout_test_split(script):
    quick = script.SIZES["quick"]
    old = _table(script)
    old["meta"]["sizes"] = {
        **quick,
        "layout": {k: v for k, v in quick["layout"].items() if k != "test"},
    }
    old["layout"] = {
        "roofline": {
            "oracle": {"kendall_tau": 0.7},
            "recipes": {"defaults": _row(0.3, script.LAYOUT_RECIPES["defaults"])},
        }
    }
    results = _table(script)
    tested = _row(0.4, script.LAYOUT_RECIPES["layout_fast"])
    tested["test"] = {"kendall_tau": {"mean": 0.35, "std": 0.01, "values": [0.34, 0.36]}}
    tested["test_ensemble"] = {"kendall_tau": 0.38}
    results["layout"] = {
        "roofline": {
            "oracle": {"kendall_tau": 0.7},
            "test_oracle": {"kendall_tau": 0.7},
            "recipes": {"layout_fast": tested},
        }
    }
    script.keep_previous(old, results, [].append)
    assert list(results["layout"]["roofline"]["recipes"]) == ["defaults", "layout_fast"]
    held_out = "\n".join(script.layout_held_out_lines(results))
    # Only the row measured there, its ensemble's gain over the seed best there.
    assert "| roofline | layout_fast | 0.350 +- 0.010 | 50% | 0.360 | 0.380 | +0.020 | 0.700 |" in (
        held_out
    )
    assert "| roofline | defaults |" not in held_out
    assert "Rows without numbers here" in held_out and "roofline defaults" in held_out


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("hinge", "expected NAME=OVERRIDES"),
        ("two words=loss=hinge", "expected NAME=OVERRIDES"),
        ("layout_fast=loss=hinge", "is a built-in recipe"),
        ("mine=data.root=/elsewhere", "sets data.root, which the script sets"),
        ("mine=trainer.seed=7", "sets trainer.seed"),
        ("mine=hydra.run.dir=/x", "sets hydra.run.dir"),
        ("mine=+data=other", "sets data,"),
        ("mine='loss=hinge", "do not split"),
    ],
)
def test_a_bad_recipe_definition_is_refused_naming_it(script, capsys, definition, message):
    with pytest.raises(SystemExit):
        script.main(["--recipe", definition])
    err = capsys.readouterr().err
    assert f"--recipe {definition!r}" in err and message in err


def test_a_recipe_defined_twice_or_a_name_not_defined_is_refused(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--recipe", "a=loss=hinge", "--recipe", "a=loss=zscore"])
    assert "'a' is defined twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main(["--recipes", "mine"])
    assert "define one with --recipe NAME=OVERRIDES" in capsys.readouterr().err


def _stub_training(script, monkeypatch, tau_of):
    """Replace quality.py's train(): each run records its overrides and data in the dict
    returned (by run folder name) and reports tau_of(overrides), trained by this call."""
    trained = {}

    def train(run_dir, overrides, threads, log, retrain=False, data=None, call=None):
        trained[run_dir.name] = (overrides, data)
        row = {"best": {"kendall_tau": tau_of(overrides)}, "wall_s": 1.0, "rss_mb": 100.0}
        return {**row, "last_step": 4, "trained_by": call}

    monkeypatch.setattr(script, "train", train)
    return trained


def test_a_defined_recipe_trains_on_the_table_and_records_its_overrides(
    script, tmp_path, monkeypatch
):
    """The runs are stubbed (their training is the slow test's): what a defined recipe
    changes is which overrides train, and what its rows and the table record."""
    trained = _stub_training(
        script, monkeypatch, lambda overrides: 0.3 if "loss=hinge" in overrides else 0.2
    )
    monkeypatch.setattr(script, "ensemble_metrics", lambda *a, **k: {"kendall_tau": 0.35})
    out = tmp_path / "quality.md"
    common = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]
    common += ["--families", "roofline", "--seeds", "0", "1"]
    define = ["--recipe", "hinge=experiment=layout_fast loss=hinge"]
    assert script.main([*common, "--recipes", "layout_fast", "hinge", *define]) == 0
    runs = {name: overrides for name, (overrides, _) in trained.items()}
    assert sorted(runs) == [f"roofline-{r}-{s}" for r in ("hinge", "layout_fast") for s in (0, 1)]
    assert runs["roofline-hinge-1"][:2] == ["experiment=layout_fast", "loss=hinge"]
    assert "trainer.seed=1" in runs["roofline-hinge-1"]
    assert "loss=hinge" not in runs["roofline-layout_fast-0"]
    results = json.loads(out.with_suffix(".json").read_text())
    row = results["layout"]["roofline"]["recipes"]["hinge"]
    assert row["overrides"] == ["experiment=layout_fast", "loss=hinge"]
    assert row["tau"]["values"] == [0.3, 0.3]
    table = out.read_text()
    assert "| roofline | hinge | 0.300 +- 0.000 |" in table
    assert "- `hinge`: `experiment=layout_fast loss=hinge`" in table
    # --update keeps the defined recipe's rows only while the call defines it alike.
    update = [*common, "--recipes", "layout_fast", "--update"]
    assert script.main([*update, *define]) == 0
    assert (
        "hinge" in json.loads(out.with_suffix(".json").read_text())["layout"]["roofline"]["recipes"]
    )
    assert script.main(update) == 0
    assert (
        "hinge"
        not in json.loads(out.with_suffix(".json").read_text())["layout"]["roofline"]["recipes"]
    )


def test_the_swapped_real_pair_is_the_sample_other_way_round(script, tmp_path):
    root = script.write_swapped(tmp_path)
    folder = root / "npz" / "layout" / "xla" / "default"
    sample = script.sample_root() / "npz" / "layout" / "xla" / "default"
    assert sorted(p.name for p in (folder / "train").iterdir()) == ["unet_3d.4x4.bf16.npz"]
    assert sorted(p.name for p in (folder / "valid").iterdir()) == ["unet3d.npz"]
    assert (folder / "train" / "unet_3d.4x4.bf16.npz").read_bytes() == (
        sample / "valid" / "unet_3d.4x4.bf16.npz"
    ).read_bytes()
    assert (folder / "valid" / "unet3d.npz").read_bytes() == (
        sample / "train" / "unet3d.npz"
    ).read_bytes()
    assert script.write_swapped(tmp_path) == root  # written once


def test_a_real_recipe_also_trains_on_the_swapped_pair(script, tmp_path, monkeypatch):
    """Runs stubbed: each real recipe and seed trains on the bundled pair and on the pair
    swapped (its root as data.root, its own run folder), and the row records both."""
    trained = _stub_training(
        script,
        monkeypatch,
        lambda overrides: 0.01 if any(o.startswith("data.root=") for o in overrides) else 0.07,
    )
    out = tmp_path / "quality.md"
    args = ["--quick", "--work", str(tmp_path / "work"), "--out", str(out)]
    assert script.main([*args, "--recipes", "real_zscore", "--seeds", "0", "1"]) == 0
    assert sorted(trained) == [
        "real_zscore-0",
        "real_zscore-1",
        "real_zscore-swapped-0",
        "real_zscore-swapped-1",
    ]
    overrides, data = trained["real_zscore-swapped-1"]
    root = tmp_path / "work" / "data" / "real-swapped"
    assert overrides[0] == "loss=zscore" and f"data.root={root}" in overrides
    assert "trainer.seed=1" in overrides and data == {"swapped": script.REAL_SWAPPED}
    assert not any(o.startswith("data.root=") for o in trained["real_zscore-0"][0])
    row = json.loads(out.with_suffix(".json").read_text())["real"]["real_zscore"]
    assert row["tau"]["values"] == [0.07, 0.07]
    assert row["swapped"]["tau"]["values"] == [0.01, 0.01]
    assert "| real_zscore | 0.070 +- 0.000 | 0.070, 0.070 | 0.010 +- 0.000 | 0.010, 0.010 |" in (
        out.read_text()
    )


def test_ctrl_c_is_one_line_saying_how_to_continue(script, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Once a traceback out of the thread pool's wait (the runs themselves save and stop).
    monkeypatch.setattr(script, "run_all", interrupted)
    assert script.main(["--quick", "--work", str(tmp_path), "--recipes", "real"]) == 130
    err = capsys.readouterr().err
    assert err == (
        "interrupted; the same command continues: finished runs are read back, the others "
        "train again\n"
    )


def test_peak_memory_is_read_from_the_run_output(script, tmp_path):
    output = "trained 2 of 2 steps\npeak memory: 1,234 MB resident\ncheckpoints: ...\n"
    assert script.peak_memory(output, tmp_path / "quality.log") == 1234.0
    with pytest.raises(RuntimeError, match=r"no 'peak memory:' line .*quality\.log"):
        script.peak_memory("trained 2 of 2 steps\n", tmp_path / "quality.log")


def test_search_default_writes_trains_and_scores_the_default_collections(
    script, tmp_path, monkeypatch
):
    """Runs stubbed: --search default writes layout:xla:default collections (the random
    ones' graphs under other configs) into roots of their own, trains on them with the
    collection named, scores them as that collection, and records the search."""
    trained = _stub_training(script, monkeypatch, lambda overrides: 0.2)
    scored = []

    def ensemble_metrics(root, collection, runs, split="valid"):
        scored.append((root.name, collection, split))
        return {"kendall_tau": 0.25}

    monkeypatch.setattr(script, "ensemble_metrics", ensemble_metrics)
    work, out = tmp_path / "work", tmp_path / "quality.md"
    common = ["--quick", "--work", str(work), "--out", str(out), "--families", "roofline"]
    common += ["--recipes", "layout_fast", "--seeds", "0", "1"]
    assert script.main([*common, "--search", "default"]) == 0
    root, held_out = (
        work / "data" / "layout-roofline-default",
        work / "data" / "layout-roofline-default-heldout",
    )
    assert sorted(trained) == ["roofline-default-layout_fast-0", "roofline-default-layout_fast-1"]
    overrides, data = trained["roofline-default-layout_fast-0"]
    assert f"data.root={root}" in overrides
    assert "data.collection=layout:xla:default" in overrides
    assert data["search"] == "default"
    size = script.SIZES["quick"]["layout"]
    for folder, split, count in ((root, "train", size["train"]), (held_out, "test", size["test"])):
        files = sorted((folder / "npz" / "layout" / "xla" / "default" / split).glob("*.npz"))
        assert len(files) == count
    assert not (root / "npz" / "layout" / "xla" / "random").exists()
    assert {c for _, c, _ in scored} == {"layout:xla:default"}
    assert {(r, s) for r, _, s in scored} == {(root.name, "valid"), (held_out.name, "test")}
    # The same graphs as the random collection's, under other configs.
    random_root = script.write_data(tmp_path / "r", "layout", "roofline", 2, size)
    name = "synthetic_xla_train_000.npz"
    mine = np.load(root / "npz/layout/xla/default/train" / name)
    theirs = np.load(random_root / "npz/layout/xla/random/train" / name)
    assert np.array_equal(mine["node_feat"], theirs["node_feat"])
    assert not np.array_equal(mine["node_config_feat"], theirs["node_config_feat"])
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["meta"]["search"] == "default"
    assert "Layout: layout:xla:default, 2 train / 2 valid graphs" in out.read_text()
    # A table of one search is not updated with rows of the other, nor (no search in its
    # meta: before the option) a table of random searches with default ones.
    with pytest.raises(SystemExit, match="search 'default', this call uses 'random'"):
        script.main([*common, "--update"])
    del results["meta"]["search"]
    out.with_suffix(".json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="search 'random', this call uses 'default'"):
        script.main([*common, "--search", "default", "--update"])
