"""Figures of a model's predictions: predicted vs true runtime, ranking curve, per-graph
metrics, and the PNGs ``evaluate.py plots=true`` writes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..data.schema import parse_collection
from ..metrics import kendall_tau
from ._base import _figure, save_figure
from .ranking import _scores_and_runtime, ranking_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..training.scoring import GraphScores

# Bars are labelled with graph names up to this many graphs.
_LABELLED_GRAPHS = 40


def predicted_vs_true_figure(scores: Any, runtime: Any, title: str | None = None) -> Figure:
    """Predicted score against true runtime for the configs of one graph.

    The x axis is the true runtime relative to the fastest config (1 = the true best), the
    y axis the model's score (lower = predicted faster); the title carries the Kendall tau
    (:func:`tpulearn.metrics.kendall_tau`). The true best config and the model's first
    choice are marked.

    Args:
        scores: ``[num_configs]`` predicted scores.
        runtime: ``[num_configs]`` true runtimes (positive).
        title: a graph name put before the tau.
    """
    scores, runtime = _scores_and_runtime(scores, runtime)
    tau = kendall_tau(scores, runtime)
    relative = runtime / runtime.min()
    fig = _figure(5.5, 4.2)
    ax = fig.add_subplot()
    ax.scatter(relative, scores, s=8, alpha=0.5, color="tab:blue", label="config")
    best, first = int(np.argmin(runtime)), int(np.argmin(scores))
    ax.scatter(relative[best], scores[best], s=70, marker="*", color="tab:green", label="true best")
    ax.scatter(
        relative[first],
        scores[first],
        s=50,
        marker="o",
        facecolors="none",
        edgecolors="tab:red",
        linewidths=1.5,
        label="model's first choice",
    )
    if relative.max() > 20:
        ax.set_xscale("log")
    ax.set_xlabel("true runtime / true best")
    ax.set_ylabel("predicted score (lower = faster)")
    tau_text = "undefined" if math.isnan(tau) else f"{tau:.3f}"
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}Kendall tau {tau_text} ({scores.size:,} configs)", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return fig


def ranking_curve_figure(scores: Any, runtime: Any, title: str | None = None) -> Figure:
    """The :func:`ranking_curve` of one graph: model order against the random expectation."""
    curve = ranking_curve(scores, runtime)
    fig = _figure(5.5, 4.2)
    ax = fig.add_subplot()
    ax.plot(curve.k, curve.model, color="tab:blue", label="model order")
    ax.plot(curve.k, curve.random, color="tab:gray", ls="--", label="random order (expected)")
    ax.axhline(1.0, color="tab:green", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("configs tried")
    ax.set_ylabel("best true runtime found / true best")
    head = f"{title}: " if title else ""
    ax.set_title(f"{head}best config found vs configs tried", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    return fig


def per_graph_metrics_figure(
    per_graph: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """One bar panel per metric, one bar per graph.

    Args:
        per_graph: ``{graph: {metric: value}}``, as
            :func:`tpulearn.training.evaluate_scores` (or ``Evaluator.per_graph``) returns.
        metrics: which metrics to draw; by default every metric but ``num_configs``.
            Up to 40 graphs the bars are labelled with graph names; beyond, each panel
            shows the values sorted (a per-graph distribution).
        title: figure title.
    """
    if not per_graph:
        raise ValueError("per_graph is empty: expected {graph: {metric: value}}")
    names = list(per_graph)
    # Metrics in the order the evaluator reports them, num_configs left out.
    available = [
        m for m in dict.fromkeys(m for r in per_graph.values() for m in r) if m != "num_configs"
    ]
    metrics = list(metrics) if metrics is not None else available
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        raise ValueError(f"metrics {unknown or metrics} not in the per-graph metrics {available}")
    labelled = len(names) <= _LABELLED_GRAPHS
    height = max(2.5, 0.22 * len(names) + 1.2) if labelled else 3.0
    fig = _figure(2.4 * len(metrics) + (2.0 if labelled else 0.0), height)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        values = np.array([per_graph[g].get(metric, np.nan) for g in names], dtype=np.float64)
        if labelled:
            y = np.arange(len(names))
            ax.barh(y, np.nan_to_num(values), color="tab:blue")
            for i in np.flatnonzero(np.isnan(values)):
                ax.text(0, y[i], " n/a", va="center", fontsize=7)
            ax.set_yticks(y, names if ax is axes[0] else [""] * len(names), fontsize=7)
            ax.invert_yaxis()
        else:
            ax.bar(np.arange(len(names)), np.sort(values[~np.isnan(values)]), color="tab:blue")
            ax.set_xlabel(f"graphs, sorted ({len(names)})")
        ax.set_title(metric, fontsize=9)
        if labelled:
            ax.axvline(0, color="black", lw=0.5)
        else:
            ax.axhline(0, color="black", lw=0.5)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def write_evaluation_plots(
    collection: str,
    graphs: Sequence[GraphScores],
    per_graph: Mapping[str, Mapping[str, float]],
    out_dir: str | Path,
) -> list[Path]:
    """Write the evaluation's PNGs: predicted vs true runtime per graph, per-graph metrics.

    Args:
        collection: the collection scored (e.g. ``"layout:xla:default"``), in the file names.
        graphs: labelled :class:`~tpulearn.training.GraphScores` (``stem``, ``scores``,
            ``config_runtime``), as :func:`tpulearn.training.score_dataset` yields.
        per_graph: their per-graph metrics (:func:`tpulearn.training.evaluate_scores`).
        out_dir: folder to write to (created).

    Returns:
        The paths written: ``<collection>_pred_vs_true_<graph>.png`` for each graph, then
        ``<collection>_per_graph_metrics.png``.
    """
    parse_collection(collection)
    if not graphs:
        raise ValueError("no graphs to plot: expected the scored graphs of a labelled split")
    out_dir = Path(out_dir)
    tag = collection.replace(":", "_")
    paths = []
    for g in graphs:
        fig = predicted_vs_true_figure(g.scores, g.config_runtime, title=g.stem)
        paths.append(save_figure(fig, out_dir / f"{tag}_pred_vs_true_{_file_part(g.stem)}.png"))
    fig = per_graph_metrics_figure(per_graph, title=f"{collection}: per-graph metrics")
    paths.append(save_figure(fig, out_dir / f"{tag}_per_graph_metrics.png"))
    return paths


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)
