"""Every ``python train.py`` and ``python evaluate.py`` command the README shows, and the
command atop each experiment config, composes: each override parses and names a key or
choice the configs have (a command copied from the docs must not stop at "Could not
override" or at the override grammar). Composition only: nothing trains, no file is read."""

import os
import re
import shlex
from pathlib import Path

import pytest
from tiny_runs import CONFIG_DIR, compose_config

README = Path(__file__).resolve().parents[1] / "README.md"
SCRIPTS = {"train.py": "config", "evaluate.py": "eval"}


# The README's placeholders (`data.root=DIR`, `trainer.seed=S`, `outputs/<date>/<time>`).
PLACEHOLDERS = {"DIR": "/tmp/tpugraphs", "S": "0", "K": "3"}


def readme_commands(text: str) -> list[str]:
    """The README's train.py / evaluate.py command lines: the shell lines of its code
    blocks (continuation lines joined, comments dropped, from ``python`` or ``torchrun`` on,
    up to a ``&&``) and whole commands in its inline code."""
    commands = []
    start = r"(?:python|torchrun\b[^#]*?) (?:train|evaluate)\.py\b[^&#]*"
    for block in re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            commands += [c.strip() for c in re.findall(start, line.split(" # ")[0])]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [
        " ".join(c.split()) for c in re.findall(r"`(python (?:train|evaluate)\.py[^`]*)`", prose)
    ]
    return sorted(set(commands))


def overrides_of(command: str) -> tuple[str, list[str]]:
    """The config a command composes and its overrides as the shell passes them
    (``$HOME`` expanded, a ``~`` after ``=`` not): the first value of a sweep, an optional
    ``[key=value]`` given, placeholders filled, without ``hydra.*`` keys or launcher
    (Hydra's own, not the project's), flags and elisions (``...``)."""
    words = [os.path.expandvars(w) for w in shlex.split(command)]
    script = next(w for w in words if w in SCRIPTS)
    overrides = []
    for word in words[words.index(script) + 1 :]:
        if word.startswith("-") or word in ("job", "..."):  # -m, --cfg job
            continue
        word = re.sub(r"<[a-z]+>", "x", word)
        if word.startswith("[") and word.endswith("]") and "=" in word:
            word = word[1:-1]
        key, _, value = word.partition("=")
        if key.startswith(("hydra.", "hydra/")):
            continue
        if "," in value and not value.startswith("["):
            value = value.split(",")[0]
        overrides.append(f"{key}={PLACEHOLDERS.get(value, value)}")
    return SCRIPTS[script], overrides


def experiment_commands() -> list[str]:
    """The usage lines in the comments of configs/experiment/*.yaml."""
    commands = []
    for path in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
        for line in path.read_text().splitlines():
            found = re.match(r"#\s+(python train\.py\b.*?)(\s+#.*)?$", line)
            if found:
                commands.append(found.group(1))
    return commands


COMMANDS = readme_commands(README.read_text())
EXPERIMENT_COMMANDS = experiment_commands()


def test_the_readme_shows_commands_of_both_scripts():
    scripts = {overrides_of(c)[0] for c in COMMANDS}
    assert scripts == {"config", "eval"}
    assert len(COMMANDS) >= 20, COMMANDS


def test_each_paper_experiment_shows_its_command():
    shown = " ".join(EXPERIMENT_COMMANDS)
    for name in (
        "tile_xla",
        *(f"layout_{s}_{c}" for s in ("xla", "nlp") for c in ("default", "random")),
    ):
        assert f"experiment={name} " in shown


@pytest.mark.parametrize("command", sorted(set(COMMANDS + EXPERIMENT_COMMANDS)))
def test_a_readme_command_composes(command):
    name, overrides = overrides_of(command)
    compose_config(name, overrides)  # raises on a key or a config choice the configs lack
