"""Records -> model inputs: one graph and some of its config rows as a :class:`TpuGraphData`.

The one place a validated record (read from a file or built in memory) becomes the PyG
``Data`` every model takes; the datasets and :class:`tpulearn.predict.Predictor` both go
through it, so a file and the same record in memory score alike.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from .features import (
    FeatureNormalizer,
    element_bytes,
    reencode_minor_to_major,
    tile_config_features,
)
from .io import LayoutRecord, TileRecord
from .schema import LAYOUT_MINOR_TO_MAJOR, SHAPE_DIMS

#: Bytes of config features one scoring item holds at most (:func:`item_configs`).
ITEM_BYTES = 16 << 20


def item_configs(config_feat: np.ndarray, chunk: int, max_bytes: int | None = None) -> int:
    """Configs per item when scoring a graph ``chunk`` configs per pass.

    ``chunk`` without ``max_bytes``; with it, the most whole chunks whose rows of
    ``config_feat`` (the record's config features, one row per config) fit in that many
    bytes, and at least one chunk. A model whose configs score independently
    (``configs_independent``) takes such an item in one call and passes its config-dependent
    layers ``chunk`` configs at a time (``config_chunk``): the config-free pass runs once
    per item instead of once per chunk, and each chunk holds the configs it held as an
    item of its own, so the scores are the same.
    """
    if max_bytes is None:
        return chunk
    row = max(config_feat[:1].nbytes, 1)
    return chunk * max(1, max_bytes // (row * chunk))


class TpuGraphData(Data):
    """One graph and a sample of its configs.

    Keeps the npz key names. ``edge_index`` is [2, num_edges] with row 0 the consumer and
    row 1 the producer (the stored direction, transposed to PyG's layout). Config-level
    tensors have a leading [num_configs] dimension; ``config_index`` holds the rows of the
    file they came from. When batched, ``node_config_ids`` shift with the node offset and
    layout ``node_config_feat`` [C, K, 18] concatenates along the configurable-node axis
    (graphs of one batch must then share C).
    """

    def __inc__(self, key, value, *args, **kwargs):
        if key in ("node_config_ids", "node_splits"):
            return self.num_nodes
        if key == "config_index":
            return 0
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key == "node_config_feat":
            return 1
        return super().__cat_dim__(key, value, *args, **kwargs)


def operand_slots(edge_index: np.ndarray, cap: int = 2) -> np.ndarray:
    """[m] int8 each edge's operand number among its consumer's edges, in stored order.

    ``edge_index`` [m, 2] rows are (consumer, producer) as in the files, whose order keeps
    each consumer's operands in their order. Numbers stop at ``cap`` (the later operands
    share it): models read the first two (a layout config's input and kernel blocks).
    """
    consumer = np.asarray(edge_index).reshape(-1, 2)[:, 0]
    order = np.argsort(consumer, kind="stable")
    ranked = consumer[order]
    first = np.r_[True, ranked[1:] != ranked[:-1]] if ranked.size else np.zeros(0, bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(ranked.size), 0))
    slots = np.empty(ranked.size, np.int8)
    slots[order] = np.minimum(np.arange(ranked.size) - starts, cap)
    return slots


def graph_tensors(
    record: TileRecord | LayoutRecord,
    node_normalizer: FeatureNormalizer | None,
    reencode_layout: bool,
) -> dict[str, torch.Tensor]:
    """The config-independent tensors of a record: node features, opcodes, edges, and
    for models that compare layouts, each node's own minor-to-major order ``node_layout``
    [N, 6] int8 (-1 padded, raw) and each edge's operand number ``edge_slot`` [m] int8;
    for models that tile layouts, each node's raw shape ``node_shape`` [N, 6] float32 (0
    padded) and bytes per element ``node_width`` [N] int8."""
    node_feat = record.node_feat
    reencoded = reencode_minor_to_major(node_feat)
    if reencode_layout:
        node_feat = reencoded
    if node_normalizer is not None:
        node_feat = node_normalizer.transform(node_feat)
    layout = reencoded[:, LAYOUT_MINOR_TO_MAJOR].astype(np.int8)
    return {
        "node_feat": torch.from_numpy(np.ascontiguousarray(node_feat, dtype=np.float32)),
        "node_opcode": torch.from_numpy(record.node_opcode),
        "edge_index": torch.from_numpy(np.ascontiguousarray(record.edge_index.T)),
        "node_layout": torch.from_numpy(np.ascontiguousarray(layout)),
        "edge_slot": torch.from_numpy(operand_slots(record.edge_index)),
        "node_shape": torch.from_numpy(record.node_feat[:, SHAPE_DIMS].astype(np.float32)),
        "node_width": torch.from_numpy(element_bytes(record.node_feat)),
    }


def tile_item(
    record: TileRecord,
    rows: np.ndarray,
    node_normalizer: FeatureNormalizer | None = None,
    config_normalizer: FeatureNormalizer | None = None,
    reencode_layout: bool = True,
    tile_layout: bool = False,
) -> TpuGraphData:
    """A tile kernel with its config rows ``rows`` (int64 indices into the record).

    Args:
        record: a validated tile record.
        rows: the config rows to include, in the order given.
        node_normalizer: fitted node-feature normaliser, or None for raw features.
        config_normalizer: fitted normaliser of the tile config features (24, or 42
            with ``tile_layout``), or None.
        reencode_layout: mark minor_to_major padding (node features 134-139) as -1.
        tile_layout: append :func:`~.features.tile_layout_features` to the 24 config
            features (before normalising).
    """
    config_feat = tile_config_features(record.node_feat, record.config_feat[rows], tile_layout)
    if config_normalizer is not None:
        config_feat = config_normalizer.transform(config_feat)
    return TpuGraphData(
        **graph_tensors(record, node_normalizer, reencode_layout),
        config_feat=torch.from_numpy(np.ascontiguousarray(config_feat, dtype=np.float32)),
        config_runtime=torch.from_numpy(record.config_runtime[rows]),
        config_runtime_normalizers=torch.from_numpy(record.config_runtime_normalizers[rows]),
        config_index=torch.from_numpy(rows),
        num_nodes=record.num_nodes,
        stem=record.stem,
    )


def layout_item(
    record: LayoutRecord,
    rows: np.ndarray,
    node_normalizer: FeatureNormalizer | None = None,
    reencode_layout: bool = True,
) -> TpuGraphData:
    """A layout graph with its config rows ``rows`` (int64 indices into the record).

    Args:
        record: a validated layout record (``node_config_feat`` in memory or memory-mapped).
        rows: the config rows to include, in the order given.
        node_normalizer, reencode_layout: as in :func:`tile_item`.
    """
    # Sorted row order makes memory-mapped reads sequential; restore the sample order.
    order = np.argsort(rows, kind="stable")
    feat = np.empty((rows.shape[0], *record.node_config_feat.shape[1:]), dtype=np.float32)
    feat[order] = record.node_config_feat[rows[order]]
    return TpuGraphData(
        **graph_tensors(record, node_normalizer, reencode_layout),
        node_config_ids=torch.from_numpy(record.node_config_ids),
        node_config_feat=torch.from_numpy(feat),
        config_runtime=torch.from_numpy(record.config_runtime[rows]),
        node_splits=torch.from_numpy(record.node_splits),
        config_index=torch.from_numpy(rows),
        num_nodes=record.num_nodes,
        stem=record.stem,
    )


def configs_alike(data: TpuGraphData) -> bool:
    """Whether an item's configs (two or more) all have the same config features (layout
    ``node_config_feat``, tile ``config_feat``): a model scores them alike whatever their
    measured runtimes, and a ranking loss then has no order to learn from them."""
    feat = data.node_config_feat if "node_config_feat" in data else data.config_feat
    return feat.shape[0] > 1 and bool((feat == feat[:1]).all())
