"""Cost-model families: several hidden cost models of different form, their noise and oracle.

One hidden cost model can be overfitted: a model (or a feature) tuned on it may only have
learnt that model's quirks. The benchmark therefore offers families of clearly different
form, each a deterministic, noise-free ``cost(graph, configs) -> [c] float64`` whose hidden
constants are fixed across graphs (so what is learnt on some graphs transfers to others),
and each depending on the configs, on node features and on neighbouring nodes:

* ``neighbour_vote`` (:func:`~.layout.layout_cost`, unchanged): the 1-hop neighbours of a
  configurable node vote by opcode for a row- or column-major output layout; any other
  layout pays conversion copies.
* ``edge_conversion`` (:func:`edge_conversion_cost`): a cost on every edge that touches a
  configurable node: a transpose / copy when the layout the producer emits differs from
  the layout the consumer reads, weighted by the tensor's bytes, by how minor the
  differing positions are and by the consumer's opcode; plus a per-opcode cost of a
  convolution / dot / reshape reading an operand whose minor dim is not the one it wants.
  Each term is a function of one edge's two endpoints (configs and node features), which
  is exactly what one round of message passing sees.
* ``roofline`` (:func:`roofline_cost`): every configurable node costs
  ``max(compute, memory)``: flops inflated by padding the two minor dims to (8 x 128)
  tiles under the chosen layout, against bytes moved inflated when the minor dim is short
  (strided rows shorter than a DMA burst), where an output that its consumers cannot fuse
  is read again by each of them. Whether a layout matters thus depends on whether the node
  is compute- or memory-bound, which depends on its shapes and its consumers.
* ``propagation`` (:func:`propagation_cost`): a chosen output layout travels through the
  consumers that keep a layout (elementwise-like opcodes, a hidden half) for up to three
  hops, each streaming its tensor in it, and costs a conversion where the path reaches
  an op compiled for another layout; configurable consumers convert operands read in
  another layout; and the configurable outputs' tile-padded bytes beyond a multiple of
  their bytes spill, a threshold over the whole graph rather than a sum over nodes. It
  reads nodes two and three hops away. Added after the layout recipe's settings were
  chosen on the three above, and kept out of that choice: a family no setting was tuned to.

Tile families: ``tile_spill`` (:func:`~.tile.tile_cost`, unchanged).

Measurement noise is multiplicative log-normal (``rint(cost * exp(sigma * N(0, 1)))``).
Each family has its own default ``sigma`` (:attr:`Family.noise`), chosen so that the
oracle (a perfect model: the noise-free cost itself) reaches a Kendall tau of about 0.65 -
0.75 on layout:xla:random graphs of ~1,500 nodes, ~10% configurable, 300 configs, as on a
held-out collection of that shape (oracle tau 0.65): noise then matters, and a model that
scores near the oracle has learnt the cost model rather than the noise. The default search
changes few nodes per config, so its configs differ less and its oracle tau is lower.

:func:`oracle_scores` and :func:`oracle_metrics` compute that ceiling from the files alone,
reading the family and noise from the collection's sidecar (``synthetic.json``, written by
:mod:`.writer`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..schema import NUM_OPCODES, SPLITS, collection_dir, parse_collection
from .cost import _NS_PER_BYTE, _NS_PER_FLOP, DEFAULT_NOISE, _base_cost, _node_arrays, _static
from .graphs import _DTYPE_COLUMN, _first_operands
from .layout import _CHUNK_ELEMENTS, layout_cost
from .tile import tile_cost

SIDECAR_NAME = "synthetic.json"
_LEGACY_FAMILY = {"layout": "neighbour_vote", "tile": "tile_spill"}

# --------------------------------------------------------------------- hidden constants
# Fixed across graphs, like those of :mod:`.cost`; own seeds so they do not move those.

# edge_conversion
_EDGE_POSITION_WEIGHT = np.array([1.0, 0.6, 0.3, 0.15, 0.1, 0.05])  # minor positions first
_EDGE_FIXED_NS = 20_000.0  # launch of a transpose / copy kernel
_EDGE_PASSES = 6.0  # passes over the tensor's bytes per unit of weighted mismatch
# How dear a conversion is for each consumer opcode: an elementwise consumer may absorb
# part of it into its own loop, a reduction or a DMA cannot. Categorical per neighbour.
_CONSUMER_FACTOR = np.random.default_rng(20241).choice([0.25, 1.0, 3.0], NUM_OPCODES)
# The operand dim that convolution (26), dot (34) and reshape (75) want minor-most, per
# operand slot (input, kernel): +1 the last dim (row-major), 0 the first.
_WANTED_LAST = {26: (1, 0), 34: (1, 1), 75: (0, 0)}
_MINOR_PASSES = {26: 8.0, 34: 4.0, 75: 2.0}  # passes per wrongly-minor read

# roofline
_SUBLANES = np.array([32.0, 8.0, 16.0, 8.0])  # per element width class 1, 4, 2, 4 bytes
_ROOF_MAX_PADDING = 16.0
_BURST_BYTES = 512.0  # a row shorter than this wastes DMA bandwidth
_MAX_STRIDE = 16.0
_CONTRACTION_WINDOW = {26: 9.0, 34: 1.0}  # 3x3 convolution window
# Bytes a consumer re-reads when it cannot fuse into its producer, per consumer opcode.
_UNFUSED_READS = np.random.default_rng(20242).choice([0.0, 0.0, 1.0, 2.0], NUM_OPCODES)
_CONVERT_PASSES = 2.0  # an operand read in another layout than emitted: read + write

# propagation
# Consumers a layout passes through unchanged (elementwise-like), per opcode; a chain of
# them keeps the producer's chosen layout for at most _CHAIN_HOPS hops.
_TRANSPARENT = np.random.default_rng(20243).random(NUM_OPCODES) < 0.5
_CHAIN_HOPS = 3
_CHAIN_PASSES = 1.0  # a transparent op streams its tensor once, slowed by short minor rows
# Where a chain ends at an op compiled for its operand's default layout: a conversion
# there, dearer for some consumer opcodes than for others.
_STOP_FACTOR = np.random.default_rng(20244).choice([0.5, 1.0, 4.0], NUM_OPCODES)
_STOP_FIXED_NS = 30_000.0
_STOP_PASSES = 4.0
# The configurable outputs' padded bytes beyond this multiple of their bytes spill to HBM.
_SPILL_CAPACITY = 5.0
_SPILL_PASSES = 3.0
_READ_PASSES = 8.0  # a configurable consumer converting an operand it reads in its own layout


@dataclass(frozen=True)
class Family:
    """One hidden cost model of a task.

    Attributes:
        name: the registry key, written to sidecars.
        task: ``"layout"`` or ``"tile"``.
        cost: ``cost(graph, configs=None) -> [c] float64`` noise-free runtimes (ns);
            graph is a dict of npz arrays or a record of :mod:`tpulearn.data.io`.
        noise: default relative std of the measurement noise (see the module docstring).
        summary: one line on the model's form.
    """

    name: str
    task: str
    cost: Callable[..., np.ndarray]
    noise: float
    summary: str


# ---------------------------------------------------------------------------- helpers


def _context(graph: Any) -> dict[str, Any]:
    """Per-node quantities shared by the layout families."""
    arrays = _node_arrays(graph, ("node_feat", "node_opcode", "edge_index", "node_config_ids"))
    ids = arrays["node_config_ids"].astype(np.int64)
    opcode = arrays["node_opcode"].astype(np.int64)
    edges = arrays["edge_index"].reshape(-1, 2).astype(np.int64)
    n = len(opcode)
    rank, dims, own, elements, nbytes = _static(arrays["node_feat"])
    onehot = arrays["node_feat"][:, _DTYPE_COLUMN]  # as :func:`~.cost._static` reads it
    width_class = np.where(onehot.any(axis=1), onehot.argmax(axis=1), 3)
    first, second = _first_operands(edges, n)
    position = np.full(n, -1)
    position[ids] = np.arange(ids.size)
    return {
        "ids": ids,
        "opcode": opcode,
        "edges": edges,
        "rank": rank,
        "dims": dims,
        "own": own,
        "elements": elements,
        "nbytes": nbytes,
        "width": nbytes / np.maximum(elements, 1.0),
        "width_class": width_class,
        "first": first,
        "second": second,
        "position": position,
        "base": _base_cost(opcode, nbytes),
    }


def _configs(graph: Any, node_config_feat: np.ndarray | None) -> np.ndarray:
    if node_config_feat is None:
        node_config_feat = _node_arrays(graph, ("node_config_feat",))["node_config_feat"]
    return node_config_feat


def _chunked(
    configs: np.ndarray, width: int, variable: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``variable`` over chunks of configs, each chunk at most ~_CHUNK_ELEMENTS temporaries.

    Args:
        configs: [c, nc, 18] ``node_config_feat``.
        width: temporaries per config (elements), sets the chunk size.
        variable: [b, nc, 18] -> [b] config-dependent cost, row by row.
    """
    c = configs.shape[0]
    cost = np.empty(c, np.float64)
    step = max(1, _CHUNK_ELEMENTS // max(width, 1))
    for start in range(0, c, step):
        cost[start : start + step] = variable(np.asarray(configs[start : start + step], np.float64))
    return cost


def _row_sum(x: np.ndarray) -> np.ndarray:
    """[b, k] -> [b] summed in an order that does not depend on b (chunk-invariant).

    numpy sums the rows of a non-C-contiguous array (as fancy indexing returns) in
    another order than those of a contiguous one, and the layout changes with b.
    """
    return np.ascontiguousarray(x).sum(axis=1)


def _effective_output(block: np.ndarray, own: np.ndarray) -> np.ndarray:
    """[b, nc, 6] output layouts: an all -1 block is the compiler default, the node's own."""
    out = block[..., 0:6]
    return np.where((out == -1).all(axis=-1, keepdims=True), own, out)


def _gather_dim(dims: np.ndarray, axis: np.ndarray, default: float) -> np.ndarray:
    """dims[node, axis] broadcast over configs; ``default`` where axis is -1 (no dim).

    Args:
        dims: [k, 6] shapes; axis: [b, k] axis indices (float, -1 = none).
    """
    a = axis.astype(np.int64)
    return np.where(a >= 0, dims[np.arange(dims.shape[0]), np.maximum(a, 0)], default)


def _tile_padding(
    dims: np.ndarray, out: np.ndarray, sublanes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The chosen minor dim's length and how much (lane x sublane) tiles pad an output.

    Args:
        dims: [k, 6] shapes; out: [b, k, 6] chosen layouts; sublanes: [k] per element width.

    Returns:
        ``(lane, pad)``, each [b, k]: the minor dim (128 where there is none) and the
        padded over the real size of the two minor dims.
    """
    lane = _gather_dim(dims, out[..., 0], 128.0)
    sub = _gather_dim(dims, out[..., 1], sublanes)
    return lane, np.ceil(lane / 128) * 128 / lane * (np.ceil(sub / sublanes) * sublanes / sub)


def _operand_reads(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """The input and kernel operand of every configurable node, where it has one.

    Each entry: the block's columns, the consumer positions (into the configurable nodes)
    and opcodes, the producer ids, and the producer's position when it is configurable.
    """
    ids, opcode, position = ctx["ids"], ctx["opcode"], ctx["position"]
    reads = []
    for slot, (operand, cols) in enumerate(
        ((ctx["first"], slice(6, 12)), (ctx["second"], slice(12, 18)))
    ):
        producer = operand[ids]
        has = producer >= 0
        if slot == 1:
            has &= opcode[ids] != 75  # a reshape has no kernel block
        at = np.flatnonzero(has)
        reads.append(
            {
                "slot": slot,
                "cols": cols,
                "consumer": at,
                "opcode": opcode[ids[at]],
                "producer": producer[at],
                "producer_position": position[producer[at]],
            }
        )
    return reads


def _read_layout(read: dict[str, Any], block: np.ndarray, emitted: np.ndarray) -> np.ndarray:
    """[b, k, 6] the layout a configurable consumer reads an operand in.

    Its input / kernel block, or, where the block is all -1 (left to the compiler), the
    layout the producer emits (no conversion).
    """
    chosen = block[:, read["consumer"], read["cols"]]
    return np.where((chosen == -1).all(axis=-1, keepdims=True), emitted, chosen)


def _emitted(read: dict[str, Any], out: np.ndarray, own: np.ndarray) -> np.ndarray:
    """[b, k, 6] the layout each operand's producer emits in each config."""
    pos = read["producer_position"]
    static = np.broadcast_to(own[read["producer"]], (out.shape[0], pos.size, 6))
    return np.where((pos >= 0)[None, :, None], out[:, np.maximum(pos, 0)], static)


# -------------------------------------------------------------------- edge_conversion


def _edge_conversion_model(graph: Any) -> dict[str, Any]:
    ctx = _context(graph)
    edges, position, opcode, nbytes = ctx["edges"], ctx["position"], ctx["opcode"], ctx["nbytes"]
    reads = _operand_reads(ctx)
    # Operand edges of configurable consumers are costed through their blocks (reads);
    # every other edge out of a configurable producer is read by a non-configurable
    # consumer in the producer's default layout, the one the program was compiled for.
    u, v = edges[:, 0], edges[:, 1]
    operand_edge = np.zeros(len(edges), bool)
    if edges.size:
        consumer_configurable = position[u] >= 0
        is_first = ctx["first"][u] == v
        is_kernel = (ctx["second"][u] == v) & (opcode[u] != 75)
        operand_edge = consumer_configurable & (is_first | is_kernel)
    plain = np.flatnonzero((position[v] >= 0) & ~operand_edge) if edges.size else np.zeros(0, int)
    for read in reads:
        p = read["producer"]
        read["edge_ns"] = (_EDGE_FIXED_NS + _EDGE_PASSES * nbytes[p] * _NS_PER_BYTE) * (
            _CONSUMER_FACTOR[read["opcode"]]
        )
        wanted_last = np.array([_WANTED_LAST[int(o)][read["slot"]] for o in read["opcode"]])
        rank_p = ctx["rank"][p]
        read["wanted_axis"] = np.where(wanted_last == 1, rank_p - 1, 0).astype(np.float64)
        passes = np.array([_MINOR_PASSES[int(o)] for o in read["opcode"]])
        # Rank-0/1 operands have no choice of minor dim.
        read["minor_ns"] = np.where(rank_p >= 2, passes * nbytes[p] * _NS_PER_BYTE, 0.0)
    pv = v[plain]
    return {
        "ctx": ctx,
        "own": ctx["own"][ctx["ids"]],
        "reads": reads,
        "plain_position": position[pv],
        "plain_default": ctx["own"][pv],
        "plain_ns": (_EDGE_FIXED_NS + _EDGE_PASSES * nbytes[pv] * _NS_PER_BYTE)
        * _CONSUMER_FACTOR[opcode[u[plain]]],
        "base": ctx["base"],
    }


def _weighted_mismatch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Position-weighted disagreement of minor-to-major layouts [..., 6] -> [...]."""
    return np.ascontiguousarray((a != b) * _EDGE_POSITION_WEIGHT).sum(axis=-1)


def _edge_conversion_variable(model: dict[str, Any], block: np.ndarray) -> np.ndarray:
    out = _effective_output(block, model["own"])
    cost = np.zeros(block.shape[0])
    # Producer emits a configured layout, a non-configurable consumer reads the default.
    emitted = out[:, model["plain_position"]]
    cost += _row_sum(model["plain_ns"] * _weighted_mismatch(emitted, model["plain_default"]))
    for read in model["reads"]:
        emitted = _emitted(read, out, model["ctx"]["own"])
        reads = _read_layout(read, block, emitted)
        edge = read["edge_ns"] * _weighted_mismatch(reads, emitted)
        edge += read["minor_ns"] * (reads[..., 0] != read["wanted_axis"])
        cost += _row_sum(edge)
    return cost


def edge_conversion_cost(graph: Any, node_config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every layout config under the ``edge_conversion`` family.

    Every edge touching a configurable node pays a transpose / copy when the producer's
    emitted layout (its chosen output block, its own layout when all -1, or the node's
    layout features when not configurable) differs from the layout the consumer reads (a
    configurable consumer's input / kernel block, the emitted layout when all -1; a
    non-configurable consumer reads the producer's default layout). The cost is a fixed
    launch plus passes over the tensor's bytes, scaled by the position-weighted mismatch
    (minor positions first) and by a hidden factor of the consumer's opcode. Convolutions,
    dots and reshapes also pay passes when an operand's minor dim is not the one their
    opcode wants.

    Args:
        graph: a dict of layout arrays or a :class:`~tpulearn.data.io.LayoutRecord`.
        node_config_feat: [c, nc, 18] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns, the config-independent base included.
    """
    configs = _configs(graph, node_config_feat)
    model = _edge_conversion_model(graph)
    edges = model["plain_position"].size + sum(r["consumer"].size for r in model["reads"])
    width = max(18 * configs.shape[1], 14 * edges)
    return _chunked(configs, width, lambda b: _edge_conversion_variable(model, b)) + model["base"]


# --------------------------------------------------------------------------- roofline


def _stride(minor_dim: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Bandwidth lost to short rows: a minor dim of fewer bytes than a DMA burst."""
    return np.clip(_BURST_BYTES / np.maximum(minor_dim * width, 1.0), 1.0, _MAX_STRIDE)


def _roofline_model(graph: Any) -> dict[str, Any]:
    ctx = _context(graph)
    ids, opcode, edges, position = ctx["ids"], ctx["opcode"], ctx["edges"], ctx["position"]
    rank, dims, nbytes = ctx["rank"], ctx["dims"], ctx["nbytes"]
    op = opcode[ids]
    # Flops: 2 x contraction (x window) per output element for convolutions and dots,
    # one per element for a reshape (it only moves data).
    p = np.maximum(ctx["first"][ids], 0)
    contraction = np.maximum(dims[p, np.maximum(rank[p] - 1, 0)], 1.0)
    window = np.array([_CONTRACTION_WINDOW.get(int(o), 0.0) for o in op])
    flops = ctx["elements"][ids] * np.where(window > 0, 2 * contraction * window, 1.0)
    # Consumers that cannot fuse into the node read its output again from memory.
    rereads = np.zeros(ids.size)
    if edges.size:
        at = position[edges[:, 1]] >= 0
        np.add.at(rereads, position[edges[at, 1]], _UNFUSED_READS[opcode[edges[at, 0]]])
    reads = _operand_reads(ctx)
    for read in reads:
        read["dims"] = dims[read["producer"]]
        read["width"] = ctx["width"][read["producer"]]
        read["ns"] = nbytes[read["producer"]] * _NS_PER_BYTE
    return {
        "ctx": ctx,
        "own": ctx["own"][ids],
        "dims": dims[ids],
        "width": ctx["width"][ids],
        "sublanes": _SUBLANES[ctx["width_class"][ids]],
        "compute_ns": flops * _NS_PER_FLOP,
        "write_ns": nbytes[ids] * _NS_PER_BYTE * (1.0 + rereads),
        "reads": reads,
        "base": ctx["base"],
    }


def _roofline_variable(model: dict[str, Any], block: np.ndarray) -> np.ndarray:
    out = _effective_output(block, model["own"])
    dims, sublanes = model["dims"], model["sublanes"]
    lane, pad = _tile_padding(dims, out, sublanes)
    compute = model["compute_ns"] * np.minimum(pad, _ROOF_MAX_PADDING)
    memory = model["write_ns"] * _stride(lane, model["width"])
    for read in model["reads"]:
        emitted = _emitted(read, out, model["ctx"]["own"])
        layout = _read_layout(read, block, emitted)
        minor = _gather_dim(read["dims"], layout[..., 0], 128.0)
        converted = (layout != emitted).any(axis=-1)
        term = read["ns"] * (_stride(minor, read["width"]) + _CONVERT_PASSES * converted)
        memory[:, read["consumer"]] += term
    return _row_sum(np.maximum(compute, memory))


def roofline_cost(graph: Any, node_config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every layout config under the ``roofline`` family.

    Each configurable node costs ``max(compute, memory)``. Compute: its flops (2 x
    contraction x window per output element for convolutions and dots, 1 for reshapes)
    inflated by padding its two minor output dims (by the chosen layout) to 128 lanes and
    8 / 16 / 32 sublanes (4 / 2 / 1-byte elements), at most 16-fold. Memory: its output
    written once and read again by every consumer whose opcode cannot fuse into it, and
    its operands read in the layout it reads them in; each stream slowed by short minor
    rows (fewer bytes than a 512-byte burst, at most 16-fold), and an operand read in
    another layout than its producer emits pays a conversion pass. Summed over the
    configurable nodes, plus the config-independent base.

    Args:
        graph: a dict of layout arrays or a :class:`~tpulearn.data.io.LayoutRecord`.
        node_config_feat: [c, nc, 18] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns.
    """
    configs = _configs(graph, node_config_feat)
    model = _roofline_model(graph)
    width = 36 * configs.shape[1]  # ~two [b, nc, 6] operand gathers and a few [b, nc]
    return _chunked(configs, width, lambda b: _roofline_variable(model, b)) + model["base"]


# ------------------------------------------------------------------------ propagation


def _chains(ctx: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Paths from each configurable node through transparent consumers of its rank.

    Returns ``(through_k, through_node, stop_k, stop_parent, stop_node)``: every node a
    configurable node's layout passes through (by its position ``k``; one entry a path,
    at most :data:`_CHAIN_HOPS` hops), and every non-configurable consumer where such a
    path ends at an op that is not transparent (after ``stop_parent``, the last node
    holding the layout).
    """
    ids, opcode, rank, position = ctx["ids"], ctx["opcode"], ctx["rank"], ctx["position"]
    edges = ctx["edges"]
    n = len(opcode)
    # Consumers of each producer, in file order (edge rows are [consumer, producer]).
    order = np.argsort(edges[:, 1], kind="stable")
    consumers = edges[order, 0]
    start = np.searchsorted(edges[order, 1], np.arange(n + 1))
    through_k, through_node, stop_k, stop_parent, stop_node = [], [], [], [], []
    for k, c in enumerate(ids):
        frontier = [int(c)]
        for _ in range(_CHAIN_HOPS):
            grown = []
            for parent in frontier:
                for w in consumers[start[parent] : start[parent + 1]]:
                    if position[w] >= 0 or rank[w] != rank[c]:
                        continue  # configurable (its reads are costed) or reshaped
                    if _TRANSPARENT[opcode[w]]:
                        through_k.append(k)
                        through_node.append(w)
                        grown.append(int(w))
                    else:
                        stop_k.append(k)
                        stop_parent.append(parent)
                        stop_node.append(w)
            frontier = grown
    lists = (through_k, through_node, stop_k, stop_parent, stop_node)
    return tuple(np.asarray(x, np.int64) for x in lists)


def _propagation_model(graph: Any) -> dict[str, Any]:
    ctx = _context(graph)
    ids, nbytes, dims = ctx["ids"], ctx["nbytes"], ctx["dims"]
    through_k, through_node, stop_k, stop_parent, stop_node = _chains(ctx)
    reads = _operand_reads(ctx)
    for read in reads:
        read["ns"] = _READ_PASSES * nbytes[read["producer"]] * _NS_PER_BYTE
    return {
        "ctx": ctx,
        "own": ctx["own"][ids],
        "dims": dims[ids],
        "sublanes": _SUBLANES[ctx["width_class"][ids]],
        "nbytes": nbytes[ids],
        "spill_from": _SPILL_CAPACITY * nbytes[ids].sum(),
        "through_k": through_k,
        "through_dims": dims[through_node],
        "through_width": ctx["width"][through_node],
        "through_ns": _CHAIN_PASSES * nbytes[through_node] * _NS_PER_BYTE,
        "stop_k": stop_k,
        "stop_default": ctx["own"][stop_parent],
        "stop_ns": (_STOP_FIXED_NS + _STOP_PASSES * nbytes[stop_parent] * _NS_PER_BYTE)
        * _STOP_FACTOR[ctx["opcode"][stop_node]],
        "reads": reads,
        "base": ctx["base"],
    }


def _propagation_variable(model: dict[str, Any], block: np.ndarray) -> np.ndarray:
    out = _effective_output(block, model["own"])
    # Transparent consumers stream the tensor in the layout it was emitted in.
    minor = _gather_dim(model["through_dims"], out[:, model["through_k"], 0], 128.0)
    cost = _row_sum(model["through_ns"] * _stride(minor, model["through_width"]))
    # Where a chain ends, an op compiled for the default layout gets a converted copy.
    carried = out[:, model["stop_k"]]
    mismatch = _weighted_mismatch(carried, model["stop_default"])
    cost += _row_sum(model["stop_ns"] * mismatch)
    # Configurable consumers read their operands in their own blocks' layouts.
    for read in model["reads"]:
        emitted = _emitted(read, out, model["ctx"]["own"])
        converted = (_read_layout(read, block, emitted) != emitted).any(axis=-1)
        cost += _row_sum(read["ns"] * converted)
    # Padded outputs beyond the on-chip budget spill: a threshold over the whole graph.
    _, pad = _tile_padding(model["dims"], out, model["sublanes"])
    padded = _row_sum(model["nbytes"] * np.minimum(pad, _ROOF_MAX_PADDING))
    over = np.maximum(padded - model["spill_from"], 0.0)
    return cost + _SPILL_PASSES * over * _NS_PER_BYTE


def propagation_cost(graph: Any, node_config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every layout config under the ``propagation`` family.

    A configurable node's chosen output layout travels through the consumers that keep
    a layout (a hidden half of the opcodes, of the node's rank), up to three hops, along
    every path (a node two paths reach counts twice): each of them streams its tensor in
    that layout, slowed when the chosen minor dim is short,
    and where the path reaches an op that does not keep it, a conversion to the layout
    that op was compiled for (the default layout of its operand) costs a launch plus
    passes over the bytes, scaled by the position-weighted mismatch and a hidden factor
    of that op's opcode. Configurable consumers pay conversion passes for an operand
    read in another layout than emitted. Over the whole graph, the configurable outputs'
    bytes padded to (sublane x 128) tiles beyond 5x their bytes spill. Plus the
    config-independent base.

    Args:
        graph: a dict of layout arrays or a :class:`~tpulearn.data.io.LayoutRecord`.
        node_config_feat: [c, nc, 18] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns.
    """
    configs = _configs(graph, node_config_feat)
    model = _propagation_model(graph)
    entries = model["through_k"].size + 6 * model["stop_k"].size
    width = max(36 * configs.shape[1], 2 * entries)
    return _chunked(configs, width, lambda b: _propagation_variable(model, b)) + model["base"]


# --------------------------------------------------------------------------- registry

# Default noise, calibrated on layout:xla collections of 1,400-1,600 nodes, 10% configurable,
# 300 configs (oracle Kendall tau over 5 graphs, seeds 7 and 8; random / default search):
#   neighbour_vote  0.020: 0.70, 0.67 / 0.54, 0.54
#   edge_conversion 0.025: 0.71, 0.68 / 0.91, 0.90 (a default config's cost scales with how
#                          many nodes it changes, so default configs differ more)
#   roofline        0.040: 0.69, 0.73 / 0.44, 0.45
# The families' configs differ by different amounts, hence different sigmas.
LAYOUT_FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "neighbour_vote": Family(
            "neighbour_vote",
            "layout",
            layout_cost,
            0.02,
            "neighbours vote by opcode for a row/column-major output; conversions",
        ),
        "edge_conversion": Family(
            "edge_conversion",
            "layout",
            edge_conversion_cost,
            0.025,
            "per-edge transposes between emitted and read layouts; wanted minor dims",
        ),
        "roofline": Family(
            "roofline",
            "layout",
            roofline_cost,
            0.04,
            "per node max(padded compute, strided memory + unfused consumer reads)",
        ),
        "propagation": Family(
            "propagation",
            "layout",
            propagation_cost,
            0.03,
            "layouts carried through elementwise chains, conversions where they end; spills",
        ),
    }
)
TILE_FAMILIES: Mapping[str, Family] = MappingProxyType(
    {
        "tile_spill": Family(
            "tile_spill",
            "tile",
            tile_cost,
            0.02,
            "tile count x padded per-tile max(compute, bytes), VMEM spills, pipeline fill",
        ),
    }
)


def get_family(task: str, name: str) -> Family:
    """The family ``name`` of ``task`` (``"layout"`` or ``"tile"``), with a clear error."""
    registry = LAYOUT_FAMILIES if task == "layout" else TILE_FAMILIES
    if name not in registry:
        raise ValueError(
            f"unknown {task} family {name!r}; expected one of {', '.join(sorted(registry))}"
        )
    return registry[name]


def resolve_family(task: str, family: str | None, noise: float | None) -> tuple[Family, float]:
    """The family and noise a writer uses.

    ``family=None`` is the legacy call: the task's original model (``neighbour_vote``,
    ``tile_spill``) with :data:`~.cost.DEFAULT_NOISE` unless ``noise`` is given, so files
    written without a family stay bit-identical. A named family defaults to its own noise.

    Raises:
        ValueError: an unknown family, or a negative or non-finite noise.
    """
    fam = get_family(task, _LEGACY_FAMILY[task] if family is None else family)
    if noise is None:
        noise = DEFAULT_NOISE if family is None else fam.noise
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    return fam, float(noise)


# ---------------------------------------------------------------------------- sidecar


def sidecar_path(root: str | Path, collection: str) -> Path:
    """``<root>/npz/layout/<source>/<search>/synthetic.json`` (``npz/tile/xla/`` for tile)."""
    return collection_dir(root, collection, SPLITS[0]).parent / SIDECAR_NAME


def read_sidecar(root: str | Path, collection: str) -> dict[str, Any]:
    """The sidecar of a synthetic collection: ``{"collection": ..., "splits": {...}}``.

    Each split maps to the family, noise, seed and sizes its files were written with.

    Raises:
        FileNotFoundError: the collection has no sidecar (not written by this package, or
            by a version before sidecars).
    """
    path = sidecar_path(root, collection)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: pass family= to name the cost model of {collection}"
        )
    return json.loads(path.read_text())


def _split_family(root: str | Path, collection: str, split: str, family: str | None) -> Family:
    task = parse_collection(collection)[0]
    if family is None:
        splits = read_sidecar(root, collection).get("splits", {})
        if split not in splits:
            raise ValueError(f"the sidecar of {collection} does not describe split {split!r}")
        family = splits[split]["family"]
    return get_family(task, family)


# ----------------------------------------------------------------------------- oracle


def oracle_scores(
    root: str | Path, collection: str, split: str, family: str | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Noise-free costs and stored (noisy) runtimes of every labelled file of a split.

    Args:
        root: data root holding a synthetic collection.
        collection: e.g. ``"layout:xla:random"`` or ``"tile:xla"``.
        split: ``"train"``, ``"valid"`` or ``"test"`` (test files are unlabelled: none).
        family: the cost model's name; by default read from the collection's sidecar.

    Returns:
        ``{file stem: (cost [c] float64, config_runtime [c] int64)}``, sorted by stem.
    """
    fam = _split_family(root, collection, split, family)
    result = {}
    for path in sorted(collection_dir(root, collection, split).glob("*.npz")):
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        runtime = arrays["config_runtime"]
        if not runtime.any():
            continue  # unlabelled
        result[path.stem] = (fam.cost(arrays), runtime)
    return result


def oracle_metrics(
    root: str | Path, collection: str, split: str, family: str | None = None
) -> dict[str, float]:
    """The metrics a perfect model reaches: the noise-free cost ranked against the files.

    Layout: mean Kendall tau-b and OPA over graphs (and the top-K errors); tile: top-1/5/10
    errors. The gap to a perfect score is the measurement noise alone.

    Args:
        root, collection, split, family: see :func:`oracle_scores`.

    Returns:
        :meth:`tpulearn.metrics.Evaluator.compute` of the oracle's scores.

    Raises:
        ValueError: the split holds no labelled file.
    """
    from ...metrics import Evaluator  # metrics imports tpulearn.data: avoid a cycle

    scores = oracle_scores(root, collection, split, family)
    if not scores:
        raise ValueError(f"no labelled files in {collection_dir(root, collection, split)}")
    evaluator = Evaluator(collection)
    evaluator.add(scores)
    return evaluator.compute()


def _sidecar_record(family: str, noise: float, seed: int, **sizes: Any) -> dict[str, Any]:
    """One split's sidecar entry (JSON-safe)."""
    record = {"family": family, "noise": float(noise), "seed": int(seed)}
    for key, value in sizes.items():
        record[key] = list(value) if isinstance(value, tuple) else value
    return record
