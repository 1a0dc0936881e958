"""Score every evaluated config of every graph of a dataset, combine several models' scores
(an ensemble), and evaluate the scores."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from ..combine import combine_scores
from ..metrics import Evaluator
from .checkpoint import CheckpointMismatchError


@dataclass
class GraphScores:
    """Scores of one graph: ``scores``, ``config_runtime`` and ``config_index`` are [c]."""

    stem: str
    scores: np.ndarray
    config_runtime: np.ndarray
    config_index: np.ndarray


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked (and on CPU when asked explicitly)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return contextlib.nullcontext()


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset,
    device: torch.device | str = "cpu",
    chunk: int = 256,
    precision: str = "fp32",
    progress: bool = False,
    indices: list[int] | None = None,
) -> Iterator[GraphScores]:
    """Yield the model's scores for each graph's evaluated configs (the dataset's sampler).

    Args:
        model: a config-scoring model (``model(data) -> [C]``).
        dataset: a Tile/LayoutDataset whose sampler picks the configs to evaluate.
        device: where the model runs.
        chunk: configs per forward pass.
        precision: ``"fp32"`` or ``"bf16"``.
        progress: show a tqdm bar over graphs.
        indices: score only these graphs of the dataset (default: all, in order).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        order = range(len(dataset)) if indices is None else indices
        for i in tqdm(order, desc="scoring", disable=not progress):
            parts, runtimes, rows, stem = [], [], [], None
            for data in dataset.sample_chunks(i, chunk):
                stem = data.stem
                with autocast(device, precision):
                    out = model(data.to(device))
                parts.append(out.float().cpu().numpy())
                runtimes.append(data.config_runtime.numpy())
                rows.append(data.config_index.numpy())
            yield GraphScores(
                stem, np.concatenate(parts), np.concatenate(runtimes), np.concatenate(rows)
            )
    finally:
        model.train(was_training)


def evaluate_scores(collection: str, graphs: list[GraphScores]) -> tuple[dict, dict]:
    """Collection metrics and per-graph metrics of labelled scores."""
    evaluator = Evaluator(collection)
    for g in graphs:
        evaluator.add(g.stem, g.scores, g.config_runtime)
    return evaluator.compute(), evaluator.per_graph()


def combine_graphs(
    names: Sequence, scored: Sequence[list[GraphScores]], combine: str
) -> list[GraphScores]:
    """Per graph, the members' scores combined (:func:`tpulearn.combine.combine_scores`).

    Args:
        names: each member's name for messages (its checkpoint).
        scored: each member's scores of the split, graphs in one order.
        combine: ``"rank"`` or ``"zscore"``.

    Raises:
        CheckpointMismatchError: two members scored different graphs or configs.
    """
    first = scored[0]
    for name, graphs in zip(names[1:], scored[1:], strict=True):
        if [g.stem for g in graphs] != [g.stem for g in first]:
            raise CheckpointMismatchError(
                f"ensemble members {names[0]} and {name} scored different graphs: "
                "their data configs differ (pass data.root=... to score one root)"
            )
        for g, h in zip(first, graphs, strict=True):
            if not np.array_equal(g.config_index, h.config_index):
                raise CheckpointMismatchError(
                    f"ensemble members {names[0]} and {name} scored different configs of "
                    f"graph {g.stem}: their data configs select configs differently "
                    "(data.valid_indices=... sets one selection for both)"
                )
    return [
        GraphScores(
            g.stem,
            combine_scores([graphs[i].scores for graphs in scored], combine),
            g.config_runtime,
            g.config_index,
        )
        for i, g in enumerate(first)
    ]
