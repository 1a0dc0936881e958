"""What a run shows while it trains: a progress bar or periodic loss lines, validation
lines, TensorBoard scalars and peak memory; only rank 0 shows or writes anything."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from .distributed import World


class NullWriter:
    """Stands in for the SummaryWriter on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressLog:
    """The progress of one ``fit``.

    Args:
        out_dir: run folder; TensorBoard events go to ``<out_dir>/tensorboard``.
        world: this process (rank 0 shows and writes, the others stay silent).
        max_steps: the run's last step.
        first_step: the step the run starts from, that of its checkpoint (events after
            it, logged by the interrupted run after its last checkpoint, are dropped).
        bar: a tqdm bar (True) or a loss line every ``log_every`` steps (False).
        log_every: steps between loss lines.
        device: the training device (its peak memory is logged on CUDA).
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
    ):
        self.world, self.max_steps, self.device = world, max_steps, torch.device(device)
        self.show_bar, self.log_every = bar, log_every
        # TensorBoard hides earlier events at steps >= purge_step; those of first_step
        # itself (its loss, its validation) are in the checkpoint and stay.
        purge = first_step + 1 if first_step else None
        self.writer = (
            SummaryWriter(str(out_dir / "tensorboard"), purge_step=purge)
            if world.main
            else NullWriter()
        )
        self.bar = tqdm(
            total=max_steps, initial=first_step, desc="train", disable=not (bar and world.main)
        )
        self.seen, self.t0 = 0, time.perf_counter()

    def step(self, step: int, loss: float, lr: float, configs: int) -> None:
        """Log the step just finished: its loss, learning rate and the configs it scored."""
        self.seen += configs
        rate = self.seen / max(time.perf_counter() - self.t0, 1e-9)
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.writer.add_scalar("train/configs_per_s", rate, step)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", cfg_s=f"{rate:.0f}")
        if self.world.main and not self.show_bar and step % self.log_every == 0:
            print(f"step {step}/{self.max_steps} loss {loss:.4f} {rate:.0f} configs/s", flush=True)

    def validation(self, step: int, metrics: dict) -> None:
        if self.world.main:
            print(f"valid step {step}: " + fmt(metrics), flush=True)
        for k, v in metrics.items():
            self.writer.add_scalar(f"valid/{k}", v, step)
        self.writer.add_scalar("memory/max_rss_mb", max_rss_mb(), step)
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
            self.writer.add_scalar("memory/cuda_max_mb", peak, step)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


def wants_bar(progress: str | bool) -> bool:
    """``trainer.progress``: ``"auto"`` draws the bar only when stderr (where tqdm draws) is
    a terminal, so a log file or a Slurm output gets lines instead of bar redraws.

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
    raise ValueError(f"trainer.progress must be auto, true or false, got {progress!r}")


def fmt(metrics: dict) -> str:
    """``name value`` pairs of a metrics dict, floats to 4 decimals."""
    return " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
    )


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
