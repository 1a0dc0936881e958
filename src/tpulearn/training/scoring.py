"""Score every evaluated config of every graph of a dataset, evaluate the scores, validate
a run (metrics and validation loss, over all processes), and combine several models' scores
(an ensemble)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .._checks import check_choice
from ..combine import combine_scores
from ..data.collection import EVAL_CHUNK
from ..data.items import ITEM_BYTES
from ..metrics import Evaluator
from . import distributed as dist_utils
from .checkpoint import CheckpointMismatchError


@dataclass
class GraphScores:
    """Scores of one graph: ``scores``, ``config_runtime`` and ``config_index`` are [c]."""

    stem: str
    scores: np.ndarray
    config_runtime: np.ndarray
    config_index: np.ndarray


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked (and on CPU when asked explicitly)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    check_choice("precision", precision, PRECISIONS)
    return contextlib.nullcontext()


def scoring_calls(model, chunk: int) -> tuple[int | None, dict]:
    """How ``model`` takes a graph's configs, ``chunk`` at a time: the most bytes of config
    features per item (for :func:`~tpulearn.data.item_configs`) and the keyword arguments
    of each call. A model whose configs score independently (``configs_independent``)
    takes items of :data:`~tpulearn.data.ITEM_BYTES` and chunks them itself; any other,
    items of one chunk."""
    if getattr(model, "configs_independent", False):
        return ITEM_BYTES, {"config_chunk": chunk}
    return None, {}


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset,
    device: torch.device | str = "cpu",
    chunk: int = EVAL_CHUNK,
    precision: str = "fp32",
    progress: bool = False,
    indices: list[int] | None = None,
) -> Iterator[GraphScores]:
    """Yield the model's scores for each graph's evaluated configs (the dataset's sampler).

    Args:
        model: a config-scoring model (``model(data) -> [C]``).
        dataset: a Tile/LayoutDataset whose sampler picks the configs to evaluate.
        device: where the model runs.
        chunk: configs per pass through the config-dependent layers; the items the
            model gets: :func:`scoring_calls` (the same scores either way, the config-free
            pass once per item).
        precision: ``"fp32"`` or ``"bf16"``.
        progress: show a tqdm bar over graphs, and one over the configs of each.
        indices: score only these graphs of the dataset (default: all, in order).
    """
    device = torch.device(device)
    was_training = model.training
    budget, kwargs = scoring_calls(model, chunk)
    model.eval()
    try:
        order = range(len(dataset)) if indices is None else indices
        for i in tqdm(order, desc="scoring", unit="graph", disable=not progress):
            record, picked = dataset.sample_rows(i)
            parts, runtimes, rows = [], [], []
            # A graph of 100k configs takes minutes: a bar over its configs too.
            with tqdm(
                total=picked.shape[0],
                desc=record.stem,
                unit="config",
                leave=False,
                disable=not progress,
            ) as bar:
                for data in dataset.row_chunks(record, picked, chunk, budget):
                    with autocast(device, precision):
                        out = model(data.to(device), **kwargs)
                    parts.append(out.float().cpu().numpy())
                    runtimes.append(data.config_runtime.numpy())
                    rows.append(data.config_index.numpy())
                    bar.update(len(rows[-1]))
            yield GraphScores(
                record.stem,
                np.concatenate(parts),
                np.concatenate(runtimes),
                np.concatenate(rows),
            )
    finally:
        model.train(was_training)


@torch.no_grad()
def validation_loss(loss_fn, graphs: list[GraphScores], group: int) -> float:
    """The training loss on validation scores already computed, comparable with the
    training loss.

    A training step scores a sample of ``group`` configs per graph, and a ranking loss
    grows with the list (ListMLE on 1000 configs is far above its value on 32), so each
    graph's validated configs are split, in their evaluation order, into
    ``ceil(c / group)`` near-equal parts; the value is the mean over graphs of the mean
    loss over a graph's parts.

    Args:
        loss_fn: the training loss, ``loss_fn(scores [1, k], runtime [1, k]) -> scalar``.
        graphs: the validation graphs' scores (:func:`score_dataset`).
        group: configs per part (the training's ``configs_per_graph``).
    """
    per_graph = []
    for g in graphs:
        parts = max(1, -(-len(g.scores) // max(1, group)))
        scores = np.array_split(g.scores.astype(np.float32), parts)
        runtimes = np.array_split(g.config_runtime, parts)
        losses = [
            float(loss_fn(torch.from_numpy(s)[None], torch.from_numpy(r)[None]))
            for s, r in zip(scores, runtimes, strict=True)
        ]
        per_graph.append(sum(losses) / len(losses))
    return sum(per_graph) / len(per_graph) if per_graph else float("nan")


def evaluate_scores(collection: str, graphs: list[GraphScores]) -> tuple[dict, dict]:
    """Collection metrics and per-graph metrics of labelled scores."""
    evaluator = Evaluator(collection)
    for g in graphs:
        evaluator.add(g.stem, g.scores, g.config_runtime)
    return evaluator.compute(), evaluator.per_graph()


def validate(model, valid_set, data, world, device, precision="fp32", loss_fn=None) -> dict:
    """Metrics of a validation split; under torchrun each process scores the graphs it
    owns and the scores of all are gathered before the metrics are computed.

    Args:
        model: the model.
        valid_set: the split (``data.eval_set("valid")``).
        data: its :class:`~tpulearn.data.CollectionData` (collection, chunk, sample size).
        world: this process.
        device, precision: where and how the model runs.
        loss_fn: the training loss: with it, ``val_loss`` is :func:`validation_loss` in
            groups of ``data.configs_per_graph`` configs, the size of a training sample.
    """
    indices = dist_utils.owned(len(valid_set), world.rank, world.size)
    graphs = score_dataset(model, valid_set, device, data.eval_chunk, precision, indices=indices)
    mine = list(zip(indices, graphs, strict=True))
    every = sorted(
        (pair for part in dist_utils.all_gather(mine, world) for pair in part),
        key=lambda pair: pair[0],
    )
    graphs = [g for _, g in every]
    metrics, _ = evaluate_scores(data.collection, graphs)
    if loss_fn is not None:
        metrics["val_loss"] = validation_loss(loss_fn, graphs, data.configs_per_graph)
    return metrics


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
