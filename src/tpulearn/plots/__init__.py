"""Plots of predictions, rankings, datasets and segment partitions (matplotlib).

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` built without
pyplot, so figures can be written under any backend (or none) and shown in a notebook
with ``display(fig)``; :func:`save_figure` writes one as a PNG. The computations behind
the plots (:func:`ranking_curve`, :func:`expected_best_of_random`) return plain arrays.
Scores follow the library convention: a lower score means a config predicted faster.

Modules: :mod:`.evaluation` (predictions, ranking curve, per-graph metrics, the PNGs of
``evaluate.py plots=true``), :mod:`.ranking` (the curve's numbers), :mod:`.dataset` (the
dataset tour), :mod:`.segments` (partitions and memory).

matplotlib is optional: ``pip install tpulearn[notebooks]``.
"""

from ._base import save_figure
from .dataset import (
    CONFIGURABLE_OPCODES,
    neighbourhood_figure,
    opcode_histogram_figure,
    runtime_distribution_figure,
)
from .evaluation import (
    per_graph_metrics_figure,
    predicted_vs_true_figure,
    ranking_curve_figure,
    write_evaluation_plots,
)
from .ranking import RankingCurve, expected_best_of_random, ranking_curve
from .segments import memory_figure, partition_figure

__all__ = [
    "CONFIGURABLE_OPCODES",
    "RankingCurve",
    "expected_best_of_random",
    "memory_figure",
    "neighbourhood_figure",
    "opcode_histogram_figure",
    "partition_figure",
    "per_graph_metrics_figure",
    "predicted_vs_true_figure",
    "ranking_curve",
    "ranking_curve_figure",
    "runtime_distribution_figure",
    "save_figure",
    "write_evaluation_plots",
]
