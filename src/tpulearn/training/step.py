"""One training step, callable on its own (the trainer's loop and benchmarks run the same
code): forward per graph, mean loss, one backward per graph, clipping, optimizer step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

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


def train_step(
    runner: torch.nn.Module,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    graphs: Sequence[tuple],
    device: torch.device | str,
    precision: str = "fp32",
    grad_clip: float | None = None,
    world: World | None = None,
) -> tuple[float, int]:
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
        The step's loss (the mean over the global batch; it may be non-finite) and the
        configs scored by all processes.
    """
    world, device = world or World(), torch.device(device)
    runner.train()
    optimizer.zero_grad(set_to_none=True)
    total, configs = 0.0, 0
    ddp = isinstance(runner, torch.nn.parallel.DistributedDataParallel)
    for i, (data, num_configs) in enumerate(graphs):
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
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(runner.parameters(), grad_clip)
    optimizer.step()
    total, configs = dist_utils.all_sum([total, configs], world, device)
    return total / world.size, int(configs)
