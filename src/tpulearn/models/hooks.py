"""The hooks a layer type implements: what :class:`~tpulearn.models.ConfigGNN` asks of it.

The base model owns the pipeline (encoders, planner, passes, readout, head) and calls
these hooks wherever a layer is built or run; the layer types of :mod:`.gnn` override
them and nothing else. They live apart from the pipeline so that a new layer type reads
one short class, not the base model.
"""

from __future__ import annotations

from torch import Tensor, nn

from .passes import LayerPasses


class LayerHooks:
    """Defaults of the layer hooks, mixed into :class:`~tpulearn.models.ConfigGNN`.

    Attributes:
        propagates: whether the layer passes messages (the MLP baseline does not).
        aggregation: ``"mean"``, ``"sum"`` or ``"weighted"`` (by the edge weights) for
            layers whose neighbour aggregation is linear, which then implement
            :meth:`combine`: the per-config layers aggregate with one sparse matrix
            product instead of C copies of the edge list. ``None``: not linear.
        passes: the class that runs the layers on the planned node sets (attention
            layers run their own layer step over the same sets).
    """

    propagates: bool = True
    aggregation: str | None = None
    passes: type[LayerPasses] = LayerPasses

    def init_conv(self, in_channels: int, out_channels: int) -> nn.Module:
        """Build one message-passing layer; each variant overrides this."""
        raise NotImplementedError

    def edge_weights(self, edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        """Edges (and per-edge weights) the layers run on, computed on the full graph."""
        return edge_index, None

    def run_conv(self, conv: nn.Module, x: Tensor, edge_index: Tensor, weight: Tensor | None):
        """One layer on node vectors ``x`` with the edges of :meth:`edge_weights`."""
        return conv(x, edge_index)

    def combine(self, conv: nn.Module, agg: Tensor, x_self: Tensor) -> Tensor:
        """The layer's output from its aggregated neighbours and the node's own input,
        exactly as ``conv`` computes it.

        Implementations read the PyG layer's submodules (SAGE ``lin_l``/``lin_r``, GCN
        ``lin``/``bias``, GIN ``nn``/``eps``) on purpose: the sparse and distinct-state
        paths must give the PyG layer's output with the same weights, so one
        ``state_dict`` (and every saved checkpoint) serves all three layer paths, and
        ``sparse_aggregation=False`` / ``prune=False`` remain the PyG reference
        (tests/models/test_gnn.py checks they agree).
        """
        raise NotImplementedError
