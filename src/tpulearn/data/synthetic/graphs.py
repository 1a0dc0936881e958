"""Random XLA-like program structure: opcodes, operands, shapes, layouts and node features.

Graphs are topologically ordered and encoded exactly as the real release's ``node_feat``
(see :mod:`tpulearn.data.schema`). Configurable nodes are exactly the nodes with the
opcodes in :data:`CONFIGURABLE_OPCODES`.
"""

from __future__ import annotations

import numpy as np

from ..schema import NODE_FEAT_DIM

CONFIGURABLE_OPCODES = (26, 34, 75)  # convolution, dot, reshape

# Opcode pools by arity, ids as they occur in the real files (63 parameter, 24 constant).
_LEAF = np.array([63, 63, 63, 24])
_UNARY = np.array([25, 45, 45, 81, 94])  # shape-preserving
_BINARY = np.array([2, 2, 20, 32, 57, 59, 59, 95, 95])
_TERNARY = np.array([70, 83])
_RESHAPING = np.array([13, 13, 92, 37])  # unary, with a shape of their own
_KIND_PROBS = np.array([0.12, 0.33, 0.35, 0.05, 0.15])  # leaf, unary, binary, ternary, reshaping
_CONFIGURABLE_PROBS = {"xla": (0.6, 0.2, 0.2), "nlp": (0.0, 0.85, 0.15)}  # conv, dot, reshape

# Element types PRED, S32, BF16, F32: their one-hot feature columns (2 + the position in the
# TpuGraphs type list, where BF16 follows F64) and bytes.
_DTYPE_COLUMN = np.array([3, 6, 15, 13])
_DTYPE_BYTES = np.array([1, 4, 2, 4])
_DTYPE_PROBS = np.array([0.05, 0.10, 0.25, 0.60])
_DIMS = np.array([1, 2, 3, 4, 8, 16, 24, 32, 64, 96, 128, 192, 256, 384, 512, 1024])
_MAX_ELEMENTS = 1 << 22
# Window / slice "product" columns hold 1 (the empty product) on every real node.
_PRODUCT_ONE_COLUMNS = [44, 52, 60, 68, 76, 84, 112, 116, 120, 124, 128, 132]
_MTM = slice(134, 140)  # layout minor_to_major, zero padded


def _layouts(rng: np.random.Generator, ranks: np.ndarray, default_prob: float) -> np.ndarray:
    """Random minor-to-major permutations of ``range(rank)``, padded with -1.

    Args:
        ranks: [m] tensor ranks in 0..6.
        default_prob: probability of the XLA default ``rank-1, ..., 0`` instead.

    Returns:
        [m, 6] float64.
    """
    pad = np.arange(6)[None, :] >= ranks[:, None]
    keys = np.where(pad, 2.0, rng.random((len(ranks), 6)))
    default = rng.random(len(ranks)) < default_prob
    # Descending keys give the default order once padding is pushed to the end.
    keys[default] = np.where(pad[default], 2.0, -np.arange(6.0))
    return np.where(pad, -1.0, np.argsort(keys, axis=1))


def _shapes(rng: np.random.Generator, ranks: np.ndarray) -> np.ndarray:
    """[m, 6] dims (trailing zeros) with at most ``_MAX_ELEMENTS`` elements per tensor."""
    dims = rng.choice(_DIMS, size=(len(ranks), 6)).astype(np.float64)
    dims[np.arange(6)[None, :] >= ranks[:, None]] = 1.0
    for _ in range(40):  # halve the largest dim of oversized tensors
        big = np.flatnonzero(dims.prod(axis=1) > _MAX_ELEMENTS)
        if big.size == 0:
            break
        col = dims[big].argmax(axis=1)
        dims[big, col] = np.maximum(1.0, dims[big, col] // 2)
    dims[np.arange(6)[None, :] >= ranks[:, None]] = 0.0
    return dims


def _operands(rng: np.random.Generator, arity: np.ndarray, chain_to: np.ndarray) -> np.ndarray:
    """Edges ``[u, v]`` (u consumes v, u > v), operands of a node in order, no duplicates.

    Producers are mostly a few nodes back (as in real programs), sometimes far back;
    ``chain_to[u] >= 0`` forces the first operand of u (used to chain configurable nodes).
    """
    u = np.repeat(np.arange(len(arity)), arity)
    back = rng.geometric(0.35, size=u.size)
    far = rng.random(u.size) < 0.1
    back[far] = rng.integers(1, np.maximum(u[far], 1) + 1)
    v = np.maximum(u - back, 0)
    first = np.r_[True, u[1:] != u[:-1]] if u.size else np.zeros(0, bool)
    forced = first & (chain_to[u] >= 0)
    v[forced] = chain_to[u[forced]]
    _, keep = np.unique(u * len(arity) + v, return_index=True)
    keep.sort()  # back to operand order
    return np.stack([u[keep], v[keep]], axis=1).astype(np.int64)


def _resolve_roots(parent: np.ndarray) -> np.ndarray:
    """Follow ``parent`` pointers (parent < child) to the fixed points, by pointer jumping."""
    root = parent.copy()
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            return root
        root = nxt


def _graph(
    rng: np.random.Generator,
    num_nodes: int,
    num_configurable: int,
    source: str = "xla",
    num_splits: int = 1,
    root_rank: bool = False,
) -> dict[str, np.ndarray]:
    """A random topologically ordered XLA-like graph.

    Configurable nodes (opcodes 26/34/75) are exactly the nodes with those opcodes.
    Elementwise nodes inherit shape, element type and layout from their first operand.
    ``root_rank`` gives the last node operands and a shape of its own of rank 2-4 (the
    output of a tile kernel).

    Returns:
        ``node_feat`` [n, 140] float32, ``node_opcode`` [n] uint8, ``edge_index`` [m, 2]
        int64, ``node_config_ids`` [nc] int64 and ``node_splits`` [1, k] int64.
    """
    n = num_nodes
    if not 0 <= num_configurable <= max(0, n - 2):
        raise ValueError(f"need 0 <= num_configurable <= num_nodes - 2, got {num_configurable}")
    ids = np.sort(rng.choice(np.arange(2, n), size=num_configurable, replace=False))
    kind = rng.choice(5, size=n, p=_KIND_PROBS)
    kind[:2] = 0  # programs start with their parameters
    if root_rank and n >= 2 and n - 1 not in ids:
        kind[-1] = 4
    pools = (_LEAF, _UNARY, _BINARY, _TERNARY, _RESHAPING)
    opcode = np.zeros(n, np.int64)
    for k, pool in enumerate(pools):
        opcode[kind == k] = rng.choice(pool, size=int((kind == k).sum()))
    opcode[ids] = rng.choice(CONFIGURABLE_OPCODES, size=ids.size, p=_CONFIGURABLE_PROBS[source])
    arity = np.array([0, 1, 2, 3, 1])[kind]
    arity[ids] = np.where(opcode[ids] == 75, 1, 2)

    # A third of the configurable nodes read the previous one: layout choices interact.
    chain_to = np.full(n, -1)
    chained = rng.random(ids.size) < 0.35
    chained[:1] = False
    chain_to[ids[chained]] = ids[np.flatnonzero(chained) - 1]
    edge_index = _operands(rng, arity, chain_to)
    first_operand = _first_operands(edge_index, n)[0]

    # Leaves, reshaping and configurable nodes get a shape of their own; the rest inherit.
    fresh = (kind == 0) | (kind == 4) | (first_operand < 0)
    fresh[ids] = True
    rank = rng.choice(6, size=n, p=[0.15, 0.3, 0.2, 0.1, 0.15, 0.1])
    rank[ids] = rng.choice([2, 3, 4], size=ids.size, p=[0.4, 0.2, 0.4])
    if root_rank:
        fresh[-1] = True
        rank[-1] = rng.integers(2, 5)
    dims = _shapes(rng, rank)
    if root_rank:  # a kernel worth tiling: no tiny output dims
        dims[-1] = np.where(dims[-1] > 0, np.maximum(dims[-1], 8), 0)
    layout = _layouts(rng, rank, default_prob=0.6)
    dtype = rng.choice(len(_DTYPE_PROBS), size=n, p=_DTYPE_PROBS)
    src = _resolve_roots(np.where(fresh, np.arange(n), first_operand))
    dims, layout, dtype, rank = dims[src], layout[src], dtype[src], rank[src]

    splits = np.sort(rng.choice(np.arange(1, n), size=min(num_splits, n) - 1, replace=False))
    splits = np.r_[0, splits, n].astype(np.int64)
    feat = _node_features(opcode, dims, rank, layout, dtype, roots=splits[1:] - 1)
    return {
        "node_feat": feat,
        "node_opcode": opcode.astype(np.uint8),
        "edge_index": edge_index,
        "node_config_ids": ids.astype(np.int64),
        "node_splits": splits[None, :],
    }


def _node_features(opcode, dims, rank, layout, dtype, roots) -> np.ndarray:
    """[n, 140] float32 raw node features in the real files' encoding."""
    n = len(opcode)
    feat = np.zeros((n, NODE_FEAT_DIM), np.float32)
    feat[roots, 0] = 1.0  # is_root
    feat[np.arange(n), _DTYPE_COLUMN[dtype]] = 1.0
    feat[:, 21:27] = dims
    feat[:, 27] = dims.sum(axis=1)
    feat[:, 28] = np.where(dims > 0, dims, 1.0).prod(axis=1)
    params = np.flatnonzero(opcode == 63)
    feat[params, 30] = np.arange(params.size)
    feat[:, _PRODUCT_ONE_COLUMNS] = 1.0
    conv = opcode == 26
    feat[conv, 37:39] = 3.0  # 3x3 window, stride 1
    feat[conv, 43:45] = (6.0, 9.0)
    feat[conv, 45:47] = 1.0
    feat[conv, 51] = 2.0
    feat[conv, 107:109] = 1.0  # feature / batch group count
    feat[opcode == 34, 31] = np.maximum(rank[opcode == 34] - 1, 0)  # contracting dim
    feat[:, _MTM] = np.maximum(layout, 0.0)  # the files pad with 0
    return feat


def _first_operands(edge_index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First and second operand of every node ([n] each, -1 where missing).

    Operands are the rows of ``edge_index`` with ``u`` = the node, in file order.
    """
    first = np.full(n, -1, np.int64)
    second = np.full(n, -1, np.int64)
    if edge_index.size:
        order = np.argsort(edge_index[:, 0], kind="stable")
        u, v = edge_index[order, 0], edge_index[order, 1]
        start = np.r_[True, u[1:] != u[:-1]]
        first[u[start]] = v[start]
        at = np.flatnonzero(start) + 1
        has_second = at < u.size
        at = at[has_second]
        ok = u[at] == u[start][has_second]
        second[u[at[ok]]] = v[at[ok]]
    return first, second
