"""One training step, callable on its own (the trainer's loop and benchmarks run the same
code): forward per graph, mean loss, one backward per graph, clipping, optimizer step."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data.items import configs_alike
from ..metrics import kendall_tau, ordered_pair_accuracy
from ..segments import GSTTrainer, StepModule
from . import distributed as dist_utils
from .distributed import World
from .scoring import autocast


def step_runner(
    model: torch.nn.Module,
    gst: GSTTrainer | None = None,
    world: World | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> torch.nn.Module:
    """What a training step calls: ``runner(data, num_configs) -> scores [C]``, the model's
    forward (a GST step when ``gst`` is given), in DistributedDataParallel under torchrun.

    Args:
        model: the model, already on ``device``.
        gst: its GST state (:func:`tpulearn.segments.gst_trainer`), or None.
        world: this process (default: a one-process run).
        device: the training device.
        seed: the run's seed; processes other than rank 0 reseed their dropout with
            :func:`~tpulearn.training.distributed.rank_seed`.
    """
    runner = StepModule(model, gst)
    world, device = world or World(), torch.device(device)
    if not world.distributed:
        return runner
    runner = torch.nn.parallel.DistributedDataParallel(
        runner,
        device_ids=[device.index] if device.type == "cuda" else None,
        # A step may leave parameters unused (e.g. a GST segment without
        # configurable nodes never reaches the config encoder).
        find_unused_parameters=True,
    )
    # Same initial weights everywhere (DDP broadcast them); own dropout streams.
    if world.rank:
        torch.manual_seed(dist_utils.rank_seed(seed, world.rank))
    return runner


@dataclass
class StepStats:
    """What one step did, over the global batch.

    Attributes:
        loss: the mean loss over graphs (it may be non-finite).
        configs: configs scored by all processes.
        grad_norm: the total gradient norm before clipping.
        kendall_tau, opa: means over the batch's graphs of the Kendall tau and ordered
            pair accuracy of the step's scores (computed before the optimizer step); NaN
            when no graph has them defined (all runtimes equal, or non-finite scores).
        rankable: the batch's graphs whose scores have an order to learn: two sampled
            configs of different runtimes, and configs with different config features (a
            graph measuring one config over and over has only the measurements' noise).
    """

    loss: float
    configs: int
    grad_norm: float = math.nan
    kendall_tau: float = math.nan
    opa: float = math.nan
    rankable: int = 0


def rank_metrics(scores: torch.Tensor, runtime: torch.Tensor) -> tuple[float, float]:
    """(Kendall tau, OPA) of one graph's scores; NaN where undefined or not finite, and a
    tau of 0 for constant scores, as the validation's Evaluator gives them."""
    scores = scores.detach().float().cpu()
    if scores.numel() < 2 or not torch.isfinite(scores).all():
        return math.nan, math.nan
    tau, opa = kendall_tau(scores, runtime), ordered_pair_accuracy(scores, runtime)
    return (0.0 if math.isnan(tau) and not math.isnan(opa) else tau), opa


def train_step(
    runner: torch.nn.Module,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    graphs: Sequence[tuple],
    device: torch.device | str,
    precision: str = "fp32",
    grad_clip: float | None = None,
    world: World | None = None,
) -> StepStats:
    """One optimizer step over this process's graphs.

    Under DDP gradients are averaged over processes once, after the last graph; every
    process holds the same number of graphs, so the result equals one process training
    on the whole batch.

    Args:
        runner: :func:`step_runner`'s module.
        loss_fn: ``loss_fn(scores [1, C], runtime [1, C]) -> scalar``.
        optimizer: the optimizer (its gradients are zeroed first).
        graphs: ``(data, num_configs)`` pairs: a graph with its sampled configs, and the
            configs in its file (rows of its GST history).
        device: where the graphs go.
        precision: ``"fp32"`` or ``"bf16"`` (autocast).
        grad_clip: max gradient norm (None or 0: no clipping).
        world: this process (default: a one-process run).

    Returns:
        The step's :class:`StepStats`: its loss (the mean over the global batch), configs,
        gradient norm and the rank metrics of its scores.
    """
    world, device = world or World(), torch.device(device)
    runner.train()
    optimizer.zero_grad(set_to_none=True)
    total, configs = 0.0, 0
    # Sums and counts of the graphs' tau and OPA (summed over processes like the loss).
    ranks = [0.0, 0, 0.0, 0]
    rankable = 0
    ddp = isinstance(runner, torch.nn.parallel.DistributedDataParallel)
    for i, (data, num_configs) in enumerate(graphs):
        alike = configs_alike(data)  # before the move: a device would sync on it
        data = data.to(device)
        last = i == len(graphs) - 1
        sync = runner.no_sync() if ddp and not last else contextlib.nullcontext()
        with sync:
            with autocast(device, precision):
                # GST: one segment carries the gradient, the rest come from the table.
                scores = runner(data, num_configs)
            loss = loss_fn(scores.float()[None], data.config_runtime[None]) / len(graphs)
            loss.backward()
        total += loss.item()
        configs += data.config_runtime.numel()
        metrics = rank_metrics(scores, data.config_runtime)
        for j, value in enumerate(metrics):
            if not math.isnan(value):
                ranks[2 * j] += value
                ranks[2 * j + 1] += 1
        rankable += not (alike or math.isnan(metrics[1]))
    # The norm before clipping: what clipping reacts to, and what shows a diverging run.
    params = [p for p in runner.parameters() if p.grad is not None]
    if grad_clip:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    optimizer.step()
    total, configs, rankable, *ranks = dist_utils.all_sum(
        [total, configs, rankable, *ranks], world, device
    )
    return StepStats(
        loss=total / world.size,
        configs=int(configs),
        grad_norm=norm.item(),
        kendall_tau=ranks[0] / ranks[1] if ranks[1] else math.nan,
        opa=ranks[2] / ranks[3] if ranks[3] else math.nan,
        rankable=int(rankable),
    )
