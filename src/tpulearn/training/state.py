"""What a run carries from step to step and across restarts: :class:`RunState`, written to
and restored from checkpoints by every process together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..segments import GSTTrainer, load_gst_state, merge_gst_states
from . import distributed as dist_utils
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import World

# Metrics where a larger value is better; the rest (errors) are minimised.
MAXIMISED = ("kendall_tau", "opa", "score")


def better(new: float, old: float, metric: str) -> bool:
    """Whether ``new`` improves on ``old`` for ``metric``."""
    return new > old if metric in MAXIMISED else new < old


@dataclass
class RunState:
    """What one ``fit`` carries from step to step (and into checkpoints).

    Attributes:
        model, optimizer, scheduler: what trains (the scheduler may be None).
        data: the :class:`~tpulearn.training.data.CollectionData` (its feature statistics
            go into checkpoints).
        config: the resolved config, stored in checkpoints.
        gst: this process's GST state, or None for a model trained by its own forward.
        step: optimizer steps done.
        best: the best validation so far (with its ``step``).
        history: every validation.
        bad: validations since the last improvement.
        max_steps: the run's step budget (derived from ``trainer.max_epochs`` or not),
            saved in checkpoints: the leaderboard's reuse check reads it to tell a
            finished run from an interrupted one.
        saved_max_steps: that of the checkpoint the run resumed from (None: a fresh run,
            or a checkpoint older than the key).
        ema: the exponential moving average of the weights (``trainer.ema_decay``), or
            None. When set it is what validation scores and what checkpoints hand to
            readers (their ``model``); the trained weights travel as ``train_model``.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    data: object
    config: dict
    gst: GSTTrainer | None = None
    step: int = 0
    best: dict | None = None
    history: list = field(default_factory=list)
    bad: int = 0
    max_steps: int | None = None
    saved_max_steps: int | None = None
    ema: torch.optim.swa_utils.AveragedModel | None = None

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights validation scores and checkpoints hand out: the average, if any."""
        return self.ema.module if self.ema is not None else self.model

    def record(self, step: int, loss: float | None, metrics: dict, metric: str) -> bool:
        """Add a validation; True when it is the best so far on ``metric``.

        The step-0 validation (the untrained model, ``loss`` None: no step has run) is the
        best only until the first validation of a trained model, whatever its value, and
        counts for no ``patience``: it is the baseline, not a candidate.
        """
        self.history.append({"step": step, "loss": loss, **metrics})
        if step == 0:
            self.best = self.best or {"step": 0, **metrics}
            return False
        improved = (
            self.best is None
            or self.best["step"] == 0
            or better(metrics[metric], self.best[metric], metric)
        )
        if improved:
            self.best, self.bad = {"step": step, **metrics}, 0
        else:
            self.bad += 1
        return improved


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run: where it was and where it can continue from.

    Attributes:
        step: optimizer steps done.
        checkpoint: the ``last.pt`` to resume from.
        saved: whether ``checkpoint`` was written at ``step`` (False under torchrun, where
            it holds the last validation).
    """

    def __init__(self, step: int, checkpoint: Path, saved: bool):
        self.step, self.checkpoint, self.saved = step, checkpoint, saved
        where = "saved" if saved else "last validation in"
        super().__init__(f"interrupted at step {step}; {where} {checkpoint}")


class RunDataError(ValueError):
    """A data file broke a run after it had trained: where its steps were saved.

    Attributes:
        step: optimizer steps done.
        checkpoint: the ``last.pt`` holding them (None: nothing new to save, or under
            torchrun, where no process saves alone).
    """

    def __init__(self, cause: Exception, step: int, checkpoint: Path | None):
        self.step, self.checkpoint = step, checkpoint
        saved = ""
        if checkpoint is not None:
            saved = (
                f"; the {step} steps trained are saved in {checkpoint}: mend or replace the "
                "file, then resume the run (trainer.resume=true)"
            )
        super().__init__(f"{cause}{saved}")


def resume_path(resume: bool | str, out_dir: Path) -> Path | None:
    """The checkpoint ``trainer.resume`` names: ``true`` the run folder's ``last.pt``, a
    checkpoint file that checkpoint, another run's folder (or its ``checkpoints/``) its
    ``last.pt``, ``false`` none.

    Raises:
        FileNotFoundError: naming ``trainer.resume``, for a path that is neither.
    """
    if resume is True or resume == "true":
        return out_dir / "checkpoints" / "last.pt"
    if not resume:
        return None
    path = Path(resume)
    if path.is_dir():
        for candidate in (path / "checkpoints" / "last.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
    if not path.is_file():
        what = "a folder without checkpoints/last.pt" if path.is_dir() else "no such file"
        raise FileNotFoundError(
            f"trainer.resume={resume}: {what}; expected true (the run in hydra.run.dir), auto, "
            "false, a checkpoint file or a run folder"
        )
    return path


def owned_stems(stems: list[str], world: World, shards: int) -> set[str] | None:
    """The graphs whose GST history this process keeps: those it owns under torchrun,
    None (all) in a one-process run."""
    if not world.distributed:
        return None
    return {stems[i] for i in dist_utils.owned(len(stems), world.rank, shards)}


def restore(run: RunState, path, world: World, stems: set[str] | None = None) -> dict:
    """Continue from a checkpoint: weights, optimizer, scheduler, RNGs, GST history; return
    the config the checkpoint's run was made with (``{}`` where it holds none).

    Args:
        run: the fresh run state to fill.
        path: the checkpoint.
        world: this process; each takes its own RNG state when the saved run had as many.
        stems: the graphs whose GST history this process keeps (None: all).
    """
    state = load_checkpoint(path, run.config.get("model"))
    # With an average the trained weights are `train_model` and `model` is the average.
    run.model.load_state_dict(state["train_model" if "train_model" in state else "model"])
    if run.ema is not None:
        run.ema.module.load_state_dict(state["model"])
        # A checkpoint without an average: it starts as a copy of the resumed weights.
        run.ema.n_averaged.fill_(state.get("ema_averaged") or 1)
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None and state.get("scheduler"):
        run.scheduler.load_state_dict(state["scheduler"])
    per_rank = state.get("rng_ranks") or [state["rng"]]
    set_rng_state(per_rank[world.rank] if len(per_rank) == world.size else state["rng"])
    if run.gst is not None and state.get("gst"):
        load_gst_state(run.gst, state["gst"], world.rank, world.size, stems)
    run.step, run.best, run.history, run.bad = (
        state["step"],
        state["best"],
        state["history"],
        state["bad"],
    )
    run.saved_max_steps = state.get("max_steps")
    return state.get("config") or {}


def save(run: RunState, path: Path, world: World) -> None:
    """Checkpoint at ``run.step``: collectives first (every rank takes part), then rank 0
    writes, with every rank's RNG state and history entries."""
    gst_states = dist_utils.all_gather(run.gst.state_dict() if run.gst is not None else None, world)
    rngs = dist_utils.all_gather(rng_state(), world)
    if not world.main:
        return
    scheduler = run.scheduler
    save_checkpoint(
        path,
        {
            "model": run.eval_model.state_dict(),
            **(
                {"train_model": run.model.state_dict(), "ema_averaged": int(run.ema.n_averaged)}
                if run.ema is not None
                else {}
            ),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rngs[0],
            "rng_ranks": rngs if world.distributed else None,
            "step": run.step,
            "best": run.best,
            "history": run.history,
            "bad": run.bad,
            "max_steps": run.max_steps,
            **run.data.feature_state(),
            "gst": merge_gst_states(gst_states) if run.gst else None,
            "config": run.config,
        },
    )
