"""What a run shows while it trains: the bar only on a terminal, step lines with time per
step and an ETA, and the TensorBoard scalars, text and hparams of a run."""

import io
import sys

import pytest

from tpulearn.training import Trainer


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("progress", "tty", "bar"),
    [
        ("auto", True, True),
        ("auto", False, False),
        (True, False, True),
        (False, True, False),
        ("true", False, True),
        ("false", True, False),  # a string, as code or a quoted override passes it
    ],
)
def test_progress_auto_draws_a_bar_only_on_a_terminal(monkeypatch, progress, tty, bar):
    monkeypatch.setattr(sys, "stderr", Terminal() if tty else io.StringIO())
    assert Trainer(device="cpu", progress=progress).progress is bar


def test_an_unknown_progress_value_is_refused():
    with pytest.raises(ValueError, match="auto, true or false"):
        Trainer(device="cpu", progress="sometimes")
