"""One GST training step: gradient through one segment per graph, the rest from history.

For a graph split into S segments and its sampled configs, a step (Cao et al., arXiv
2305.12322, Algorithm 1, and the reference code kaidic/GST,
``graphgps/train/custom_tpu_train.py``):

1. picks one segment t uniformly at random and scores it fresh, with gradient:
   ``f_t`` [C];
2. reads the other segments' stored scores ``h_s`` [C] from the :class:`HistoryTable`;
3. stale embedding dropout: keeps each stored score independently (per config and
   segment) with probability ``p``; a dropped one contributes 0;
4. predicts ``y = m * f_t + sum_{s != t} keep_s * h_s``, the trained segment rescaled to
   stand in for the dropped ones (:mod:`.dropout` gives ``m`` and the other rescalings);
5. writes ``f_t`` (detached, computed with the pre-update weights as in the reference)
   back into the table.

Entries never computed yet: with ``missing="fill"`` (the default), before the step the
missing entries of the sampled configs are filled by a no-grad pass over the segments
that have any (so a graph's first step sees real scores, not zeros; the pass runs in eval
mode: no dropout noise is stored, and none is paid for). ``missing="zero"`` reads them as
0, as the reference's zero-initialised table does.

Staleness bound (an extension; the reference has none): with ``max_age=k``, entries of the
sampled configs written more than k steps ago are recomputed by the same no-grad pass
before they are read. ``max_age=0`` gives every step fresh values of the other segments
(the prediction then equals the segment model's, and its gradient is the unbiased
one-segment estimate of the segment model's gradient); memory stays that of one segment,
compute grows by up to one no-grad forward of each other segment. None: no bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from .._checks import check_choice, check_int, check_number
from ..data.datasets import TpuGraphData
from .dropout import DROPOUT_UNITS, RESCALES, combine, stale_keep_mask
from .history import HistoryTable
from .model import SegmentModel, _graph_list
from .partition import Partition

MISSING = ("fill", "zero")
# Segments per no-grad fill pass: bounds the pass's memory to about that of the trained
# segment's forward + backward, on any graph size (larger is faster on a GPU).
FILL_CHUNK = 2


@dataclass
class GSTOutput:
    """What :func:`gst_step` returns.

    Attributes:
        scores: graph predictions ``[B, C]``, with gradient through the trained segments.
        segments: the trained segment of each graph, ``[B]``.
        num_segments: segments per graph, ``[B]``.
    """

    scores: Tensor
    segments: list[int]
    num_segments: list[int]


def gst_step(
    model: SegmentModel,
    table: HistoryTable,
    graphs,
    keep_prob: float = 0.5,
    rescale: str = "trained",
    missing: str = "fill",
    num_configs: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    fill_chunk: int = FILL_CHUNK,
    dropout_unit: str = "entry",
    max_age: int | None = None,
) -> GSTOutput:
    """Forward pass of one GST training step; apply any loss to ``.scores``.

    Args:
        model: the :class:`SegmentModel` (its ``model`` scores segments).
        table: the history table (moved to the model's device if it is elsewhere).
        graphs: graphs with their sampled configs (a list or a ``Batch``; all share C and
            have a ``stem``); ``config_index`` gives each config's row in its file.
        keep_prob: p, stale embedding dropout keep probability (1 disables the dropout).
        rescale: ``"trained"``, ``"stale"`` or ``"none"`` (module docstring).
        missing: ``"fill"`` or ``"zero"``: how never-computed entries are read.
        num_configs: configs in each graph's file (table rows); None: the table grows to
            the largest ``config_index`` seen.
        generator: CPU generator of the segment choice and the dropout.
        fill_chunk: segments per no-grad pass of the fill.
        dropout_unit: ``"entry"`` draws a keep decision per (config, segment), as the
            reference does; ``"segment"`` draws one per stale segment of a graph, shared by
            its configs (a dropped segment's config-independent part then cancels in every
            pairwise comparison of the step instead of adding noise to it).
        max_age: recompute (no grad) stored entries of the sampled configs written more
            than this many steps ago before reading them; None: never (the reference).

    Returns:
        :class:`GSTOutput`; the trained segments' fresh scores are already written back.
    """
    check_choice("rescale", rescale, RESCALES)
    check_choice("missing", missing, MISSING)
    check_choice("dropout_unit", dropout_unit, DROPOUT_UNITS)
    if max_age is not None and max_age < 0:
        raise ValueError(f"max_age must be >= 0 or None, got {max_age}")
    graphs = _graph_list(graphs)
    if len({int(g.config_index.numel()) for g in graphs}) > 1:
        raise ValueError("graphs of one GST step must have the same number of sampled configs")
    device = model.device
    if table.device != device:
        table.to(device)
    parts = [model.partition(g) for g in graphs]
    for b, (graph, part) in enumerate(zip(graphs, parts, strict=True)):
        if part.key is None:
            raise ValueError("GST needs every graph's `stem` to key its history entries")
        rows = num_configs[b] if num_configs is not None else int(graph.config_index.max()) + 1
        table.ensure(part.key, rows, part.num_segments)
    table.tick()
    chosen = [int(torch.randint(p.num_segments, (), generator=generator)) for p in parts]
    if missing == "fill" or max_age is not None:
        fill_missing(
            model,
            table,
            graphs,
            parts,
            skip=chosen,
            chunk=fill_chunk,
            max_age=max_age,
            missing=missing == "fill",
        )

    trained = model.score_segments(
        [model.segment(g, p, s) for g, p, s in zip(graphs, parts, chosen, strict=True)]
    )  # [B, C]
    preds = []
    for b, (graph, part, seg) in enumerate(zip(graphs, parts, chosen, strict=True)):
        stored, _ = table.read(part.key, graph.config_index)
        others = [s for s in range(part.num_segments) if s != seg]
        stale = stored[:, others]
        if dropout_unit == "entry":
            keep = stale_keep_mask(stale.shape, keep_prob, generator)
        else:
            keep = stale_keep_mask((1, stale.shape[1]), keep_prob, generator).expand_as(stale)
        preds.append(combine(trained[b], stale, keep, keep_prob, rescale))
        table.write(part.key, graph.config_index, seg, trained[b])
    return GSTOutput(torch.stack(preds), chosen, [p.num_segments for p in parts])


@torch.no_grad()
def fill_missing(
    model: SegmentModel,
    table: HistoryTable,
    graphs: list[TpuGraphData],
    parts: list[Partition],
    skip: Sequence[int] | None = None,
    chunk: int = FILL_CHUNK,
    max_age: int | None = None,
    missing: bool = True,
) -> int:
    """Score, without gradient and in eval mode, every segment holding a never-written
    entry of the sampled configs (``missing``) or one written more than ``max_age`` steps
    ago, and write those entries (the others keep their stored value).

    Args:
        skip: per graph, a segment not to fill (the one about to be trained).
        chunk: segments scored per pass (memory stays that of ``chunk`` segments).
        max_age: also recompute filled entries older than this; None: never.
        missing: compute never-written entries.

    Returns:
        The number of segment passes run.
    """
    jobs = []  # (graph index, segment, rows to compute [C] bool)
    for b, (graph, part) in enumerate(zip(graphs, parts, strict=True)):
        _, filled = table.read(part.key, graph.config_index)
        need = ~filled if missing else torch.zeros_like(filled)
        if max_age is not None:
            need |= filled & (table.age(part.key, graph.config_index) > max_age)
        for s in need.any(0).nonzero().squeeze(1).tolist():
            if skip is None or s != skip[b]:
                jobs.append((b, s, need[:, s]))
    training = model.training
    model.eval()
    try:
        for start in range(0, len(jobs), chunk):
            part_jobs = jobs[start : start + chunk]
            segments = [model.segment(graphs[b], parts[b], s) for b, s, _ in part_jobs]
            scores = model.score_segments(segments)
            for (b, s, need), score in zip(part_jobs, scores, strict=True):
                rows = graphs[b].config_index.to(need.device)[need]
                table.write(parts[b].key, rows, s, score[need])
    finally:
        model.train(training)
    return len(jobs)


class GSTTrainer:
    """GST training state: the segment model's history table, dropout settings and RNG.

    Args:
        model: the :class:`SegmentModel`; with ``model.enabled`` False, :meth:`step`
            is whole-graph training (scores of the plain model, no table).
        keep_prob, rescale, missing, fill_chunk, dropout_unit, max_age: as in
            :func:`gst_step`.
        seed: seed of the segment choice and the stale dropout.
    """

    def __init__(
        self,
        model: SegmentModel,
        keep_prob: float = 0.5,
        rescale: str = "trained",
        missing: str = "fill",
        fill_chunk: int = FILL_CHUNK,
        seed: int = 0,
        dropout_unit: str = "entry",
        max_age: int | None = None,
    ):
        check_choice("rescale", rescale, RESCALES)
        check_choice("missing", missing, MISSING)
        self.model = model
        self.keep_prob, self.rescale, self.missing = keep_prob, rescale, missing
        check_number("keep_prob", keep_prob, 0.0, 1.0)
        self.fill_chunk = check_int("fill_chunk", fill_chunk, 1)
        check_choice("dropout_unit", dropout_unit, DROPOUT_UNITS)
        self.dropout_unit = dropout_unit
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0 or None, got {max_age}")
        self.max_age = max_age
        self.table = HistoryTable(model.device)
        self.generator = torch.Generator().manual_seed(seed)
        self.last: GSTOutput | None = None

    def step(self, graphs, num_configs: Sequence[int] | None = None) -> Tensor:
        """Predictions ``[B, C]`` of one training step (see :func:`gst_step`).

        Args:
            graphs: a list of graphs (``[data]`` for one), or a ``Batch`` of them.
        """
        if isinstance(graphs, Data) and not isinstance(graphs, Batch):
            raise TypeError("GSTTrainer.step takes a list of graphs (or a Batch): pass [data]")
        if not self.model.enabled:
            batch = graphs if isinstance(graphs, Batch) else Batch.from_data_list(list(graphs))
            return self.model(batch)
        self.last = gst_step(
            self.model,
            self.table,
            graphs,
            self.keep_prob,
            self.rescale,
            self.missing,
            num_configs,
            self.generator,
            self.fill_chunk,
            self.dropout_unit,
            self.max_age,
        )
        return self.last.scores

    def state_dict(self) -> dict:
        """Table and RNG state (the model's weights are saved separately)."""
        return {"table": self.table.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.table.load_state_dict(state["table"])
        self.generator.set_state(state["generator"])
