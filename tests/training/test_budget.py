"""The training budget: steps from ``trainer.max_epochs``, its rule with ``max_steps``, the
validation cadence, early stopping, the time limit, resuming a derived budget and the
per-collection defaults of the configs."""

import math
import re
import subprocess
import sys
from collections import Counter

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny_runs import SMALL_MODEL, compose_config, tiny_overrides

from tpulearn.leaderboard.reuse import existing_run
from tpulearn.training import Trainer, load_checkpoint, train
from tpulearn.training import budget as budget_module
from tpulearn.training.budget import Cadence, parse_max_time, step_budget, time_text
from tpulearn.training.progress import ProgressLog
from tpulearn.training.schedule import BatchSchedule
from tpulearn.training.state import RunInterrupted

FULL_COLLECTIONS = {
    "layout_xla_random": 69,
    "layout_xla_default": 69,
    "layout_nlp_random": 198,
    "layout_nlp_default": 198,
    "tile_xla": 5700,
    "synthetic": 8,
}


@pytest.mark.parametrize(
    ("epochs", "graphs", "per_step", "shards", "steps"),
    [
        (40, 69, 4, 1, 690),
        (1, 69, 32, 1, 3),
        (300, 69, 1, 1, 20700),
        (2.5, 10, 4, 1, 7),
        (0.1, 5700, 1, 1, 570),
        (1, 1, 1, 1, 1),
        (1, 5, 2, 2, 3),  # shard 0 owns 3 graphs, one per step
        (2, 5, 2, 2, 6),
        (3, 7, 4, 4, 6),
        (2, 8, 4, 2, 4),
    ],
)
def test_steps_from_epochs(epochs, graphs, per_step, shards, steps):
    budget = step_budget(None, epochs, graphs, per_step, shards)
    assert budget.steps == steps
    if shards == 1:
        assert steps == math.ceil(epochs * graphs / per_step)
    if epochs == int(epochs):
        # Every graph, of every shard, is seen `epochs` times; one step fewer misses one.
        schedule = BatchSchedule(per_step, graphs, shards)
        seen = Counter(g for s in range(steps) for _, g in schedule.graph_indices(s))
        assert min(seen[g] for g in range(graphs)) >= epochs
        fewer = Counter(g for s in range(steps - 1) for _, g in schedule.graph_indices(s))
        assert min(fewer[g] for g in range(graphs)) < epochs


@pytest.mark.parametrize(
    ("graphs", "per_step", "shards", "floor", "steps"),
    [
        (1, 1, 1, 8, 8 * 150),  # one graph: 8 visits an epoch
        (3, 1, 1, 8, 8 * 150),
        (3, 2, 1, 8, 4 * 150),
        (5, 2, 2, 8, 4 * 150),  # 4 visits of each shard's graphs, one a step each
        (8, 1, 1, 8, 8 * 150),  # as many graphs as the floor: every graph once
        (16, 1, 1, 8, 16 * 150),  # more: the floor does not bind
        (16, 4, 2, 8, 4 * 150),
    ],
)
def test_min_epoch_graphs_is_a_floor_under_an_epoch(graphs, per_step, shards, floor, steps):
    budget = step_budget(None, 150, graphs, per_step, shards, min_epoch_graphs=floor)
    assert budget.steps == steps
    plain = step_budget(None, 150, graphs, per_step, shards)
    assert budget.steps == max(plain.steps, steps)
    assert ("trainer.min_epoch_graphs" in budget.text) == (budget.steps > plain.steps)
    # An epoch of the floor's visits is what "5 epochs" of validation count.
    assert Cadence.of("5 epochs", budget).period == 5 * budget.steps_per_epoch
    # The graphs are still visited in turn: each graph of the largest shard 150 times the
    # epoch's visits over its graphs (the others' more often, as without a floor).
    schedule = BatchSchedule(per_step, graphs, shards)
    seen = Counter(g for s in range(budget.steps) for _, g in schedule.graph_indices(s))
    largest = -(-graphs // shards)
    assert min(seen[g] for g in range(graphs)) >= 150 * budget.epoch_graphs // largest
    if shards == 1:
        assert max(seen.values()) - min(seen.values()) <= 1


def test_min_epoch_graphs_lengthens_a_run_on_few_graphs(tmp_path, synthetic_root, capsys):
    # 3 graphs, 2 per step, 2 epochs of at least 4 visits: 8 visits in 4 steps, the epochs
    # ending at steps 2 and 4 (without the floor: 3 steps, test below).
    result = train(derived(tmp_path / "run", synthetic_root, "trainer.min_epoch_graphs=4"))
    assert result["max_steps"] == result["steps"] == 4
    assert [h["step"] for h in result["history"]] == [0, 2, 4]
    out = capsys.readouterr().out
    assert "2 epochs x 3 train graphs (an epoch: 4 visits, trainer.min_epoch_graphs)" in out


@pytest.mark.parametrize("value", [0, -2, 2.5, True, "eight"])
def test_a_bad_min_epoch_graphs_is_one_clear_line(value):
    message = f"trainer.min_epoch_graphs={value!r} must be a positive integer or null"
    with pytest.raises(ValueError, match=re.escape(message)):
        Trainer(max_epochs=10, min_epoch_graphs=value, device="cpu")


def test_the_smaller_of_max_steps_and_max_epochs_is_the_budget():
    assert step_budget(100, None, 69, 4).steps == 100
    assert (
        step_budget(None, 40, 69, 4).text == "40 epochs x 69 train graphs / 4 per step = 690 steps"
    )
    capped = step_budget(100, 40, 69, 4)
    assert capped.steps == 100
    assert "trainer.max_steps" in capped.text and "690 steps" in capped.text
    assert step_budget(1000, 40, 69, 4).steps == 690
    assert step_budget(150, None, 1, 1).text.startswith("150 steps (trainer.max_steps) = 150 ep")


@pytest.mark.parametrize(
    ("max_steps", "max_epochs", "message"),
    [
        (0, None, "trainer.max_steps=0 must be a positive integer or null"),
        (-5, None, "trainer.max_steps=-5 must be"),
        (2.5, None, "trainer.max_steps=2.5 must be a positive integer"),
        (True, None, "trainer.max_steps=True"),
        (None, 0, "trainer.max_epochs=0 must be a positive number or null"),
        (None, -1.5, "trainer.max_epochs=-1.5"),
        (None, float("nan"), "trainer.max_epochs=nan"),
        (None, "ten", "trainer.max_epochs='ten'"),
        (10, 0, "trainer.max_epochs=0"),
        (None, None, "no training budget: trainer.max_steps and trainer.max_epochs are both"),
    ],
)
def test_bad_budgets_are_one_clear_line(max_steps, max_epochs, message):
    with pytest.raises(ValueError, match=message) as err:
        Trainer(max_steps=max_steps, max_epochs=max_epochs, device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=message):
        step_budget(max_steps, max_epochs, 10, 2)


@pytest.mark.parametrize("val_every", [0, -3, "weekly", "0 epochs", 2.5, None])
def test_a_bad_val_every_is_one_clear_line(val_every):
    with pytest.raises(ValueError, match=r"trainer.val_every=.* must be a positive number of"):
        Trainer(max_steps=10, val_every=val_every, device="cpu")


@pytest.mark.parametrize(
    ("key", "value", "minimum"),
    [
        ("graphs_per_batch", 0, 1),
        ("graphs_per_batch", 2.0, 1),
        ("log_every", 0, 1),
        ("patience", -1, 0),
        ("patience", True, 0),
    ],
)
def test_bad_step_counts_are_one_clear_line(key, value, minimum):
    # Each once ran: a batch of no graphs trained on nothing, log_every=0 divided by zero,
    # a negative patience stopped the run at step 0.
    with pytest.raises(ValueError, match=rf"trainer.{key} must be an integer >= {minimum}"):
        Trainer(max_steps=10, device="cpu", **{key: value})


@pytest.mark.parametrize("clip", [-1.0, float("nan")])
def test_a_negative_grad_clip_is_refused(clip):
    with pytest.raises(ValueError, match="trainer.grad_clip must be >= 0 or null"):
        Trainer(max_steps=10, device="cpu", grad_clip=clip)


def test_step_cadence_is_every_n_steps_and_epoch_cadence_ends_each_epoch():
    for every in (1, 3, 25):
        cadence = Cadence.of(every)
        assert [s for s in range(1, 101) if cadence.due(s)] == list(range(every, 101, every))
    budget = step_budget(None, 4, 69, 4)
    epoch = Cadence.of("epoch", budget)
    # The step that finishes epoch k: ceil(69 k / 4).
    assert [s for s in range(1, budget.steps + 1) if epoch.due(s)] == [18, 35, 52, 69]
    assert Cadence.of("2 epochs", budget).text == "every 2 epochs (34.5 steps)"
    assert [s for s in range(1, 70) if Cadence.of("2 epochs", budget).due(s)] == [35, 69]
    # More than an epoch per step: every step validates.
    assert all(Cadence.of("epoch", step_budget(None, 3, 2, 4)).due(s) for s in (1, 2, 3))


@pytest.mark.parametrize("val_every", [6, 25, "epoch", "3 epochs"])
def test_the_eta_counts_the_validations_still_due(tmp_path, val_every):
    from tpulearn.training.distributed import World

    budget = step_budget(None, 10, 7, 2)
    cadence = Cadence.of(val_every, budget)
    log = ProgressLog(tmp_path, World(), max_steps=budget.steps, val_every=cadence)
    for step in range(1, budget.steps + 1):
        due = [s for s in range(step, budget.steps + 1) if cadence.due(s)]
        expected = len(due) + (not cadence.due(budget.steps))
        assert log.validations_after(step) == expected
    log.close()


@pytest.mark.parametrize(
    ("data", "graphs"), [*FULL_COLLECTIONS.items()], ids=list(FULL_COLLECTIONS)
)
def test_full_collection_configs_compose_to_an_epoch_budget_with_patience(data, graphs):
    trainer = compose_config(overrides=[f"data={data}"]).trainer
    assert trainer.max_steps is None and trainer.max_epochs > 0 and trainer.patience > 0
    budget = step_budget(None, trainer.max_epochs, graphs, trainer.graphs_per_batch)
    assert budget.steps >= trainer.max_epochs * graphs  # one graph per step by default
    assert Cadence.of(trainer.val_every, budget).period > 0
    assert instantiate(trainer, device="cpu").max_epochs == trainer.max_epochs
    # A smoke run's step limit on the command line caps the collection's epochs.
    smoke = compose_config(overrides=[f"data={data}", "trainer.max_steps=20"]).trainer
    assert step_budget(smoke.max_steps, smoke.max_epochs, graphs, 1).steps == 20


def test_the_quick_start_keeps_150_steps():
    trainer = compose_config().trainer
    assert (trainer.max_steps, trainer.max_epochs, trainer.val_every, trainer.patience) == (
        150,
        None,
        25,
        0,
    )
    assert step_budget(trainer.max_steps, trainer.max_epochs, 1, 1).steps == 150


@pytest.mark.parametrize(
    ("experiment", "steps", "val_every"),
    [
        ("layout_xla_random", 10000, 500),
        ("layout_nlp_default", 10000, 500),
        ("tile_xla", 20000, 1000),
    ],
)
def test_experiments_keep_the_papers_step_budget(experiment, steps, val_every):
    trainer = compose_config(overrides=[f"experiment={experiment}"]).trainer
    assert (trainer.max_steps, trainer.max_epochs, trainer.patience) == (steps, None, 0)
    assert trainer.val_every == val_every


def fake_validation(monkeypatch, opa: list[float]):
    """Validations return ``opa`` in turn (a step-0 one first)."""
    values = iter(opa)

    def validate(self, model, valid_set, data, loss_fn=None):
        return {"opa": next(values), "kendall_tau": 0.0, "val_loss": 1.0}

    monkeypatch.setattr(Trainer, "validate", validate)


def test_early_stopping_stops_at_the_patience_and_reports_the_best(tmp_path, monkeypatch, capsys):
    # Step 0, then steps 2, 4, ...: the best is step 4; 6, 8 and 10 bring no gain (8 ties).
    fake_validation(monkeypatch, [0.5, 0.6, 0.7, 0.65, 0.7, 0.69, 0.99])
    overrides = [*tiny_overrides(tmp_path, 20), "trainer.val_every=2", "trainer.patience=3"]
    overrides.append("trainer.val_at_start=true")
    result = train(compose_config(overrides=overrides))
    assert [h["step"] for h in result["history"]] == [0, 2, 4, 6, 8, 10]
    assert result["steps"] == 10 and result["max_steps"] == 20
    assert result["best"]["step"] == 4 and result["best"]["opa"] == 0.7
    assert result["stopped"] == {
        "reason": "patience",
        "step": 10,
        "max_steps": 20,
        "best_step": 4,
        "metric": "opa",
        "value": 0.7,
        "validations": 3,
        "patience": 3,
    }
    assert load_checkpoint(result["checkpoints"]["best"])["step"] == 4
    assert load_checkpoint(result["checkpoints"]["last"])["step"] == 10
    out = capsys.readouterr().out
    assert "budget: 20 steps (trainer.max_steps)" in out
    assert "early stop after 3 validations without gain" in out
    assert (
        "stopped early at step 10 of 20: no gain in opa for 3 validations "
        "(trainer.patience=3); best step 4 (opa 0.7000), the best checkpoint" in out
    )
    # Resuming a run that stopped early trains nothing and still says why it stopped.
    again = train(compose_config(overrides=[*overrides, "trainer.resume=true"]))
    assert again["steps"] == 10 and again["stopped"]["best_step"] == 4
    assert "the run had stopped early at step 10" in capsys.readouterr().out


def test_a_run_without_patience_trains_its_whole_budget(tmp_path, capsys):
    result = train(compose_config(overrides=tiny_overrides(tmp_path, 2)))
    assert result["stopped"] is None and result["steps"] == result["max_steps"] == 2
    assert "trained 2 of 2 steps" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "seconds", "text"),
    [
        (90, 90.0, "1m30s"),
        (0.5, 0.5, "0.5s"),
        ("90s", 90.0, "1m30s"),
        ("9m", 540.0, "9m"),
        ("1h30m", 5400.0, "1h30m"),
        ("1.5h", 5400.0, "1h30m"),
        ("2m 30s", 150.0, "2m30s"),
        ("45", 45.0, "45s"),
    ],
)
def test_max_time_reads_seconds_or_durations(value, seconds, text):
    assert parse_max_time(value) == seconds
    assert time_text(seconds) == text


@pytest.mark.parametrize("value", [0, -5, "", "9x", "m", "5m5", True, float("inf"), [9]])
def test_a_bad_max_time_is_one_clear_line(value):
    with pytest.raises(ValueError, match=r"trainer\.max_time=.* must be a positive number"):
        Trainer(max_steps=2, max_time=value)
    assert parse_max_time(None) is None


def fake_clock(monkeypatch) -> list[float]:
    """The trainer's clock reads 0, 1, 2, ... seconds, one more at each reading; the list
    holds the readings."""
    readings: list[float] = []

    def clock():
        readings.append(float(len(readings)))
        return readings[-1]

    monkeypatch.setattr(budget_module, "clock", clock)
    return readings


def test_the_time_limit_stops_after_the_step_that_passes_it(tmp_path, monkeypatch, capsys):
    # The clock starts at 0 and gains 1 s at each reading: one after each step, one for
    # the ETA of the step line before step 2's validation. Steps 1 and 2 read 1 s and 2 s;
    # step 3 reads past the 3 s limit: it validates, checkpoints, and the run stops there.
    fake_validation(monkeypatch, [0.5, 0.6, 0.7, 0.65, 0.99])
    readings = fake_clock(monkeypatch)
    overrides = [*tiny_overrides(tmp_path, 20), "trainer.val_every=2", "trainer.max_time=3s"]
    overrides.append("trainer.val_at_start=true")
    result = train(compose_config(overrides=overrides))
    assert readings[-1] >= 3.0
    assert [h["step"] for h in result["history"]] == [0, 2, 3]
    assert result["steps"] == 3 and result["max_steps"] == 20
    assert result["stopped"] == {
        "reason": "time",
        "step": 3,
        "max_steps": 20,
        "best_step": 3,
        "metric": "opa",
        "value": 0.7,
        "validations": 0,
        "patience": 0,
        "max_time": 3.0,
    }
    assert load_checkpoint(result["checkpoints"]["last"])["step"] == 3
    assert load_checkpoint(result["checkpoints"]["best"])["step"] == 3
    out = capsys.readouterr().out
    assert "; time limit 3s (trainer.max_time)" in out
    assert re.search(r"time limit reached at step 3: \d+ s of trainer\.max_time=3s", out)
    assert (
        "stopped at step 3 of 20: the time limit (trainer.max_time=3s) was reached; best "
        "step 3 (opa 0.7000), the best checkpoint" in out
    )
    # Resumed, the run gets the limit afresh (here none) and trains on to its budget.
    monkeypatch.undo()
    fake_validation(monkeypatch, [0.1] * 20)
    resumed = [*tiny_overrides(tmp_path, 20), "trainer.val_every=2", "trainer.resume=true"]
    again = train(compose_config(overrides=resumed))
    assert again["steps"] == 20 and again["stopped"] is None
    assert [h["step"] for h in again["history"]][:4] == [0, 2, 3, 4]


def test_a_time_limit_that_does_not_bind_changes_nothing(tmp_path, monkeypatch):
    runs = {}
    for limit in ("null", "1h"):
        fake_clock(monkeypatch)  # a fresh clock each run: at most 21 s pass
        overrides = [*tiny_overrides(tmp_path / limit, 6), f"trainer.max_time={limit}"]
        runs[limit] = train(compose_config(overrides=overrides))
    plain, capped = runs["null"], runs["1h"]
    assert capped["stopped"] is None and capped["steps"] == plain["steps"] == 6
    assert capped["history"] == plain["history"]
    a = load_checkpoint(plain["checkpoints"]["last"])["model"]
    b = load_checkpoint(capped["checkpoints"]["last"])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    args = ["--train", "3", "--valid", "1", "--test", "1", "--nodes", "20", "40"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tpulearn.data.synthetic",
            str(root),
            *args,
            "--configs",
            "10",
            "20",
        ],
        check=True,
        capture_output=True,
    )
    return root


def derived(out_dir, root, *extra):
    """2 epochs of 3 synthetic graphs, 2 per step: 3 steps, validated after each epoch."""
    return compose_config(
        overrides=[
            f"out_dir={out_dir}",
            "data=synthetic",
            f"data.root={root}",
            "trainer.max_epochs=2",
            "trainer.graphs_per_batch=2",
            "trainer.val_every=epoch",
            "trainer.progress=false",
            "data.configs_per_graph=8",
            "scheduler=cosine",
            *SMALL_MODEL,
            *extra,
        ]
    )


def test_a_derived_budget_resumes_to_the_same_final_step(tmp_path, synthetic_root, monkeypatch):
    whole = train(derived(tmp_path / "whole", synthetic_root))
    assert whole["max_steps"] == whole["steps"] == 3
    # Epochs end within steps 2 (3 graphs of 4 seen) and 3; step 0 is the baseline.
    assert [h["step"] for h in whole["history"]] == [0, 2, 3]
    state = load_checkpoint(whole["checkpoints"]["last"])
    assert state["max_steps"] == 3 and state["scheduler"]["T_max"] == 3  # cosine over the run

    original = Trainer._step

    def interrupted(self, runner, loss_fn, optimizer, train_set, graphs, step):
        if step == 1:
            raise KeyboardInterrupt
        return original(self, runner, loss_fn, optimizer, train_set, graphs, step)

    monkeypatch.setattr(Trainer, "_step", interrupted)
    split = tmp_path / "split"
    with pytest.raises(RunInterrupted):
        train(derived(split, synthetic_root))
    wanted = OmegaConf.to_container(derived(split, synthetic_root), resolve=True)
    assert existing_run(split, wanted)[0] == "resume"
    monkeypatch.setattr(Trainer, "_step", original)
    resumed = train(derived(split, synthetic_root, "trainer.resume=true"))
    assert resumed["steps"] == resumed["max_steps"] == 3
    assert [h["step"] for h in resumed["history"]] == [0, 2, 3]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    # The leaderboard's check reads the derived budget from the checkpoint: finished.
    assert existing_run(split, wanted) == ("reuse", resumed["best"]["step"])


@pytest.mark.parametrize("data", [d for d in FULL_COLLECTIONS if d.startswith("layout")])
def test_layout_fast_brings_its_own_epoch_budget_on_every_layout_collection(data):
    cfg = compose_config(overrides=["experiment=layout_fast", f"data={data}"])
    trainer = cfg.trainer
    assert (trainer.max_steps, trainer.max_epochs, trainer.patience) == (None, 150, 12)
    assert trainer.val_every == "5 epochs" and trainer.select_metric == "kendall_tau"
    assert trainer.min_epoch_graphs == 8
    assert cfg.model.layout_shape is True and trainer.ema_decay == 0.99
    assert cfg.data.sampler._target_ == "tpulearn.data.UniformSampler"
    assert cfg.data.collection == data.replace("layout_", "layout:").replace("_", ":")
    graphs = FULL_COLLECTIONS[data]
    budget = step_budget(None, trainer.max_epochs, graphs, 1, 1, trainer.min_epoch_graphs)
    assert budget.steps == 150 * graphs  # tens of graphs: the floor does not bind
    # One graph (the bundled sample): 8 visits an epoch.
    assert step_budget(None, 150, 1, 1, 1, trainer.min_epoch_graphs).steps == 1200


def test_a_resume_under_a_smaller_budget_says_it_trained_nothing(tmp_path, capsys):
    # It printed "trained 3 of 2 steps".
    train(compose_config(overrides=tiny_overrides(tmp_path, 3)))
    again = train(compose_config(overrides=[*tiny_overrides(tmp_path, 2), "trainer.resume=true"]))
    assert again["steps"] == 3
    out = capsys.readouterr().out
    assert "trained nothing: the checkpoint is at step 3, past this budget of 2 steps" in out
