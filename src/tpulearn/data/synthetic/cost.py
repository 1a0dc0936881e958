"""The hidden cost model's shared part: constants, per-node quantities, measurement noise.

The constants are fixed across graphs so that what is learnt transfers; the layout and
tile models (:mod:`.layout`, :mod:`.tile`) build on the helpers here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..features import tensor_rank
from ..schema import NUM_OPCODES
from .graphs import _DTYPE_BYTES, _DTYPE_COLUMN, _MTM

DEFAULT_NOISE = 0.002  # relative std of the multiplicative measurement noise

# Hidden cost-model constants. Fixed across graphs so that what is learnt transfers.
_OPCODE_COST = np.random.default_rng(20231).uniform(0.5, 3.0, NUM_OPCODES)
_NODE_OVERHEAD_NS = 400.0
_NS_PER_BYTE = 0.002  # ~500 GB/s
_NS_PER_FLOP = 1e-5  # ~100 TFLOP/s
_POSITION_WEIGHT = np.array([1.0, 0.5, 0.25, 0.25, 0.25, 0.25])  # minor dims matter most
_MAX_PADDING = 8.0
# Layout preference (see :mod:`.layout`): each opcode votes for a row-major (+1) or a
# column-major (-1) layout of the configurable nodes it reads or feeds, as a row reduction
# or a strided DMA would. Categorical per neighbour, so message passing over opcode
# embeddings can learn it from few graphs.
_OPCODE_VOTE = np.random.default_rng(20232).choice([-1.0, 1.0], NUM_OPCODES)
_PREFERENCE_PASSES = 8.0  # memory passes over the tensor to convert it for the neighbours
_CONVERSION_NS = 50_000.0  # fixed cost of the conversion kernels: launch, sync, pipeline drain
_TILE_OVERHEAD_NS = 60.0
_NS_PER_VECTOR_OP = 1e-3  # per element and opcode-cost unit, inside a tile kernel
_VMEM_BYTES = float(1 << 20)
_MAX_SPILL = 4.0


def _node_arrays(
    graph: Any, keys: tuple[str, ...] = ("node_feat", "node_opcode", "edge_index")
) -> dict[str, np.ndarray]:
    """Arrays of a dict (npz keys) or of a record read by :mod:`tpulearn.data.io`."""
    get = graph.get if isinstance(graph, Mapping) else lambda k: getattr(graph, k, None)
    missing = [k for k in keys if get(k) is None]
    if missing:
        raise ValueError(f"the graph has no {', '.join(missing)}")
    return {k: np.asarray(get(k)) for k in keys}


def _static(node_feat: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-node rank [n], dims [n, 6], own layout [n, 6] (-1 padded), elements and bytes [n]."""
    feat = node_feat.astype(np.float64)
    dims = feat[:, 21:27]
    rank = tensor_rank(feat)
    layout = np.where(np.arange(6)[None, :] < rank[:, None], feat[:, _MTM], -1.0)
    width = np.where(feat[:, _DTYPE_COLUMN].any(axis=1), feat[:, _DTYPE_COLUMN].argmax(axis=1), 3)
    return rank, dims, layout, feat[:, 28], feat[:, 28] * _DTYPE_BYTES[width]


def _plain_order(ranks: np.ndarray, row_major: bool) -> np.ndarray:
    """[m, 6] minor-to-major of ``ranks``: ``r-1, ..., 0`` (row-major) or ``0, ..., r-1``."""
    pos = np.arange(6)[None, :]
    order = ranks[:, None] - 1 - pos if row_major else np.broadcast_to(pos, (ranks.size, 6))
    return np.where(pos < ranks[:, None], order, -1.0)


def _preferred_layout(
    opcode: np.ndarray, edges: np.ndarray, ids: np.ndarray, rank: np.ndarray
) -> np.ndarray:
    """[nc, 6] the plain order each configurable node's neighbourhood asks for.

    Its 1-hop producers and consumers vote by opcode (:data:`_OPCODE_VOTE`); a
    non-negative sum asks for row-major (ties keep the XLA default). The node's own
    opcode has no vote: a model blind to the graph can only learn the prior.
    """
    vote = _OPCODE_VOTE[opcode]
    position = np.full(len(opcode), -1)
    position[ids] = np.arange(ids.size)
    total = np.zeros(ids.size)
    for node, neighbour in ((edges[:, 0], edges[:, 1]), (edges[:, 1], edges[:, 0])):
        at = position[node] >= 0
        np.add.at(total, position[node[at]], vote[neighbour[at]])
    row_major = _plain_order(rank[ids], row_major=True)
    return np.where((total >= 0)[:, None], row_major, _plain_order(rank[ids], row_major=False))


def _base_cost(node_opcode: np.ndarray, nbytes: np.ndarray) -> float:
    """Config-independent part of a program's runtime (ns): launch + memory traffic."""
    per_node = _NODE_OVERHEAD_NS + _OPCODE_COST[node_opcode.astype(np.int64)] * nbytes
    return float((per_node * _NS_PER_BYTE).sum() + _NODE_OVERHEAD_NS * len(nbytes))


def _noisy(rng: np.random.Generator, cost: np.ndarray, noise: float) -> np.ndarray:
    """Measured runtimes: int64 ns with multiplicative log-normal noise."""
    factor = np.exp(noise * rng.standard_normal(cost.shape)) if noise > 0 else 1.0
    return np.maximum(np.rint(cost * factor), 1).astype(np.int64)


def _duplicate_rows(rng: np.random.Generator, rows: np.ndarray, fraction: float) -> None:
    """Overwrite a fraction of rows (in place) with copies of others, as re-measured configs."""
    count = int(round(fraction * len(rows)))
    if count and len(rows) > 1:
        rows[rng.choice(len(rows), count)] = rows[rng.choice(len(rows), count)]
