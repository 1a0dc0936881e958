"""What a run shows while it trains: a progress bar or periodic step lines (loss, the
batches' Kendall tau and OPA, gradient norm, time per step and an ETA), validation lines,
TensorBoard scalars, the config and peak memory; only rank 0 shows or writes anything."""

from __future__ import annotations

import math
import resource
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import events
from .budget import Cadence, Deadline
from .distributed import World
from .step import StepStats


class ProgressLog:
    """The progress of one ``fit``.

    A step line reports the means over the steps since the previous line (the window):
    loss, the training batches' Kendall tau and OPA, gradient norm and seconds per step;
    the ETA adds the validations still due, each as long as the last one, and ends no later
    than a time limit allows.

    Args:
        out_dir: run folder; TensorBoard events go to ``<out_dir>/tensorboard``.
        world: this process (rank 0 shows and writes, the others stay silent).
        max_steps: the run's last step.
        first_step: the step the run starts from, that of its checkpoint (events after
            it, logged by the interrupted run after its last checkpoint, are dropped).
        bar: a tqdm bar (True) or a step line every ``log_every`` steps (False).
        log_every: steps between step lines (the last step has one too).
        device: the training device (its peak memory is logged on CUDA).
        val_every: steps between validations, or the run's
            :class:`~.budget.Cadence` (for the ETA; None: not counted).
        config: the resolved config, written to TensorBoard as text and hparams by a run
            that starts at step 0.
        deadline: the run's :class:`~.budget.Deadline` (``trainer.max_time``): the ETA is
            at most the time left, plus the step and validation that end the run.
    """

    def __init__(
        self,
        out_dir: Path,
        world: World,
        max_steps: int,
        first_step: int = 0,
        bar: bool = False,
        log_every: int = 10,
        device: torch.device | str = "cpu",
        val_every: int | Cadence | None = None,
        config: dict | None = None,
        deadline: Deadline | None = None,
    ):
        self.deadline = deadline
        self.world, self.max_steps, self.device = world, max_steps, torch.device(device)
        self.show_bar, self.log_every = bar, log_every
        self.cadence = Cadence.of(val_every) if isinstance(val_every, int) and val_every else None
        if isinstance(val_every, Cadence):
            self.cadence = val_every
        # TensorBoard hides earlier events at steps >= purge_step; those of first_step
        # itself (its loss, its validation) are in the checkpoint and stay.
        purge = first_step + 1 if first_step else None
        self.writer = events.open_writer(out_dir, world.main, purge)
        # A resumed run's events already hold its config (written at step 0).
        self.config = config if first_step == 0 and config else None
        if self.config is not None:
            events.write_config(self.writer, self.config)
        self.bar = tqdm(
            total=max_steps, initial=first_step, desc="train", disable=not (bar and world.main)
        )
        self.window: list[tuple[StepStats, float]] = []
        self.val_seconds = 0.0

    def step(self, step: int, stats: StepStats, lr: float, seconds: float) -> None:
        """Log the step just finished: what :func:`~.step.train_step` returned, the
        learning rate and the step's wall time (reading its graphs included)."""
        scalars = {
            "train/loss": stats.loss,
            "train/lr": lr,
            # Of the step alone: validations and checkpoints do not lower it.
            "train/configs_per_s": stats.configs / max(seconds, 1e-9),
            "train/grad_norm": stats.grad_norm,
            "train/step_s": seconds,
            "train/kendall_tau": stats.kendall_tau,
            "train/opa": stats.opa,
        }
        for tag, value in scalars.items():
            if not math.isnan(value):
                self.writer.add_scalar(tag, value, step)
        self.window.append((stats, seconds))
        means = self.means()
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{means['loss']:.4f}", tau=f"{means['tau']:.3f}")
        if step % self.log_every == 0 or step == self.max_steps:
            self.line(step)

    def means(self) -> dict:
        """Means over the window; tau and OPA over the steps where they are defined."""

        def mean(values):
            values = [v for v in values if not math.isnan(v)]
            return sum(values) / len(values) if values else math.nan

        stats = [s for s, _ in self.window]
        return {
            "loss": mean(s.loss for s in stats),
            "tau": mean(s.kendall_tau for s in stats),
            "opa": mean(s.opa for s in stats),
            "grad": mean(s.grad_norm for s in stats),
            "seconds": mean(t for _, t in self.window),
            "configs_per_s": sum(s.configs for s in stats)
            / max(sum(t for _, t in self.window), 1e-9),
        }

    def line(self, step: int) -> None:
        """Print the window's step line (not under a bar) and start a new window."""
        if not self.window:
            return
        m = self.means()
        eta = (self.max_steps - step) * m["seconds"] + self.validations_after(step) * (
            self.val_seconds
        )
        if self.deadline is not None and self.deadline.seconds is not None:
            left = max(self.deadline.seconds - self.deadline.elapsed(), 0.0)
            eta = min(eta, left + m["seconds"] + self.val_seconds)
        self.window = []
        if self.show_bar:
            return
        self.write(
            f"step {step}/{self.max_steps} loss {m['loss']:.4f} tau {m['tau']:.4f} "
            f"opa {m['opa']:.4f} grad_norm {m['grad']:.3g} | {m['seconds']:.2f} s/step "
            f"{m['configs_per_s']:.0f} configs/s eta {duration(eta)}"
        )

    def validations_after(self, step: int) -> int:
        """Validations still due once ``step`` is done: those of the cadence and the
        last, ``step``'s own included (a line comes before its step's validation)."""
        if not self.cadence:
            return 0
        due = self.cadence.count(step - 1, self.max_steps)
        return due + (not self.cadence.due(self.max_steps))

    def validation(self, step: int, metrics: dict, seconds: float = 0.0) -> None:
        """Log a validation at ``step`` (0: the untrained model) that took ``seconds``."""
        self.line(step)  # the steps before it, when the last line did not cover them
        self.val_seconds = seconds
        what = "untrained model, " if step == 0 else ""
        self.write(f"valid step {step} ({what}{seconds:.1f} s): " + fmt(metrics))
        tags = events.valid_tags(metrics)
        for k, tag in tags.items():
            self.writer.add_scalar(tag, metrics[k], step)
        if self.config is not None and self.world.main:
            events.write_hparams(self.writer, self.config, [*tags.values(), "train/loss"])
            self.config = None  # once: the tab shows the latest value of each metric
        self.writer.add_scalar("memory/max_rss_mb", max_rss_mb(), step)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
            self.writer.add_scalar("memory/cuda_max_mb", peak, step)

    def write(self, line: str) -> None:
        """Print a line on rank 0 (above the bar, when there is one)."""
        if not self.world.main:
            return
        if self.show_bar:
            tqdm.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


def duration(seconds: float) -> str:
    """``45s``, ``3m20s``, ``2h05m``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def wants_bar(progress: str | bool, name: str = "trainer.progress") -> bool:
    """``trainer.progress`` (``evaluate.py``'s ``progress``, named by ``name``): ``"auto"``
    draws the bar only when stderr (where tqdm draws) is a terminal, so a log file or a
    Slurm output gets lines instead of bar redraws.

    Raises:
        ValueError: a value other than auto, true or false.
    """
    if isinstance(progress, bool):
        return progress
    # A string from the command line or code: bool("false") would be True.
    value = str(progress).strip().lower()
    if value == "auto":
        return sys.stderr.isatty()
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"{name} must be auto, true or false, got {progress!r}")


def fmt(metrics: dict) -> str:
    """``name value`` pairs of a metrics dict, floats to 4 decimals."""
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MB: ``VmHWM`` where ``/proc`` has
    it (Linux), else ``ru_maxrss``. A process started by a larger one (a script that runs
    ``train.py``) carries that one's peak into ``ru_maxrss`` through exec; ``VmHWM`` counts
    only its own memory."""
    try:
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, kB here
