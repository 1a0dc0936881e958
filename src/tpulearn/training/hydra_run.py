"""The run folder of ``train.py`` under Hydra: its record and its log appear only once the
run has passed its checks, and Ctrl-C ends in one line saying how to continue.

Hydra creates the run folder, writes ``.hydra/`` and opens the job log before the task
function runs, so a run refused later (a folder holding another run, a checkpoint of
another model, a wrong data root) would still leave its config over the old run's.
``configs/config.yaml`` therefore turns Hydra's record off (``hydra.output_subdir: null``)
and delays its log file; :class:`RunFolder` writes ``.hydra/`` and starts
``<job name>.log`` when the trainer calls ``on_start``, and removes a folder the refused
run created. :class:`FolderCallback` tells it whether the folder was there before.
"""

from __future__ import annotations

import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .state import RunInterrupted

# For each single run's folder, the topmost folder Hydra creates for it (``outputs/<date>``
# for a run the first of its day), or None when it existed (FolderCallback).
_CREATED: dict[str, Path | None] = {}

# Overrides a resume command replaces.
_RUN_KEYS = ("trainer.resume", "trainer.overwrite", "hydra.run.dir")


class FolderCallback(Callback):
    """Records which folders Hydra is about to create for a single run."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        problem = _unusable(folder, missing)
        if problem:  # else Hydra fails creating it, in a traceback
            print(f"error: hydra.run.dir={shown(folder)}: {problem}", file=sys.stderr)
            raise SystemExit(2)
        _CREATED[str(folder)] = missing[-1] if missing else None


def _unusable(folder: Path, missing: list[Path]) -> str | None:
    """Why ``folder`` cannot be the run folder (None: it can): a file on its path, or a
    folder (it, or the one to create it in) that cannot be written to. ``missing``: its
    absent ancestors, innermost first."""
    existing = missing[-1].parent if missing else folder
    if not existing.is_dir():
        return f"{shown(existing)} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{shown(existing)} cannot be written to (no permission)"
    return None


class Tee:
    """A text stream that also hands what it writes to ``sink``, but progress-bar redraws."""

    def __init__(self, stream, sink):
        self.stream, self.sink = stream, sink

    def write(self, text: str) -> int:
        written = self.stream.write(text)
        if "\r" not in text:  # a bar redraws its line in place; the log keeps whole lines
            self.sink(text)
        return written

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding: those of the terminal
        return getattr(self.stream, name)


class RunFolder:
    """The Hydra run folder of one ``train.py`` job (call inside the Hydra task function).

    Args:
        cfg: the job's config, recorded in ``.hydra/config.yaml``.
    """

    def __init__(self, cfg: DictConfig):
        hydra = HydraConfig.get()
        self.cfg, self.path = cfg, Path(hydra.runtime.output_dir)
        self.log_path = self.path / f"{hydra.job.name}.log"
        if str(self.path) in _CREATED:
            self.created = _CREATED[str(self.path)]
        else:  # a multirun job's folder is not recorded: one Hydra just made is empty
            self.created = None if any(self.path.iterdir()) else self.path
        self.pending: list[str] = []
        self.log = None

    def claim(self, out_dir: Path | None = None) -> None:
        """The run is under way: write Hydra's record and start the log (with what the
        run printed so far). ``out_dir`` is the trainer's (unused: Hydra's folder counts)."""
        self.path.mkdir(parents=True, exist_ok=True)
        hydra = HydraConfig.get()
        if hydra.output_subdir is None:  # else Hydra wrote it already
            record = self.path / ".hydra"
            record.mkdir(exist_ok=True)
            (record / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg))
            (record / "hydra.yaml").write_text(OmegaConf.to_yaml(HydraConfig.instance().cfg))
            (record / "overrides.yaml").write_text(OmegaConf.to_yaml(hydra.overrides.task))
        # Open for the rest of the run (tee() closes it). A resumed run appends; a new one
        # (trainer.overwrite has removed the old checkpoints by now) starts the log afresh.
        resumed = (self.path / "checkpoints" / "last.pt").is_file()
        self.log = open(self.log_path, "a" if resumed else "w", encoding="utf-8")  # noqa: SIM115
        self.write("".join(self.pending))
        self.pending = []

    def write(self, text: str) -> None:
        if self.log is None:
            self.pending.append(text)
        else:
            self.log.write(text)
            self.log.flush()

    @contextmanager
    def tee(self):
        """Copy stdout and stderr into the log while the run runs; on leaving, close the
        log, or, for a run that never started, remove the folder it created (if empty)."""
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, self.write), Tee(err, self.write)
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = out, err
            if self.log is not None:
                self.log.close()
            elif self.created is not None:
                self._remove_created()

    def _remove_created(self) -> None:
        """Remove the folders Hydra created for a run that never started, if still empty."""
        for folder in (self.path, *self.path.parents):
            if not folder.is_dir() or any(folder.iterdir()):
                return
            folder.rmdir()
            if folder == self.created:
                return

    def resume_command(self) -> str:
        """The command line that continues this run in its folder."""
        hydra = HydraConfig.get()
        keep = [o for o in hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") not in _RUN_KEYS]
        keep.append("trainer.resume=true")
        if not any(o.split("=", 1)[0].lstrip("+~") == "out_dir" for o in keep):
            keep.append(f"hydra.run.dir={shown(self.path)}")
        return " ".join([program(), *map(shlex.quote, keep)])

    def interrupted(self, exc: KeyboardInterrupt) -> str:
        """The one line a Ctrl-C ends with."""
        if not isinstance(exc, RunInterrupted):
            return "interrupted before training started; nothing saved"
        where = "saved" if exc.saved else "last checkpoint (last validation)"
        return (
            f"interrupted at step {exc.step}; {where} {shown(exc.checkpoint)}; "
            f"resume with: {self.resume_command()}"
        )


def program() -> str:
    """How this process was started: ``python train.py``, a console script, or torchrun."""
    script = sys.argv[0]
    name = script if script.endswith(".py") else Path(script).name
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1:
        return f"torchrun --nproc_per_node={size} {name}"
    return f"python {name}" if name.endswith(".py") else name


def shown(path: Path) -> str:
    """``path`` relative to the working directory when under it (shorter to copy)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
