"""Tile kernels: output tile configs and the hidden tile cost model.

The kernel's root output is cut into tiles; tile count, lane/sublane padding, per-tile
overhead and VMEM spills trade off (see :func:`tile_cost`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..schema import TILE_CONFIG_FEAT_DIM
from .cost import (
    _MAX_SPILL,
    _NODE_OVERHEAD_NS,
    _NS_PER_BYTE,
    _NS_PER_VECTOR_OP,
    _OPCODE_COST,
    _TILE_OVERHEAD_NS,
    _VMEM_BYTES,
    _duplicate_rows,
    _node_arrays,
    _noisy,
    _static,
)
from .graphs import _graph


def _tile_root(node_feat: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The kernel's output (its last node): dims [r], minor-to-major [r], bytes per element."""
    rank, dims, layout, elements, nbytes = _static(node_feat[-1:])
    r = int(rank[0])
    return dims[0, :r], layout[0, :r].astype(np.int64), float(nbytes[0] / elements[0])


def _tile_configs(rng: np.random.Generator, node_feat: np.ndarray, num_configs: int) -> np.ndarray:
    """[c, 24] float32 ``config_feat``: output tile sizes (cols 8-13, sum 14, product 15).

    Row 0 is the compiler's default (one 8 x 128 tile along the minor dims); the others
    take power-of-two sizes per dim, or the whole dim.
    """
    dims, layout, _ = _tile_root(node_feat)
    r = dims.size
    tiles = 2.0 ** np.floor(rng.random((num_configs, r)) * (np.log2(dims) + 1))
    whole = rng.random((num_configs, r)) < 0.15
    tiles = np.minimum(np.where(whole, dims, tiles), dims)
    default = np.ones(r)
    for pos, size in zip(layout[:2], (128.0, 8.0), strict=False):
        default[pos] = min(dims[pos], size)
    tiles[0] = default
    feat = np.zeros((num_configs, TILE_CONFIG_FEAT_DIM), np.float32)
    feat[:, 8 : 8 + r] = tiles
    feat[:, 14] = tiles.sum(axis=1)
    feat[:, 15] = tiles.prod(axis=1)
    return feat


def tile_cost(graph: Any, config_feat: np.ndarray | None = None) -> np.ndarray:
    """Noise-free runtime (ns) of every tile config under the hidden cost model.

    The root output is cut into tiles (config cols 8-13, one per dim); each tile is padded
    to 128 lanes x 8 sublanes along the root's two most minor dims (its layout, node
    features 134-139), streams one tile per kernel input plus the output through VMEM
    (spilling when they do not fit) and runs every node of the kernel on it.

    Args:
        graph: a dict of tile arrays (as returned by :func:`make_tile_graph`) or a
            :class:`~tpulearn.data.io.TileRecord`.
        config_feat: [c, 24] configs to cost; the graph's own by default.

    Returns:
        [c] float64 runtimes in ns.
    """
    arrays = _node_arrays(graph)
    if config_feat is None:
        config_feat = _node_arrays(graph, ("config_feat",))["config_feat"]
    opcode = arrays["node_opcode"].astype(np.int64)
    dims, layout, width = _tile_root(arrays["node_feat"])
    tiles = np.clip(np.asarray(config_feat, np.float64)[:, 8 : 8 + dims.size], 1, dims)
    count = np.ceil(dims / tiles).prod(axis=1)
    padded = tiles.copy()
    for pos, size in zip(layout[:2], (128.0, 8.0), strict=False):
        padded[:, pos] = np.ceil(padded[:, pos] / size) * size
    elements = padded.prod(axis=1)

    producers = np.unique(arrays["edge_index"].reshape(-1, 2)[:, 0])
    inputs = len(opcode) - producers.size  # nodes without operands stream in
    tile_bytes = elements * width * (inputs + 1)
    compute = elements * _OPCODE_COST[opcode[producers]].sum() * _NS_PER_VECTOR_OP
    per_tile = _TILE_OVERHEAD_NS + np.maximum(compute, tile_bytes * _NS_PER_BYTE)
    # Tiles that overflow VMEM spill to HBM: up to _MAX_SPILL times slower.
    per_tile *= 1 + (_MAX_SPILL - 1) * np.maximum(1 - _VMEM_BYTES / tile_bytes, 0)
    # Loads overlap compute except the first tile's (pipeline fill): big tiles pay for it.
    fill = tile_bytes * _NS_PER_BYTE
    return count * per_tile + fill + _NODE_OVERHEAD_NS * len(opcode)


def make_tile_graph(
    rng: np.random.Generator,
    num_nodes: int,
    num_configs: int,
    labelled: bool = True,
    *,
    noise: float | None = None,
    duplicate_fraction: float = 0.0,
    family: str | None = None,
) -> dict[str, np.ndarray]:
    """One synthetic tile kernel, in memory, with the keys and dtypes of a tile npz.

    Args:
        rng: the only source of randomness.
        num_nodes: n >= 1; the last node is the kernel's root (output).
        num_configs: c >= 1; config 0 is the compiler default.
        labelled: False gives all-zero runtimes and normalizers of 1, as in test files.
        noise: relative std of the measurement noise; 0 stores ``rint(cost)``. Default:
            :data:`~.cost.DEFAULT_NOISE` without a family, else the family's noise.
        duplicate_fraction: share of config rows (after row 0) overwritten by copies.
        family: a key of :data:`~.families.TILE_FAMILIES`, the hidden cost model;
            ``None`` is :func:`tile_cost` (``tile_spill``).

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``config_feat`` [c, 24] float32, ``config_runtime`` [c] int64 and
        ``config_runtime_normalizers`` [c] int64 (the default config's runtime).
    """
    from .families import resolve_family  # families builds on this module

    fam, noise = resolve_family("tile", family, noise)
    if num_configs < 1:
        raise ValueError(f"num_configs must be >= 1, got {num_configs}")
    num_configurable = int(rng.integers(0, min(2, max(num_nodes - 3, 0)) + 1))
    graph = _graph(rng, num_nodes, num_configurable, "xla", root_rank=True)
    config_feat = _tile_configs(rng, graph["node_feat"], num_configs)
    _duplicate_rows(rng, config_feat[1:], duplicate_fraction)
    if labelled:
        runtime = _noisy(rng, fam.cost(graph, config_feat), noise)
        normalizers = np.full(num_configs, runtime[0], np.int64)
    else:
        runtime = np.zeros(num_configs, np.int64)
        normalizers = np.ones(num_configs, np.int64)
    return {
        "node_feat": graph["node_feat"],
        "node_opcode": graph["node_opcode"],
        "edge_index": graph["edge_index"],
        "config_feat": config_feat,
        "config_runtime": runtime,
        "config_runtime_normalizers": normalizers,
    }
