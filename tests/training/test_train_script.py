"""``train.py`` in a run folder, end to end (processes, so marked slow): a refused run
leaves the folder exactly as it was, the log keeps what the run printed, Ctrl-C ends in
one line whose command resumes the run, and the scripts' user errors end the process in one
line (the same paths in-process, fast, are in test_train.py)."""

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_runs import SMALL_MODEL

import tpulearn
from tpulearn.training import load_checkpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The tpulearn under test, whatever the working directory of the process.
ENV = {**os.environ, "PYTHONPATH": str(Path(tpulearn.__file__).parents[1])}


def small(steps):
    return [
        f"trainer.max_steps={steps}",
        "trainer.val_every=2",
        "data.configs_per_graph=8",
        "data.eval_chunk=512",
        "trainer.progress=false",
        *SMALL_MODEL,
    ]


def script(*args, cwd=None, name="train.py"):
    return subprocess.run(
        [sys.executable, str(REPO / name), *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
    )


def files(folder):
    """Every path under ``folder`` with its bytes and modification time."""
    return {
        p.relative_to(folder): (p.read_bytes() if p.is_file() else None, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_refused_runs_leave_the_run_folder_as_it_was(tmp_path):
    run = tmp_path / "run"
    first = script(*small(2), f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout and (run / "train.log").read_text() == first.stdout
    before = files(run)

    again = script(*small(5), f"hydra.run.dir={run}")
    assert again.returncode == 2
    line = again.stderr.strip()
    assert line.count("\n") == 0 and str(run) in line
    assert "trainer.resume=true" in line and "trainer.overwrite=true" in line

    other = script(*small(4), "model=gcn", "trainer.resume=true", f"hydra.run.dir={run}")
    assert other.returncode == 2 and "another model" in other.stderr
    assert files(run) == before


def test_ctrl_c_is_one_line_whose_command_resumes_the_run(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *small(100000), "hydra.run.dir=run"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A process started in the background may inherit an ignored SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for printed in proc.stdout:
        if printed.startswith("valid step 2"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 130
    assert "Traceback" not in err and err.count("\n") == 1, err[-3000:]
    line = err.strip()
    step = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"]
    assert line.startswith(f"interrupted at step {step}; saved run/checkpoints/last.pt; ")
    command = shlex.split(line.split("resume with: ")[1])
    assert command[:2] == ["python", str(REPO / "train.py")]
    assert command[-2:] == ["trainer.resume=true", "hydra.run.dir=run"]

    args = [a if "max_steps" not in a else f"trainer.max_steps={step + 1}" for a in command[2:]]
    resumed = script(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {step} ({tmp_path / 'run'}" in resumed.stdout
    log = (tmp_path / "run" / "train.log").read_text()
    assert line in log and f"resumed from step {step}" in log


def test_user_errors_end_the_scripts_processes_in_one_line(tmp_path):
    bad_root = script("data=layout_xla_random", f"data.root={tmp_path / 'nope'}", cwd=tmp_path)
    assert bad_root.returncode == 2
    assert bad_root.stderr.startswith("error: data root") and bad_root.stderr.count("\n") == 1
    no_ckpt = script(name="evaluate.py", cwd=tmp_path)
    assert no_ckpt.returncode == 2
    assert no_ckpt.stderr == "error: ckpt is required: pass ckpt=...\n"
    assert list(tmp_path.iterdir()) == []  # neither left a folder behind
    helped = script("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "== Configuration groups ==" in helped.stdout
