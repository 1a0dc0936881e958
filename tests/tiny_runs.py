"""Shared by the tests that train or run scripts: composing a config, the overrides of a
tiny run, train.py's and evaluate.py's command lines in-process, and a script of scripts/
as a module."""

import importlib.util
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

import tpulearn
from tpulearn.cli import evaluate_main, train_main

CONFIG_DIR = Path(tpulearn.__file__).parent / "configs"
SMALL_MODEL = ["model.hidden_channels=8", "model.num_layers=1", "model.opcode_dim=4"]


def compose_config(name: str = "config", overrides=(), **kwargs):
    """The package's config ``name`` composed with Hydra overrides."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=list(overrides), **kwargs)


def tiny_overrides(out_dir, steps: int = 2) -> list[str]:
    """A run of ``steps`` steps of a one-layer, 8-wide model, validated at the end only
    (not at step 0 as train.py does by default: a test of that validation asks for it)."""
    return [
        f"out_dir={out_dir}",
        f"trainer.max_steps={steps}",
        f"trainer.val_every={steps}",
        "trainer.val_at_start=false",
        "data.configs_per_graph=8",
        "trainer.progress=false",
        "data.eval_chunk=512",
        *SMALL_MODEL,
    ]


def _cli(main, argv, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", argv)
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def train_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``python train.py ARGS`` in this process: (exit code, stdout, stderr). The script
    as a process is tested apart (tests/training/test_train_script.py, marked slow)."""
    return _cli(train_main, ["train.py", *args], monkeypatch, capsys)


def evaluate_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``python evaluate.py ARGS`` in this process: (exit code, stdout, stderr)."""
    return _cli(evaluate_main, ["evaluate.py", *args], monkeypatch, capsys)


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (its ``main`` is then callable)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
