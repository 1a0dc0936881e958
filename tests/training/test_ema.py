"""trainer.ema_decay: a moving average of the weights is validated, selected and
checkpointed; the weights that train are unchanged by it."""

import pytest
import torch
from hydra.utils import instantiate
from tiny_runs import compose_config, tiny_overrides

from tpulearn.evaluation import load_model
from tpulearn.training import Trainer, load_checkpoint, train


def run(out_dir, steps, *extra, val_every=1):
    every = f"trainer.val_every={val_every}"
    return train(compose_config(overrides=[*tiny_overrides(out_dir, steps), every, *extra]))


def weights(result, which="last", key="model"):
    return load_checkpoint(result["checkpoints"][which])[key]


def test_the_average_follows_the_ema_recursion_and_is_what_readers_get(tmp_path):
    # Plain runs of 1 and 2 steps give the trained weights w1, w2 (no scheduler: a
    # 2-step run's first step is the 1-step run's).
    w1, w2 = weights(run(tmp_path / "p1", 1)), weights(run(tmp_path / "p2", 2))
    # The decay is min(ema_decay, (1 + n) / (10 + n)) after n updates: 2 / 11 at the first
    # step (n = 1: the initial weights), 3 / 12 at the second; e = 0.05 stays below both.
    d, e = 0.6, 0.05
    one_d = run(tmp_path / "d1", 1, f"trainer.ema_decay={d}")
    one_e = run(tmp_path / "e1", 1, f"trainer.ema_decay={e}")
    two_d = run(tmp_path / "d2", 2, f"trainer.ema_decay={d}")
    # The training is the plain one: same losses, and `train_model` holds its weights.
    plain_losses = [h["loss"] for h in run(tmp_path / "p2b", 2)["history"]]
    assert [h["loss"] for h in two_d["history"]] == plain_losses
    trained = weights(two_d, key="train_model")
    assert all(torch.equal(trained[k], w2[k]) for k in w2)
    assert load_checkpoint(two_d["checkpoints"]["last"])["ema_averaged"] == 3
    a1d, a1e, a2d = weights(one_d), weights(one_e), weights(two_d)
    d1, d2 = min(d, 2 / 11), min(d, 3 / 12)
    moved = 0
    for k in w1:
        # a1 = d1 w0 + (1 - d1) w1: recover w0 from one decay, predict the other's average.
        w0 = (a1d[k].double() - (1 - d1) * w1[k].double()) / d1
        torch.testing.assert_close(a1e[k].double(), e * w0 + (1 - e) * w1[k].double())
        expected = d2 * a1d[k].double() + (1 - d2) * w2[k].double()
        torch.testing.assert_close(a2d[k].double(), expected)
        moved += not torch.equal(a2d[k], w2[k])
    assert moved > 0  # the average is not the last weights
    # evaluate.py and Predictor load `model`: the average.
    model, _, _ = load_model(two_d["checkpoints"]["last"])
    assert all(torch.equal(v, a2d[k]) for k, v in model.state_dict().items())


def test_validation_scores_the_average(tmp_path):
    result = run(tmp_path / "r", 2, "trainer.ema_decay=0.5")
    model, _, _ = load_model(result["checkpoints"]["last"])
    trained, _, _ = load_model(result["checkpoints"]["last"])
    trained.load_state_dict(weights(result, key="train_model"))
    cfg = compose_config(overrides=tiny_overrides(tmp_path / "r", 2))
    data = instantiate(cfg.data)
    data.load_feature_state(load_checkpoint(result["checkpoints"]["last"]))
    trainer = Trainer(max_steps=1, device="cpu")
    valid = data.eval_set("valid")
    averaged = trainer.validate(model, valid, data)
    assert result["history"][-1]["opa"] == pytest.approx(averaged["opa"])
    assert trainer.validate(trained, valid, data)["opa"] != pytest.approx(averaged["opa"])


def test_resume_continues_the_average(tmp_path):
    # Validated every 2 steps (validation draws no random numbers the training would).
    whole = run(tmp_path / "whole", 4, "trainer.ema_decay=0.7", val_every=2)
    run(tmp_path / "split", 2, "trainer.ema_decay=0.7", val_every=2)
    resumed = run(
        tmp_path / "split", 4, "trainer.ema_decay=0.7", "trainer.resume=true", val_every=2
    )
    for key in ("model", "train_model"):
        a, b = weights(whole, key=key), weights(resumed, key=key)
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ValueError, match="trainer.ema_decay must lie in"):
        Trainer(max_steps=1, ema_decay=decay)


def test_a_run_without_an_average_resumes_with_one(tmp_path):
    plain = run(tmp_path / "r", 2)
    trained = weights(plain)
    resumed = run(tmp_path / "r", 3, "trainer.ema_decay=0.9", "trainer.resume=true")
    state = load_checkpoint(resumed["checkpoints"]["last"])
    # The average starts at the resumed weights (a copy), then takes one step's update.
    assert state["ema_averaged"] == 2
    step = weights(resumed, key="train_model")
    for k in trained:
        d = min(0.9, 2 / 11)
        expected = d * trained[k].double() + (1 - d) * step[k].double()
        torch.testing.assert_close(state["model"][k].double(), expected)
