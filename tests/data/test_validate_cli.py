"""``python -m tpulearn.data ROOT``: one pass names every broken file of a data root."""

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tpulearn.data import sample_root
from tpulearn.data.__main__ import main, summarise
from tpulearn.data.schema import TpuGraphsFormatError

SPLIT = "npz/layout/xla/default/train"


@pytest.fixture
def root(tmp_path):
    """The sample's layout:xla:default train graph, a copy whose runtimes miss one config,
    and a file cut short."""
    folder = tmp_path / SPLIT
    folder.mkdir(parents=True)
    (good,) = sorted((sample_root() / SPLIT).glob("*.npz"))
    shutil.copy(good, folder / "a_good.npz")
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["config_runtime"] = arrays["config_runtime"][:-1]
    np.savez(folder / "b_short_runtimes.npz", **arrays)
    (folder / "c_cut.npz").write_bytes(good.read_bytes()[:1000])
    return tmp_path


def test_every_broken_file_is_named_and_the_valid_ones_counted(root, capsys):
    assert main([str(root), "--no-progress"]) == 1
    out, err = capsys.readouterr()
    (line,) = [x for x in out.splitlines() if x.startswith("layout:xla:default")]
    assert line.split()[:4] == ["layout:xla:default", "train", "1", "graphs"]
    assert line.endswith("(2 invalid, left out)")
    problems = err.splitlines()
    assert len(problems) == 3 and problems[-1] == "2 invalid files"
    assert "b_short_runtimes.npz: key 'node_config_feat'" in problems[0]
    assert "c_cut.npz: expected an npz (zip) archive" in problems[1]
    assert "all files valid" not in out


def test_a_root_of_valid_files_passes(root, capsys):
    for broken in ("b_short_runtimes.npz", "c_cut.npz"):
        (root / SPLIT / broken).unlink()
    assert main([str(root), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == "all files valid" and err == ""


def test_summarise_without_a_problem_list_raises_on_the_first(root):
    with pytest.raises(TpuGraphsFormatError, match="b_short_runtimes.npz"):
        summarise(root, progress=False)


def test_a_missing_root_and_a_root_inside_npz_are_one_line_each(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--no-progress"]) == 1
    assert capsys.readouterr().err == f"error: data root {tmp_path / 'nope'} does not exist\n"
    inside = sample_root() / "npz" / "layout"
    assert main([str(inside), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {inside} is (or is inside) the dataset's npz/ folder")
    assert err.endswith(f"python -m tpulearn.data {sample_root()}\n")


@pytest.mark.parametrize("argv", [[], ["sample"]])
def test_the_bundled_sample_is_checked_by_default_or_named_as_data_root_names_it(argv, capsys):
    # "sample" once read as a folder of that name: "data root sample does not exist".
    assert main([*argv, "--no-progress"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"data root: {sample_root()} (bundled TpuGraphs sample)\n")
    assert out.rstrip().endswith("all files valid")


def test_a_reader_closing_stdout_early_ends_the_command_without_a_traceback(monkeypatch):
    # `python -m tpulearn.data ROOT | head -1` once ended in a BrokenPipeError traceback.
    from tpulearn import _pipes

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return 1

    redirected = []

    def dup2(fd, to):
        redirected.append(to)
        os.close(fd)

    # Only _pipes' view of os: pytest's own capture moves file descriptors with os.dup2.
    fake_os = SimpleNamespace(open=os.open, devnull=os.devnull, O_WRONLY=os.O_WRONLY, dup2=dup2)
    monkeypatch.setattr(_pipes, "os", fake_os)
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["sample", "--no-progress"]) == _pipes.CLOSED_PIPE == 141
    assert redirected == [1]  # stdout now points where the exit's flush cannot fail


@pytest.mark.slow
def test_the_command_behind_a_closed_pipe_exits_141_quietly():
    read, write = os.pipe()
    os.close(read)  # every write to the pipe fails, as after `| head` has exited
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tpulearn.data", "sample", "--no-progress"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""
