"""Synthetic TpuGraphs collections: schema-exact npz files with a hidden, learnable cost model.

The files have the keys, dtypes, invariants and folder layout of the real release (see
:mod:`tpulearn.data.schema`), so every reader, dataset and trainer can be exercised at any
size, from a 5-node test kernel to a 20k-node, 100k-config layout graph, without the 6 GB
download. Everything is a function of the seed.

Runtimes come from a fixed hidden cost model (:func:`layout_cost`, :func:`tile_cost`)
that depends on the graph as much as on the configs:

* layout: the 1-hop producers and consumers of each configurable node vote by opcode for
  a row- or column-major output layout; any other layout pays conversion copies (a fixed
  cost plus passes over the tensor's bytes), plus smaller padding and operand-conversion
  terms. A model that sees each node alone learns only the prior; message passing reads
  the neighbourhood that decides which permutation is cheap.
* tile: the kernel's root output is cut into tiles; the number of tiles, lane/sublane
  padding along the root's minor dimensions, per-tile overhead and a VMEM spill penalty
  (driven by the number of kernel inputs and element width) trade off, so the best tile
  depends on the kernel's shapes and structure.

Cost-model families (:mod:`.families`): the benchmark should not be overfittable to one
cost model, so :data:`LAYOUT_FAMILIES` registers layout models of different form
(``neighbour_vote`` = :func:`layout_cost`; ``edge_conversion`` =
:func:`edge_conversion_cost`, per-edge transposes between emitted and read layouts;
``roofline`` = :func:`roofline_cost`, per-node max of padded compute and strided memory;
``propagation`` = :func:`propagation_cost`, layouts carried along elementwise chains,
conversions where they end and a graph-wide spill threshold)
and :data:`TILE_FAMILIES` the tile model (``tile_spill`` = :func:`tile_cost`). Each
:class:`Family` carries a default measurement noise calibrated so that a perfect model
(the noise-free cost) reaches a Kendall tau of ~0.7 on layout:xla:random; the writers take
``family=`` and ``noise=`` (no family: the original model with :data:`DEFAULT_NOISE`, files
bit-identical to earlier versions), and record both in a ``synthetic.json`` sidecar per
collection, from which :func:`oracle_scores` / :func:`oracle_metrics` compute that ceiling.

Memory: a layout graph is generated whole; ``node_config_feat`` alone is
``configs x configurable x 18 x 4`` bytes (144 MB at 2k x 1k, 7.2 GB at the real maximum
of 100k x 1k), and ``np.savez_compressed`` needs that array in memory. Runtimes are
costed in chunks of configs, so costing adds little beyond it.

Modules: :mod:`.graphs` (random program structure and node features), :mod:`.cost`
(hidden constants and noise shared by both models), :mod:`.layout` and :mod:`.tile`
(configs and cost models), :mod:`.families` (the family registry, sidecar and oracle),
:mod:`.writer` (collections on disk).
"""

# numpy is kept as a package attribute: tests patch ``synthetic.np.savez_compressed``.
import numpy as np  # noqa: F401

from .cost import DEFAULT_NOISE
from .families import (
    LAYOUT_FAMILIES,
    SIDECAR_NAME,
    TILE_FAMILIES,
    Family,
    edge_conversion_cost,
    oracle_metrics,
    oracle_scores,
    propagation_cost,
    read_sidecar,
    roofline_cost,
)
from .graphs import CONFIGURABLE_OPCODES
from .layout import BENCHMARK_LAYOUT, benchmark_layout_graph, layout_cost, make_layout_graph
from .tile import make_tile_graph, tile_cost
from .writer import DEFAULT_NUM_GRAPHS, write_layout_collection, write_tile_collection

__all__ = [
    "BENCHMARK_LAYOUT",
    "CONFIGURABLE_OPCODES",
    "DEFAULT_NOISE",
    "DEFAULT_NUM_GRAPHS",
    "LAYOUT_FAMILIES",
    "SIDECAR_NAME",
    "TILE_FAMILIES",
    "Family",
    "benchmark_layout_graph",
    "edge_conversion_cost",
    "layout_cost",
    "make_layout_graph",
    "make_tile_graph",
    "oracle_metrics",
    "oracle_scores",
    "propagation_cost",
    "read_sidecar",
    "roofline_cost",
    "tile_cost",
    "write_layout_collection",
    "write_tile_collection",
]
