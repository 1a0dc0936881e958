"""Runs that break on the way: a data file that breaks a run after it has trained (the
steps are kept, and the run resumes where it failed once the file is mended), and a run
whose loss diverges (one line saying what to change)."""

import shutil

import pytest
import torch
from tiny_runs import compose_config, tiny_overrides, train_cli

from tpulearn.data import sample_root
from tpulearn.training import load_checkpoint, train
from tpulearn.training.state import RunDataError

VALID = "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


def break_valid_file(root) -> bytes:
    """Damage the middle of the bundled valid graph's file under ``root`` (its header and
    member list stay readable, a member's CRC does not); return the good bytes."""
    good = (root / VALID).read_bytes()
    broken = bytearray(good)
    middle = len(broken) // 2
    broken[middle : middle + 64] = bytes(b ^ 0xFF for b in broken[middle : middle + 64])
    (root / VALID).write_bytes(bytes(broken))
    return good


def overrides(out_dir, root) -> list[str]:
    return [*tiny_overrides(out_dir, steps=4), "trainer.val_every=2", f"data.root={root}"]


def test_a_broken_valid_file_keeps_the_steps_trained_and_the_resumed_run_validates_them(
    tmp_path, monkeypatch, capsys
):
    root = tmp_path / "root"
    shutil.copytree(sample_root(), root)
    good = break_valid_file(root)
    run = tmp_path / "run"
    code, _, err = train_cli(monkeypatch, capsys, *overrides(run, root))
    line = err.strip().splitlines()[-1]
    # The first validation (step 2) reads the file: the 2 steps before it are in last.pt.
    assert code == 2 and line.startswith(f"error: {root / VALID}: key 'node_config_feat'")
    assert f"the 2 steps trained are saved in {run / 'checkpoints/last.pt'}" in line
    # ... and the line ends with the command that continues the run.
    assert "then resume the run (trainer.resume=true): python train.py " in line
    assert line.endswith(" trainer.resume=true") and f"out_dir={run}" in line
    assert load_checkpoint(run / "checkpoints/last.pt")["step"] == 2

    (root / VALID).write_bytes(good)
    resumed = train(compose_config(overrides=[*overrides(run, root), "trainer.resume=true"]))
    whole = train(compose_config(overrides=overrides(tmp_path / "whole", root)))
    # The step-2 validation the file broke runs first, so the history is the whole run's.
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in whole["history"]]
    assert resumed["history"][-1]["opa"] == whole["history"][-1]["opa"]
    a, b = (load_checkpoint(r["checkpoints"]["last"])["model"] for r in (resumed, whole))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_file_broken_before_any_step_saves_nothing(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(sample_root(), root)
    break_valid_file(root)
    over = [*overrides(tmp_path / "run", root), "trainer.val_at_start=true"]
    with pytest.raises(
        RunDataError, match=r"Bad CRC-32 for file 'node_config_feat.npy'\)$"
    ) as info:
        train(compose_config(overrides=over))
    assert info.value.checkpoint is None and "saved" not in str(info.value)
    assert not (tmp_path / "run/checkpoints/last.pt").exists()


def test_a_diverged_run_ends_in_one_line_saying_what_to_change(tmp_path, monkeypatch, capsys):
    over = [*tiny_overrides(tmp_path / "run", steps=4), "optim.lr=1e30", "trainer.grad_clip=null"]
    code, _, err = train_cli(monkeypatch, capsys, *over)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err
    assert line.startswith("error: non-finite training loss at step ")
    assert "the run diverged at learning rate 1e+30; lower optim.lr or clip the gradients" in line
