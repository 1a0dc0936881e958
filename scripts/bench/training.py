"""Group ``training``: full training steps (forward, loss, backward, gradient clipping,
Adam) on prepared batches: configs/s and node-states/s, fp32 and bf16 autocast, on every
device. The cases are in :mod:`.training_cases`.
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


# ---------------------------------------------------------------------- the training step
# The group's training step lives in this one function on purpose: once the library
# exposes its own training step, this is the single place to swap it in, so that the
# benchmark times exactly the step that training runs.
def training_step(model, forward, optimizer, batch, loss_fn, device: str, bf16: bool) -> None:
    """One training step on ``batch``: forward under optional bf16 autocast, loss on fp32
    scores, backward, gradient clipping at norm 1, optimizer step; then a CUDA sync so
    that a timer around it measures the step's work.

    Args:
        model: the trained module (its parameters are clipped).
        forward: ``forward(batch) -> (scores, runtime, normalizer or None)``.
        optimizer: the optimizer over ``model``'s parameters.
        batch: the batch, already on ``device``.
        loss_fn: ``loss_fn(scores, runtime, normalizer=...)``.
        device: ``"cpu"`` or ``"cuda"`` (the autocast device type).
        bf16: run the forward pass under bf16 autocast.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device, torch.bfloat16, enabled=bf16):
        scores, runtime, normalizer = forward(batch)
    loss_fn(scores.float(), runtime, normalizer=normalizer).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    sync(device)


def run(args) -> list[dict]:
    """Full training steps (forward, loss, backward, gradient clipping, Adam) on prepared
    batches: configs/s and node-states/s, fp32 and bf16 autocast, on every device."""
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-train-") as tmp:
        for case in training_cases(Path(tmp)):
            batches = case.batches
            configs = int(batches[0].config_runtime.numel())
            graphs = getattr(batches[0], "num_graphs", 1)
            node_states = int(batches[0].num_nodes) * configs // graphs
            for device in devices():
                on_device = [b.to(device) for b in batches]
                for precision in ("fp32", "bf16"):
                    model = case.build().to(device).train()
                    forward = case.forward_for(model)
                    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
                    cycle = itertools.cycle(on_device)

                    def step(
                        model=model,
                        forward=forward,
                        optimizer=optimizer,
                        cycle=cycle,
                        device=device,
                        bf16=precision == "bf16",
                        loss_fn=case.loss,
                    ):
                        batch = next(cycle)
                        training_step(model, forward, optimizer, batch, loss_fn, device, bf16)

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
