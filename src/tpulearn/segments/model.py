"""The segment model: a graph's score is the sum of its segments' scores.

Each segment is scored by the wrapped :class:`~tpulearn.models.ConfigGNN` as a graph of
its own (message passing inside the segment, readout per segment, head -> one scalar per
config), exactly the GST model (Cao et al., arXiv 2305.12322): ``F(G) = sum_s f(G_s)``.
With ``enabled=False`` it is the plain whole-graph model (the paper's full-graph ablation).

``checkpoint=True`` trains the same segment model without the history table: every segment
is in the gradient, and each is run under activation checkpointing (its activations are
dropped after the forward pass and recomputed, one segment at a time, in the backward pass),
so a step's memory is that of one segment while the gradient is exact. It costs about one
extra forward pass per segment. This is not GST's algorithm (one segment per step, the
others from history); it is the exact gradient GST estimates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint
from torch_geometric.data import Batch

from .._checks import check_choice, check_int
from ..data.datasets import TpuGraphData
from .partition import METHODS, Partition, PartitionCache, partition
from .subgraph import segment_batch, segment_data, split_segments


class SegmentModel(nn.Module):
    """Wraps a model so that a graph is scored as the sum of its segments.

    Args:
        model: the per-segment scorer (any :class:`~tpulearn.models.ConfigGNN`).
        max_segment_nodes: the most nodes in one segment (GST: 1000).
        method: ``"contiguous"`` node-id ranges or ``"metis"`` (needs pymetis).
        enabled: False scores whole graphs with ``model`` (no segments).
        segments_per_batch: score at most this many segments in one forward pass
            (bounds inference memory on huge graphs); None: all segments of the input.
        cache: where partitions are kept (a fresh :class:`PartitionCache` by default).
        checkpoint: in training (gradients enabled), score each segment on its own under
            activation checkpointing: exact gradients through every segment at the memory
            of one (see the module docstring). Training loops then call the model directly
            instead of a GST step.
        halo_hops: each segment also carries the nodes within this many hops as read-only
            context (pooled by the segment that owns them only; see
            :mod:`~tpulearn.segments.subgraph`). 0 (GST): cross-segment edges are dropped.
        max_halo_nodes: the most context nodes per segment; None: ``max_segment_nodes``
            (a segment with its halo then has at most twice the limit's nodes).

    Input: one graph (scores [C]) or a ``Batch`` / list of graphs sharing C ([B, C]).
    With ``data.context_hops`` the datasets hand over graphs already cut to the
    configurable nodes' context (:class:`~tpulearn.graph.ConfigContext`): the context is
    taken on the whole graph, then that graph is partitioned (it was cut per segment when
    the option was the model's).
    """

    def __init__(
        self,
        model: nn.Module,
        max_segment_nodes: int = 1000,
        method: str = "contiguous",
        enabled: bool = True,
        segments_per_batch: int | None = None,
        cache: PartitionCache | None = None,
        checkpoint: bool = False,
        halo_hops: int = 0,
        max_halo_nodes: int | None = None,
    ):
        super().__init__()
        # Checked here, not at the first forward that partitions a graph.
        check_int("max_segment_nodes", max_segment_nodes, 1)
        check_choice("method", method, METHODS)
        if halo_hops < 0:
            raise ValueError(f"halo_hops must be >= 0, got {halo_hops}")
        if max_halo_nodes is not None and max_halo_nodes < 0:
            raise ValueError(f"max_halo_nodes must be >= 0, got {max_halo_nodes}")
        self.halo_hops = halo_hops
        self.max_halo_nodes = max_segment_nodes if max_halo_nodes is None else max_halo_nodes
        self.model = model
        self.max_segment_nodes = max_segment_nodes
        self.method = method
        self.enabled = enabled
        self.segments_per_batch = segments_per_batch
        self.checkpoint = checkpoint
        self.cache = cache if cache is not None else PartitionCache()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def partition(self, data: TpuGraphData) -> Partition:
        """The graph's partition: cached when the graph has a ``stem``."""
        if isinstance(getattr(data, "stem", None), str):
            return self.cache.get(data, self.max_segment_nodes, self.method)
        return partition(data, self.max_segment_nodes, self.method)

    def segment(self, data: TpuGraphData, part: Partition, segment: int) -> TpuGraphData:
        """Segment ``segment`` of ``data`` as this model scores it (with its halo, if any)."""
        return segment_data(data, part, segment, self.halo_hops, self.max_halo_nodes)

    def score_segments(self, segments: list[TpuGraphData], config_chunk: int | None = None):
        """Fresh scores of segments sharing C, ``[len(segments), C]``, on the model's device."""
        if self.checkpoint and self.training and torch.is_grad_enabled():
            # One segment per pass, its activations recomputed in the backward pass (with
            # the RNG state of the forward pass, so dropout draws the same masks).
            out = []
            for seg in segments:
                batch = segment_batch([seg]).to(self.device)
                out.append(
                    activation_checkpoint(
                        self.model,
                        batch,
                        config_chunk=config_chunk,
                        owned=_owned(batch),
                        use_reentrant=False,
                    )
                )
            return torch.cat(out)
        step = self.segments_per_batch or max(len(segments), 1)
        out = []
        for start in range(0, len(segments), step):
            batch = segment_batch(segments[start : start + step]).to(self.device)
            out.append(self.model(batch, config_chunk=config_chunk, owned=_owned(batch)))
        return torch.cat(out)

    def segment_scores(self, data: TpuGraphData, config_chunk: int | None = None) -> Tensor:
        """Every segment's fresh scores for one graph, ``[num_segments, C]``."""
        segments = split_segments(data, self.partition(data), self.halo_hops, self.max_halo_nodes)
        return self.score_segments(segments, config_chunk)

    @property
    def configs_independent(self) -> bool:
        """Each config scores apart from the others (the wrapped model's
        :attr:`~tpulearn.models.ConfigGNN.configs_independent`)."""
        return bool(getattr(self.model, "configs_independent", False))

    def forward(self, data, config_chunk: int | None = None) -> Tensor:
        """Scores: sum over segments of fresh segment scores (no history table).

        Args:
            data: a graph, a ``Batch`` or a list of graphs (sharing C).
            config_chunk: passed to the wrapped model (configs per pass).

        Returns:
            ``[C]`` for one graph, ``[B, C]`` for a batch or list.
        """
        single = isinstance(data, TpuGraphData) and not isinstance(data, Batch)
        if not self.enabled:
            batch = data if single or isinstance(data, Batch) else Batch.from_data_list(data)
            return self.model(batch.to(self.device), config_chunk=config_chunk)
        graphs = [data] if single else _graph_list(data)
        segments, owner = [], []
        for g, graph in enumerate(graphs):
            pieces = split_segments(
                graph, self.partition(graph), self.halo_hops, self.max_halo_nodes
            )
            segments += pieces
            owner += [g] * len(pieces)
        scores = self.score_segments(segments, config_chunk)  # [total segments, C]
        owner = torch.tensor(owner, device=scores.device)
        out = scores.new_zeros(len(graphs), scores.shape[1]).index_add_(0, owner, scores)
        return out[0] if single else out

    def __repr__(self) -> str:
        # One line: the segment settings, then the wrapped model's own one-line repr.
        state = ("" if self.enabled else ", disabled") + (", checkpoint" if self.checkpoint else "")
        if self.halo_hops:
            state += f", halo_hops={self.halo_hops}, max_halo_nodes={self.max_halo_nodes}"
        return (
            f"SegmentModel(max_segment_nodes={self.max_segment_nodes}, method={self.method}"
            f"{state}, model={self.model!r})"
        )


def _owned(batch: Batch) -> Tensor | None:
    """The segments' own nodes (bool [N]) when they carry a halo: the model pools only
    those, so each node counts in exactly one segment."""
    return batch.owned if "owned" in batch else None


def _graph_list(data) -> list[TpuGraphData]:
    return data.to_data_list() if isinstance(data, Batch) else list(data)
