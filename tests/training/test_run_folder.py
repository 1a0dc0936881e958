"""A run and its folder: a finished run is never replaced by accident, a resume says where
it continues from, TensorBoard keeps everything up to the checkpoint, and Ctrl-C says
where to continue."""

import os
import shutil
import signal
import time

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_runs import compose_config, tiny_overrides

from tpulearn.training import load_checkpoint, train
from tpulearn.training.folder import RunFolderError
from tpulearn.training.state import RunInterrupted


def tiny(out_dir, *extra, steps=2):
    return compose_config(overrides=[*tiny_overrides(out_dir, steps), *extra])


def files(folder):
    """Every path under ``folder`` with its bytes and modification time."""
    return {
        p.relative_to(folder): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_a_fresh_run_refuses_a_folder_holding_a_run(tmp_path):
    train(tiny(tmp_path))
    before = files(tmp_path)
    with pytest.raises(RunFolderError) as refused:
        train(tiny(tmp_path, steps=1))
    message = str(refused.value)
    assert str(tmp_path) in message
    assert "trainer.resume=true" in message and "trainer.overwrite=true" in message
    assert files(tmp_path) == before


def test_overwrite_replaces_the_run_and_its_events(tmp_path):
    train(tiny(tmp_path))
    (tmp_path / "eval" / "valid").mkdir(parents=True)  # evaluate.py's of the old run
    train(tiny(tmp_path, "trainer.overwrite=true", steps=1))
    assert not (tmp_path / "eval").exists()
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["step"] == 1
    assert len(list((tmp_path / "tensorboard").iterdir())) == 1


def test_a_run_that_saved_no_checkpoint_leaves_no_events_to_the_next(tmp_path, capsys):
    # A run that failed before its first checkpoint (a broken valid file at step 0) left
    # its events; the next run in that folder wrote beside them, so TensorBoard mixed both.
    (tmp_path / "tensorboard").mkdir()
    (tmp_path / "tensorboard" / "events.out.tfevents.1.failed").write_bytes(b"x")
    train(tiny(tmp_path))
    assert "that saved no checkpoint" in capsys.readouterr().out
    (events,) = (tmp_path / "tensorboard").iterdir()
    assert not events.name.endswith(".failed")


def test_resume_and_overwrite_together_are_refused(tmp_path):
    train(tiny(tmp_path))
    with pytest.raises(RunFolderError, match="pass one"):
        train(tiny(tmp_path, "trainer.resume=true", "trainer.overwrite=true", steps=3))


def test_resume_without_a_run_in_the_folder_asks_for_the_runs_folder(tmp_path):
    with pytest.raises(RunFolderError, match=r"hydra.run.dir=<run folder>"):
        train(tiny(tmp_path, "trainer.resume=true", steps=3))
    assert not any(tmp_path.iterdir())


def test_resume_auto_starts_afresh_in_a_folder_without_a_run(tmp_path):
    result = train(tiny(tmp_path, "trainer.resume=auto"))
    assert load_checkpoint(result["checkpoints"]["last"])["step"] == 2


def test_resume_auto_continues_the_run_in_its_folder(tmp_path, capsys):
    # What a requeued Slurm job does: the first launch's command, run again.
    train(tiny(tmp_path, "trainer.resume=auto"))
    capsys.readouterr()
    train(tiny(tmp_path, "trainer.resume=auto", steps=3))
    last = tmp_path / "checkpoints" / "last.pt"
    assert f"resumed from step 2 ({last})" in capsys.readouterr().out
    assert load_checkpoint(last)["step"] == 3


def test_resume_auto_and_overwrite_together_are_refused(tmp_path):
    with pytest.raises(RunFolderError, match="pass one"):
        train(tiny(tmp_path, "trainer.resume=auto", "trainer.overwrite=true"))


def test_a_resume_says_where_it_continues_from(tmp_path, capsys):
    train(tiny(tmp_path))
    capsys.readouterr()
    train(tiny(tmp_path, "trainer.resume=true", steps=3))
    last = tmp_path / "checkpoints" / "last.pt"
    assert f"resumed from step 2 ({last})" in capsys.readouterr().out


def loss_steps(folder):
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    return [e.step for e in events.Scalars("train/loss")]


@pytest.mark.slow  # three runs, each read back from its TensorBoard events
def test_a_resumed_run_keeps_every_event_up_to_its_checkpoint(tmp_path):
    # TensorBoard reads a folder's event files in name order: <seconds>.<host>.<pid>.<n>,
    # where n counts this process's writers (".10" sorts before ".9"). Runs of one process
    # a second apart keep their files in run order, as separate processes' runs are.
    train(tiny(tmp_path))
    ckpt = tmp_path / "checkpoints"
    shutil.copy(ckpt / "last.pt", ckpt / "step2.pt")
    time.sleep(1.1)
    train(tiny(tmp_path, "trainer.resume=true", steps=4))
    assert loss_steps(tmp_path) == [1, 2, 3, 4]  # step 2, the checkpoint's, stays
    # From step 2 again: the events logged after that checkpoint (3, 4) are dropped.
    time.sleep(1.1)
    train(tiny(tmp_path, f"trainer.resume={ckpt / 'step2.pt'}", steps=3))
    assert loss_steps(tmp_path) == [1, 2, 3]


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test, as in a terminal: a process started in
    the background (nohup, `cmd &` in a script) inherits an ignored SIGINT, where a run
    rightly leaves the handler alone and a Ctrl-C cannot arrive."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_during_step(monkeypatch, step: int, times: int) -> None:
    """Send ``times`` real SIGINTs to this process at the start of training step ``step``."""
    from tpulearn.training.trainer import Trainer

    calls = {"n": 0}
    original = Trainer._step

    def signalled(self, *args):
        calls["n"] += 1
        if calls["n"] == step:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_step", signalled)


def test_ctrl_c_during_a_step_stops_after_it(tmp_path, monkeypatch, python_sigint):
    # Stopping between steps keeps every library call whole (TensorBoard's writer thread
    # fails when an interrupt cuts its queue bookkeeping short).
    ctrl_c_during_step(monkeypatch, step=3, times=1)
    with pytest.raises(RunInterrupted) as stopped:
        train(tiny(tmp_path, steps=10))
    assert stopped.value.step == 3 and load_checkpoint(stopped.value.checkpoint)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch, python_sigint):
    ctrl_c_during_step(monkeypatch, step=3, times=2)
    with pytest.raises(RunInterrupted) as stopped:
        train(tiny(tmp_path, steps=10))
    assert stopped.value.step == 2 and load_checkpoint(stopped.value.checkpoint)["step"] == 2


def test_ctrl_c_saves_and_says_where(tmp_path, monkeypatch, python_sigint):
    from tpulearn.training.trainer import Trainer

    calls = {"n": 0}
    original = Trainer._step

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_step", interrupted)
    with pytest.raises(RunInterrupted) as stopped:
        train(tiny(tmp_path, steps=10))
    last = tmp_path / "checkpoints" / "last.pt"
    assert (stopped.value.step, stopped.value.checkpoint, stopped.value.saved) == (2, last, True)
    assert stopped.value.__context__ is None or stopped.value.__suppress_context__
    assert load_checkpoint(last)["step"] == 2


def test_a_resume_under_other_settings_is_refused_naming_them(tmp_path):
    # A resume once trained another collection with another loss into the same run, its
    # best.pt still the first collection's model.
    train(tiny(tmp_path))
    before = files(tmp_path)
    other = ("trainer.resume=true", "data.collection=layout:xla:random", "loss=hinge")
    with pytest.raises(RunFolderError) as refused:
        train(tiny(tmp_path, *other, steps=4))
    message = str(refused.value)
    assert message.startswith(f"{tmp_path / 'checkpoints/last.pt'} was trained with other ")
    assert "data.collection: checkpoint 'layout:xla:default' vs requested 'layout:xla:random'" in (
        message
    )
    assert "loss._target_: checkpoint" in message and "trainer.overwrite=true" in message
    assert files(tmp_path) == before
    # Its budget, patience, logging and a weight average may change.
    more = ("trainer.resume=true", "trainer.patience=3", "trainer.ema_decay=0.9")
    assert train(tiny(tmp_path, *more, steps=4))["history"][-1]["step"] == 4


def test_trainer_resume_takes_a_run_folder_and_names_itself_when_wrong(tmp_path):
    first = train(tiny(tmp_path / "a"))
    # Another run's folder stands for its last.pt, as evaluate.py takes run folders.
    resumed = train(tiny(tmp_path / "b", f"trainer.resume={tmp_path / 'a'}", steps=3))
    assert resumed["history"][0] == first["history"][0]
    assert resumed["history"][-1]["step"] == 3
    for value, what in (("yes", "no such file"), (tmp_path, "a folder without checkpoints")):
        with pytest.raises(FileNotFoundError, match=f"^trainer.resume={value}: {what}"):
            train(tiny(tmp_path / "c", f"trainer.resume={value}"))
