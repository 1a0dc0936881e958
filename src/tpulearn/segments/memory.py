"""Peak memory of one training step, graph segment training against the whole graph.

Measured, not modelled: :func:`measure_step_memory` runs :func:`step_memory` in a fresh
interpreter and reads that process's peak resident set (``VmHWM`` from ``/proc``, reset
before each step), so nothing allocated by the caller counts. Linux only (``/proc``).
``scripts/benchmark.py`` (group ``gst_memory``) and ``notebooks/03_segment_training``
use it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

RSS_CAP_MB = 8_000  # a probe above this is stopped (whole graphs grow without bound)
TIMEOUT_S = 900
MODES = ("gst", "full", "checkpoint")


def paper_layout_model():
    """The paper's layout model at its size: SAGE 3 x 256, PReLU, residual, dropout 0.1,
    opcode embedding 128, mean + max readout (seeded: the same weights every call)."""
    from ..models import SAGE

    torch.manual_seed(0)
    return SAGE(
        "layout",
        hidden_channels=256,
        num_layers=3,
        dropout=0.1,
        residual=True,
        act="prelu",
        readout="mean+max",
        opcode_dim=128,
    )


def synthetic_layout_graph(num_nodes: int, num_configs: int = 32, seed: int = 0):
    """A synthetic layout graph with real shape statistics (4% configurable nodes), its
    features normalised as training sees them."""
    from ..data import FeatureNormalizer, TpuGraphData, reencode_minor_to_major
    from ..data.synthetic import make_layout_graph

    g = make_layout_graph(
        np.random.default_rng(seed), num_nodes, num_nodes // 25, num_configs, search="random"
    )
    feat = reencode_minor_to_major(g["node_feat"])
    feat = FeatureNormalizer(log=True).partial_fit(feat).transform(feat)
    return TpuGraphData(
        node_feat=torch.from_numpy(feat),
        node_opcode=torch.from_numpy(g["node_opcode"].astype(np.int64)),
        edge_index=torch.from_numpy(np.ascontiguousarray(g["edge_index"].T)),
        node_config_ids=torch.from_numpy(g["node_config_ids"]),
        node_config_feat=torch.from_numpy(g["node_config_feat"]),
        config_runtime=torch.from_numpy(g["config_runtime"]),
        node_splits=torch.from_numpy(g["node_splits"].reshape(-1)),
        config_index=torch.arange(num_configs),
        num_nodes=num_nodes,
        stem=f"synthetic{num_nodes}",
    )


def rss_mb(field: str = "VmRSS") -> float:
    """This process's ``VmRSS`` (now) or ``VmHWM`` (peak) in MB."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def reset_peak_rss() -> None:
    """Reset ``VmHWM`` to the current RSS. (``ru_maxrss`` cannot be reset, and a child
    started by ``subprocess`` inherits its parent's peak through exec.)"""
    Path("/proc/self/clear_refs").write_text("5")


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
            :func:`paper_layout_model`.
        max_segment_nodes: the segment limit for ``"gst"``.
        halo_hops, max_age: the segment model's context hops and the GST staleness bound
            (``max_age=0``: every other segment recomputed, no grad, at each step).

    Returns:
        ``{"num_segments", "first"?, "step": {"peak_mb", "base_mb", "seconds"}}``;
        ``base_mb`` is the RSS before the step (interpreter, torch, model, data).
    """
    from ..losses import pairwise_hinge_loss
    from . import GSTTrainer, SegmentModel

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


def run_probe(
    module: str,
    function: str,
    args: list,
    cap_mb: float = RSS_CAP_MB,
    timeout_s: float = TIMEOUT_S,
    path: str | Path | None = None,
) -> dict:
    """``module.function(*args)`` in a fresh interpreter, its JSON result read back.

    The child is stopped when its RSS passes ``cap_mb`` or it runs longer than
    ``timeout_s``; the result is then ``{"capped": why, "seconds": ...}``.

    Args:
        module, function: what to call (an importable module).
        args: JSON-serialisable positional arguments.
        path: a folder put first on the child's ``sys.path`` (e.g. ``scripts/``).

    Raises:
        RuntimeError: the child failed (its stderr's tail in the message).
    """
    code = (
        "import sys, json, importlib; "
        + (f"sys.path.insert(0, {str(path)!r}); " if path is not None else "")
        + f"f = getattr(importlib.import_module({module!r}), {function!r}); "
        + f"print(json.dumps(f(*json.loads({json.dumps(json.dumps(args))}))))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    start, peak = time.perf_counter(), 0.0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            peak = max(peak, int(status.split("VmRSS:")[1].split()[0]) / 1024)
        except (FileNotFoundError, IndexError):
            pass
        too_long = time.perf_counter() - start > timeout_s
        if peak > cap_mb or too_long:
            proc.kill()
            proc.communicate()
            why = f"RSS above {cap_mb:.0f} MB" if not too_long else "time limit"
            return {"capped": why, "seconds": time.perf_counter() - start}
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(
            f"probe {module}.{function}{tuple(args)} failed:\n{stderr.decode()[-2000:]}"
        )
    return json.loads(stdout.decode().strip().splitlines()[-1])


def measure_step_memory(
    num_nodes: int,
    mode: str,
    cap_mb: float = RSS_CAP_MB,
    timeout_s: float = TIMEOUT_S,
    halo_hops: int = 0,
    max_age: int | None = None,
) -> dict:
    """:func:`step_memory` in a fresh interpreter (see :func:`run_probe` for the cap)."""
    args = [num_nodes, mode, 1000, halo_hops, max_age]
    return run_probe(__name__, "step_memory", args, cap_mb, timeout_s)
