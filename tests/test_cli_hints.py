"""A misspelt setting on the command line: after Hydra's refusal, one line names the key
and the one it was likely meant for."""

import pytest
from tiny_runs import evaluate_cli, train_cli

from tpulearn.cli import key_hints

HINT = "is not a setting of this config; did you mean"


@pytest.mark.parametrize(
    "args, unknown, meant",
    [
        (["trainer.max_step=20"], "trainer.max_step", "trainer.max_steps"),
        # Appended as Hydra's own message suggests: the constructor then refuses it.
        (["+trainer.max_step=20"], "trainer.max_step", "trainer.max_steps"),
        # Under another group choice, in a multirun sweep, a misspelt group.
        (
            ["model=gst_sage", "model.model.hiden_channels=8"],
            "model.model.hiden_channels",
            "model.model.hidden_channels",
        ),
        (
            ["-m", "trainer.seed=0,1", "data.sampler.fast_shar=0.2"],
            "data.sampler.fast_shar",
            "data.sampler.fast_share",
        ),
        (["modl=sage"], "modl", "model"),
    ],
)
def test_a_misspelt_key_is_named_with_the_key_meant(args, unknown, meant, monkeypatch, capsys):
    code, _, err = train_cli(monkeypatch, capsys, *args)
    assert code == 1
    assert f"error: {unknown} {HINT} {meant}? (python train.py --cfg job prints every key)" in err


def test_evaluate_names_its_own_keys(monkeypatch, capsys):
    code, _, err = evaluate_cli(monkeypatch, capsys, "ckpt=x", "splt=test")
    assert code == 1 and f"error: splt {HINT} split?" in err


def test_nothing_is_added_where_every_key_is_known():
    # An unknown group choice is Hydra's to explain (it lists the options).
    assert key_hints("config", ["model=sagee"]) == []
    assert key_hints("config", ["model=sage", "trainer.max_steps=3"]) == []
    # A key added on purpose, like nothing the config has: not called a misspelling.
    assert key_hints("eval", ["ckpt=x", "+data.context_hops=1"]) == []
