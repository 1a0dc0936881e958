"""Group ``recipe``: the layout recipe's training steps as ``train.py`` runs them.

``python train.py experiment=layout_fast`` on a synthetic collection of the held-out
collection's shape (graphs of 1,400-1,600 nodes, 300 configs; ``scripts/quality.py
--heldout-shape``), one run per search and device: each step's wall time as the run logs
it (``train/step_s`` in its TensorBoard events: reading the step's graphs, the union
steps, forward, backward, the optimiser and the moving average of the weights;
validations apart), the median over the steps after the first few, and the peak RSS of
the run's process (each run in a fresh interpreter; on CUDA also the peak of allocated
GPU memory). The ``training`` group times single steps of fixed models; this one times
what a recipe run costs a step, end to end.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

import torch

from .probe import rss_mb, run_probe
from .timing import devices, result

NAME = "recipe"
COLUMNS = [
    ("s/step", "step_seconds_median", "{:.4g}"),
    ("peak RSS MB", "peak_rss_mb", "{:,.0f}"),
]

# One search's collection: train / valid graphs, nodes and configs per graph (the
# held-out shape's graphs; fewer of them, as a step reads one graph or the union of two).
SHAPE = {"train": 4, "valid": 1, "nodes": (1400, 1600), "configs": (300, 300)}
SHAPE_QUICK = {"train": 2, "valid": 1, "nodes": (100, 150), "configs": (40, 40)}
STEPS, STEPS_QUICK = 120, 6
WARMUP = 10  # first steps left out of the median (allocator and caches warming up)
FAMILY = "neighbour_vote"
SEARCHES = ("random", "default")


def step_seconds(out_dir: Path) -> list[float]:
    """Each step's wall time in a run's TensorBoard events, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in sorted(events.Scalars("train/step_s"), key=lambda e: e.step)]


def recipe_probe(root: str, search: str, out_dir: str, steps: int, device: str) -> dict:
    """Run in a fresh interpreter (:func:`.probe.run_probe`): train
    ``experiment=layout_fast`` on ``device`` on the synthetic layout:xla:``search``
    collection at ``root`` for ``steps`` steps (validated untrained and at the end).
    Returns each step's seconds, the process's peak RSS (MB) and, on CUDA, the peak of
    allocated GPU memory (MB)."""
    from tpulearn.leaderboard.runs import compose
    from tpulearn.training import train

    overrides = [
        "experiment=layout_fast",
        "data=synthetic",
        f"data.root={root}",
        f"data.collection=layout:xla:{search}",
        f"out_dir={out_dir}",
        "trainer.seed=0",
        "trainer.progress=false",
        f"trainer.device={device}",
        "trainer.max_epochs=null",
        f"trainer.max_steps={steps}",
        f"trainer.val_every={steps + 1}",
    ]
    cfg = compose("config", overrides)
    train(cfg)
    out = {"step_seconds": step_seconds(Path(out_dir)), "peak_rss_mb": rss_mb("VmHWM")}
    if device == "cuda":
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run(args) -> list[dict]:
    """One recipe run per search and device (CUDA where present): seconds a step (median
    after the first :data:`WARMUP`) and the run's peak memory."""
    from tpulearn.data.synthetic import write_layout_collection

    shape = SHAPE_QUICK if args.quick else SHAPE
    steps = STEPS_QUICK if args.quick else STEPS
    warmup = 1 if args.quick else WARMUP
    low, high = shape["nodes"]
    rows = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tpulearn-bench-recipe-") as tmp:
        for search in SEARCHES:
            root = Path(tmp) / search
            counts = {"train": shape["train"], "valid": shape["valid"], "test": 0}
            write_layout_collection(
                root,
                "xla",
                search,
                num_graphs=counts,
                nodes=shape["nodes"],
                configs=shape["configs"],
                family=FAMILY,
                seed=0,
            )
            for device in devices():
                out_dir = Path(tmp) / f"run-{search}-{device}"
                outcome = run_probe(
                    "bench.recipe", "recipe_probe", [str(root), search, str(out_dir), steps, device]
                )
                if "capped" in outcome:
                    raise RuntimeError(
                        f"the {search} recipe run on {device} was stopped: {outcome['capped']}"
                    )
                times = outcome["step_seconds"][warmup:]
                extra = {}
                if "cuda_peak_allocated_mb" in outcome:
                    extra["cuda_peak_allocated_mb"] = outcome["cuda_peak_allocated_mb"]
                rows.append(
                    result(
                        f"layout_fast recipe step (`python train.py experiment=layout_fast`), "
                        f"synthetic layout:xla:{search} ({FAMILY}; {shape['train']} train "
                        f"graphs of {low:,}-{high:,} nodes, {shape['configs'][0]} configs), "
                        f"steps {warmup + 1}-{steps} of one run, seed 0",
                        "steps/s",
                        lambda t: 1.0 / t,
                        times,
                        device=device,
                        precision="fp32",
                        step_seconds_median=statistics.median(times),
                        peak_rss_mb=outcome["peak_rss_mb"],
                        torch_threads=torch.get_num_threads(),
                        load_average=load,
                        **extra,
                    )
                )
                print(rows[-1], flush=True)
    return rows
