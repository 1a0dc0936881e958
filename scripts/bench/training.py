"""Group ``training``: full training steps (forward, loss, backward, gradient clipping at
norm 1, Adam) on prepared graphs: configs/s and node-states/s, fp32 and bf16 autocast, on
every device. The cases are in :mod:`.training_cases`.

The step is the library's own, :func:`tpulearn.training.train_step` on
:func:`~tpulearn.training.step_runner`'s module, so the group times the step training runs.
Like training, it runs one forward and one backward per graph of a step (tile steps hold
10 graphs; gradients accumulate, the loss is their mean), reads each graph's loss back
with ``.item()`` (a device sync per graph), ranks tile runtimes without their
``config_runtime_normalizers``, and trains a segment model by GST through the run's
:func:`~tpulearn.segments.gst_trainer`.
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
from pathlib import Path

import torch

from .timing import devices, parameters, result, sync, timed
from .training_cases import training_cases

NAME = "training"
COLUMNS = [
    ("node-states/s", "node_states_per_s", "{:.4g}"),
    ("parameters", "parameters", "{:,}"),
]

STEPS, STEPS_QUICK = 10, 3
NODE_STATES = "node-states = graph nodes x configs per step"
GRAD_CLIP = 1.0


def training_step(runner, optimizer, graphs, loss_fn, device: str, bf16: bool) -> None:
    """One training step on ``graphs``: :func:`tpulearn.training.train_step`, then a CUDA
    sync so that a timer around it measures the step's work.

    Args:
        runner: :func:`tpulearn.training.step_runner`'s module for the trained model.
        optimizer: the optimizer over the model's parameters.
        graphs: the step's ``(data, num_configs)`` pairs, already on ``device``.
        loss_fn: ``loss_fn(scores [1, C], runtime [1, C])``.
        device: ``"cpu"`` or ``"cuda"`` (the autocast device type).
        bf16: run the forward pass under bf16 autocast.
    """
    from tpulearn.training import train_step

    precision = "bf16" if bf16 else "fp32"
    train_step(runner, loss_fn, optimizer, graphs, device, precision, grad_clip=GRAD_CLIP)
    sync(device)


def run(args) -> list[dict]:
    """Full training steps (:func:`tpulearn.training.train_step`: forward, loss, backward,
    gradient clipping, Adam) on prepared graphs: configs/s and node-states/s, fp32 and bf16
    autocast, on every device."""
    from tpulearn.segments import gst_trainer
    from tpulearn.training import step_runner

    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-train-") as tmp:
        for case in training_cases(Path(tmp)):
            first = case.steps[0]
            configs = sum(int(d.config_runtime.numel()) for d, _ in first)
            node_states = sum(int(d.num_nodes) * int(d.config_runtime.numel()) for d, _ in first)
            for device in devices():
                on_device = [[(d.to(device), n) for d, n in graphs] for graphs in case.steps]
                for precision in ("fp32", "bf16"):
                    model = case.build().to(device).train()
                    runner = step_runner(model, gst_trainer(model), device=device)
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                    cycle = itertools.cycle(on_device)

                    def step(
                        runner=runner,
                        optimizer=optimizer,
                        cycle=cycle,
                        device=device,
                        bf16=precision == "bf16",
                        loss_fn=case.loss,
                    ):
                        training_step(runner, optimizer, next(cycle), loss_fn, device, bf16)

                    if device == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    times = timed(step, args.train_steps, warmup=case.warmup)
                    extra = {}
                    if device == "cuda":
                        extra["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
                    params = parameters(model)
                    rows.append(
                        result(
                            f"training step, {case.label}, {params:,} parameters, {precision}; "
                            f"{configs} configs and {node_states:,} node-states per step "
                            f"({NODE_STATES})",
                            "configs/s",
                            lambda t, c=configs: c / t,
                            times,
                            device=device,
                            precision=precision,
                            parameters=params,
                            configs_per_step=configs,
                            node_states_per_step=node_states,
                            node_states_per_s=statistics.median(node_states / t for t in times),
                            node_states_per_s_min=node_states / max(times),
                            node_states_per_s_max=node_states / min(times),
                            step_seconds_median=statistics.median(times),
                            warmup_steps=case.warmup,
                            load_average=load,
                            **extra,
                        )
                    )
                    print(rows[-1], flush=True)
    return rows
