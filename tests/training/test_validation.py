"""The validations of a run: the untrained model's at step 0 (a baseline that changes no
training draw and is never the best once a trained model is validated), and the
validation loss."""

import numpy as np
import pytest
import torch
from tiny_runs import compose_config, tiny_overrides

from tpulearn.losses import ListMLELoss
from tpulearn.training import GraphScores, load_checkpoint, train
from tpulearn.training.scoring import validation_loss
from tpulearn.training.state import RunState


def tiny(out_dir, *extra, steps=2):
    return compose_config(overrides=[*tiny_overrides(out_dir, steps), *extra])


def test_the_untrained_model_is_validated_at_step_0_and_training_draws_the_same(tmp_path):
    runs = {
        at_start: train(tiny(tmp_path / str(at_start), f"trainer.val_at_start={at_start}"))
        for at_start in (True, False)
    }
    with_0, without = runs[True], runs[False]
    assert [h["step"] for h in with_0["history"]] == [0, 2]
    assert with_0["history"][0]["loss"] is None  # no step has run
    assert with_0["history"][1:] == without["history"]
    assert with_0["best"] == without["best"] and with_0["best"]["step"] == 2
    a, b = (load_checkpoint(r["checkpoints"]["last"])["model"] for r in (with_0, without))
    assert all(torch.equal(a[k], b[k]) for k in a)


def run_state():
    model = torch.nn.Linear(1, 1)
    return RunState(model, torch.optim.SGD(model.parameters(), lr=0.1), None, None, {})


def test_the_step_0_validation_is_the_best_only_until_a_trained_model_is_validated():
    run = run_state()
    assert not run.record(0, None, {"opa": 0.9}, "opa")
    assert run.best == {"step": 0, "opa": 0.9}  # nothing else yet
    assert run.record(2, 1.0, {"opa": 0.4}, "opa")  # worse than the untrained model
    assert run.best["step"] == 2 and run.bad == 0
    assert not run.record(4, 1.0, {"opa": 0.3}, "opa") and run.bad == 1


def test_a_validation_loss_is_selected_on_its_minimum():
    run = run_state()
    run.record(2, 1.0, {"val_loss": 5.0}, "val_loss")
    assert run.record(4, 1.0, {"val_loss": 4.0}, "val_loss")


def graph_scores(num_configs, seed=0):
    rng = np.random.default_rng(seed)
    return GraphScores(
        "g",
        rng.normal(size=num_configs).astype(np.float32),
        rng.integers(1, 10_000, num_configs),
        np.arange(num_configs),
    )


def test_the_validation_loss_is_the_training_loss_over_groups_of_a_training_sample():
    loss_fn = ListMLELoss()
    g = graph_scores(64)

    def loss(s, r):
        return loss_fn(torch.from_numpy(s)[None], torch.from_numpy(r)[None]).item()

    halves = [loss(g.scores[i : i + 32], g.config_runtime[i : i + 32]) for i in (0, 32)]
    assert validation_loss(loss_fn, [g], 32) == pytest.approx(sum(halves) / 2)
    # On a thousand configs the value stays on the scale of a 32-config training loss
    # (ListMLE of random scores is about ln(32!) = 81.6 there, not ln(1000!)).
    big = validation_loss(loss_fn, [graph_scores(1000, seed=1)], 32)
    assert 60 < big < 100
