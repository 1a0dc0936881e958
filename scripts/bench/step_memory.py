"""Peak memory of one training step, graph segment training against the whole graph.

Measured, not modelled: :func:`measure_step_memory` runs :func:`step_memory` in a fresh
interpreter (:func:`.probe.run_probe`) and reads that process's peak resident set, reset
before each step, so nothing allocated by the caller counts. Group ``gst_memory`` and
``notebooks/03_segment_training`` use it.
"""

from __future__ import annotations

import time

import torch

from .layout import paper_layout_model, synthetic_layout_graph
from .probe import RSS_CAP_MB, TIMEOUT_S, reset_peak_rss, rss_mb, run_probe

MODES = ("gst", "full", "checkpoint")


def step_memory(
    num_nodes: int,
    mode: str,
    max_segment_nodes: int = 1000,
    halo_hops: int = 0,
    max_age: int | None = None,
) -> dict:
    """Peak RSS of training steps on one synthetic graph, in this process.

    Args:
        num_nodes: graph size.
        mode: ``"gst"``: a first step (its no-grad fill of never-computed history entries
            included), then three steady-state steps, the largest peak kept;
            ``"full"``: one whole-graph step; ``"checkpoint"``: one step of the segment
            model with every segment in the gradient under activation checkpointing. Each
            step is forward + pairwise hinge loss + backward + Adam, 32 configs,
            :func:`.layout.paper_layout_model`.
        max_segment_nodes: the segment limit for ``"gst"``.
        halo_hops, max_age: the segment model's context hops and the GST staleness bound
            (``max_age=0``: every other segment recomputed, no grad, at each step).

    Returns:
        ``{"num_segments", "first"?, "step": {"peak_mb", "base_mb", "seconds"}}``;
        ``base_mb`` is the RSS before the step (interpreter, torch, model, data).
    """
    from tpulearn.losses import pairwise_hinge_loss
    from tpulearn.segments import GSTTrainer, SegmentModel

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    data = synthetic_layout_graph(num_nodes)
    model = SegmentModel(
        paper_layout_model(),
        max_segment_nodes=max_segment_nodes,
        enabled=mode != "full",
        checkpoint=mode == "checkpoint",
        halo_hops=halo_hops,
    ).train()
    trainer = GSTTrainer(model, max_age=max_age)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    out: dict = {"num_segments": model.partition(data).num_segments}

    def step(name: str) -> None:
        reset_peak_rss()
        base = rss_mb("VmRSS")
        start = time.perf_counter()
        scores = trainer.step([data]) if mode == "gst" else model([data])
        pairwise_hinge_loss(scores, data.config_runtime.unsqueeze(0)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out[name] = {
            "peak_mb": rss_mb("VmHWM"),
            "base_mb": base,
            "seconds": time.perf_counter() - start,
        }

    if mode == "gst":
        step("first")
        # Steady state: the trained segment is drawn at random; report the largest of 3.
        for i in range(3):
            step(f"step{i}")
        out["step"] = max((out.pop(f"step{i}") for i in range(3)), key=lambda s: s["peak_mb"])
    else:
        step("step")
    return out


def measure_step_memory(
    num_nodes: int,
    mode: str,
    cap_mb: float = RSS_CAP_MB,
    timeout_s: float = TIMEOUT_S,
    halo_hops: int = 0,
    max_age: int | None = None,
) -> dict:
    """:func:`step_memory` in a fresh interpreter (see :func:`.probe.run_probe` for the cap)."""
    args = [num_nodes, mode, 1000, halo_hops, max_age]
    return run_probe("bench.step_memory", "step_memory", args, cap_mb, timeout_s)
