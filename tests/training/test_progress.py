"""What a run shows while it trains: the bar only on a terminal, step lines with time per
step and an ETA, and the TensorBoard scalars, text and hparams of a run."""

import io
import math
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from tiny_runs import compose_config, tiny_overrides

from tpulearn.training import Trainer, train
from tpulearn.training.distributed import World
from tpulearn.training.progress import ProgressLog, duration
from tpulearn.training.step import StepStats


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


def stats(loss=2.0, tau=0.5, configs=8):
    return StepStats(loss=loss, configs=configs, grad_norm=1.5, kendall_tau=tau, opa=0.75)


def test_the_last_step_has_its_line_with_time_per_step_and_an_eta(tmp_path, capsys):
    log = ProgressLog(tmp_path, World(), max_steps=3, log_every=25, val_every=25)
    log.validation(0, {"opa": 0.5}, seconds=10.0)
    for step in (1, 2, 3):
        log.step(step, stats(loss=step, tau=math.nan if step == 2 else 0.5), 1e-3, 2.0)
    log.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "valid step 0 (untrained model, 10.0 s): opa 0.5000"
    # Means over the window (tau over the steps that have it); the final validation
    # still to come counts in the ETA, as long as the last one.
    assert lines[1] == (
        "step 3/3 loss 2.0000 tau 0.5000 opa 0.7500 grad_norm 1.5 | 2.00 s/step 4 configs/s eta 10s"
    )


def test_a_validation_first_prints_the_steps_the_last_line_did_not_cover(tmp_path, capsys):
    log = ProgressLog(tmp_path, World(), max_steps=100, log_every=4, val_every=6)
    for step in range(1, 9):
        log.step(step, stats(), 1e-3, 1.0)
        if step == 6:
            log.validation(6, {"opa": 0.5}, seconds=3.0)
    log.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" loss")[0] for line in lines] == [
        "step 4/100",
        "step 6/100",
        "valid step 6 (3.0 s): opa 0.5000",
        "step 8/100",
    ]
    # 92 steps of 1 s, and 16 validations (12, 18, ..., 96 and 100) as long as step 6's.
    assert lines[3].endswith("eta 2m20s")


def test_the_eta_ends_no_later_than_the_time_limit(tmp_path, capsys, monkeypatch):
    from tpulearn.training import budget

    now = [0.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    deadline = budget.Deadline(120.0)  # starts at 0 s
    log = ProgressLog(tmp_path, World(), max_steps=1000, log_every=4, deadline=deadline)
    for step in range(1, 9):
        now[0] = 10.0 * step
        log.step(step, stats(), 1e-3, 1.0)
    log.close()
    lines = capsys.readouterr().out.splitlines()
    # At step 4 (40 s) 80 s are left, plus the step that passes the limit: 81 s, not the
    # budget's 996; at step 8 (80 s), 41 s.
    assert [line.split("eta ")[1] for line in lines] == ["1m21s", "41s"]
    unlimited = ProgressLog(tmp_path, World(), max_steps=1000, log_every=4)
    for step in range(1, 5):
        unlimited.step(step, stats(), 1e-3, 1.0)
    unlimited.close()
    assert capsys.readouterr().out.splitlines()[0].endswith("eta 16m36s")


@pytest.mark.parametrize(
    ("seconds", "text"), [(44.6, "45s"), (200, "3m20s"), (7500, "2h05m"), (math.inf, "?")]
)
def test_durations_read_at_a_glance(seconds, text):
    assert duration(seconds) == text


def test_tensorboard_shows_gradients_step_time_validation_loss_and_the_config(tmp_path):
    overrides = [*tiny_overrides(tmp_path, 2), "trainer.val_at_start=true"]
    train(compose_config(overrides=overrides))
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    wanted = {"train/grad_norm", "train/step_s", "train/kendall_tau", "train/opa", "valid/loss"}
    assert wanted <= scalars
    assert not [tag for tag in scalars if tag.startswith("valid/num_graphs")]
    assert [e.step for e in events.Scalars("valid/loss")] == [0, 2]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "hidden_channels: 8" in text
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hparams)
    start = HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["model.hidden_channels"].number_value == 8


@pytest.mark.slow
def test_peak_memory_of_a_process_started_by_a_larger_one_is_its_own():
    """A child inherits its parent's peak into ru_maxrss through exec (so a script that
    runs train.py would see its own memory there); max_rss_mb reads the child's own."""
    import resource
    import subprocess

    import numpy as np

    held = np.ones(1_500_000_000 // 8)  # the parent now peaks above 1.5 GB
    code = (
        "import resource; from tpulearn.training.progress import max_rss_mb; "
        "print(max_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    own, inherited = map(float, out.stdout.split())
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert held.nbytes > 1e9 and parent > 1500
    if sys.platform == "linux":  # where the inheritance happens and /proc is read
        assert inherited >= 1500
        assert 10 < own < 1000  # torch imported, nothing near the parent's 1.5 GB
