"""The Hydra side of a run folder: ``.hydra/`` and the log appear only once the run is under
way, a refused run leaves no trace, and Ctrl-C's line holds the command that resumes."""

import copy
import sys

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from tiny_runs import compose_config

from tpulearn.training.hydra_run import FolderCallback, RunFolder
from tpulearn.training.state import RunInterrupted


def files(folder):
    """Every path under ``folder`` with its bytes and modification time."""
    return {
        p.relative_to(folder): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def hydra_job():
    """Compose a config the way Hydra hands it to the task function of a run in a folder."""

    def make(folder, *overrides):
        cfg = compose_config(
            overrides=[*overrides, f"hydra.run.dir={folder}"], return_hydra_config=True
        )
        FolderCallback().on_run_start(cfg)  # before Hydra creates the folder
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(folder)
        folder.mkdir(parents=True, exist_ok=True)
        HydraConfig.instance().set_config(cfg)
        task = copy.deepcopy(cfg)
        with open_dict(task):
            del task["hydra"]
        return task

    yield make
    HydraConfig.instance().cfg = None


def test_the_record_and_log_appear_once_the_run_is_under_way(tmp_path, hydra_job, capsys):
    folder = tmp_path / "run"
    run = RunFolder(hydra_job(folder, "model=gcn"))
    with run.tee():
        print("data: before the checks")
        sys.stderr.write("\rtrain: 10%")  # a progress bar redraw: terminal only
        assert not any(folder.iterdir())
        run.claim(folder)
        print("valid step 2: opa 0.5")
    assert "tpulearn.models.GCN" in (folder / ".hydra" / "config.yaml").read_text()
    assert (folder / ".hydra" / "overrides.yaml").read_text() == "- model=gcn\n"
    assert (folder / ".hydra" / "hydra.yaml").is_file()
    log = "data: before the checks\nvalid step 2: opa 0.5\n"
    assert (folder / "train.log").read_text() == log
    shown = capsys.readouterr()
    assert shown.out == log and shown.err == "\rtrain: 10%"


@pytest.mark.parametrize("resumed", [True, False], ids=["resumed", "new"])
def test_a_resumed_run_appends_to_the_log_and_a_new_one_starts_it(tmp_path, hydra_job, resumed):
    # After trainer.overwrite (or a run that saved nothing) the folder has no last.pt: the
    # old run's lines once stayed at the top of the new run's log.
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "train.log").write_text("the old run\n")
    if resumed:
        (folder / "checkpoints" / "last.pt").write_bytes(b"")
    run = RunFolder(hydra_job(folder))
    with run.tee():
        run.claim(folder)
        print("budget: 4 steps")
    old = "the old run\n" if resumed else ""
    assert (folder / "train.log").read_text() == old + "budget: 4 steps\n"


def test_a_refused_run_leaves_no_trace(tmp_path, hydra_job):
    kept = tmp_path / "finished"
    kept.mkdir()
    (kept / "train.log").write_text("the old run\n")
    before = files(kept)
    for folder in (kept, tmp_path / "new" / "run"):
        run = RunFolder(hydra_job(folder))
        with pytest.raises(SystemExit), run.tee():
            print("data: ...")
            raise SystemExit(2)
    assert files(kept) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished"]  # new/ removed too


def test_the_resume_command_continues_the_run_in_its_folder(tmp_path, hydra_job, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    folder = tmp_path / "outputs" / "a run"
    run = RunFolder(hydra_job(folder, "model=gcn", "trainer.overwrite=true", "data.root=x"))
    command = (
        "python train.py model=gcn data.root=x trainer.resume=true 'hydra.run.dir=outputs/a run'"
    )
    assert run.resume_command() == command
    stop = RunInterrupted(7, folder / "checkpoints" / "last.pt", saved=True)
    line = run.interrupted(stop)
    assert line == (
        f"interrupted at step 7; saved outputs/a run/checkpoints/last.pt; resume with: {command}"
    )
    assert run.interrupted(KeyboardInterrupt()).startswith("interrupted before training")


def test_a_run_folder_that_cannot_be_written_is_refused_before_hydra_creates_it(
    tmp_path, monkeypatch, capsys
):
    from tpulearn.training import hydra_run

    cfg = compose_config(overrides=[f"hydra.run.dir={tmp_path}/a/b"], return_hydra_config=True)
    # Permission bits do not stop root (as tests may run): the check asks os.access.
    monkeypatch.setattr(hydra_run.os, "access", lambda path, mode: False)
    with pytest.raises(SystemExit) as exit_info:
        FolderCallback().on_run_start(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: hydra.run.dir={tmp_path}/a/b: {tmp_path} cannot be written to (no permission)"
    )
    assert not (tmp_path / "a").exists()
