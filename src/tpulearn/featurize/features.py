"""HLO module -> the TpuGraphs graph arrays: node features, opcodes, edges, splits.

This reproduces the encoding of the released files (TpuGraphs ``hlo_encoder.cc`` and
``featurizers.h`` with the "op non-zero" feature set), checked bit for bit against a real
file by the tests:

- Nodes: computations in proto order (callees first, the entry last), instructions in proto
  order within each; no re-sorting. Instruction ids (64-bit, sparse) map through a dict.
- Edges: a row ``[consumer, producer]`` per distinct operand, plus one from each calling
  instruction to the root of every computation it calls; rows sorted, no reverse edges.
- ``node_splits``: a boundary after each computation whose name contains ``cluster``,
  ``while`` or ``cond``, then the node count.
- ``node_feat``: the 140 columns listed in :data:`NODE_FEATURE_NAMES`. Quirks kept on
  purpose: slice columns are start, stride, limit (not the proto's order); sums and products
  run over every entry though only the first 6 (or 2, or 4) are emitted; an empty list's
  product is 1; integers accumulate in int64 (wrapping) and are cast to float32 last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .opcodes import opcode_ids
from .wire import FeaturizeError

# Element-type one-hot order of the feature columns 2-20 (XLA PrimitiveType values): the
# TpuGraphs list order, which is not the enum order (BF16 = 16 comes after F64 = 12).
PRIMITIVE_TYPES = (
    ("invalid", 0),
    ("pred", 1),
    ("s8", 2),
    ("s16", 3),
    ("s32", 4),
    ("s64", 5),
    ("u8", 6),
    ("u16", 7),
    ("u32", 8),
    ("u64", 9),
    ("f16", 10),
    ("f32", 11),
    ("f64", 12),
    ("bf16", 16),
    ("c64", 15),
    ("c128", 18),
    ("tuple", 13),
    ("opaque_type", 14),
    ("token", 17),
)
_TYPE_COLUMN = {value: i for i, (_, value) in enumerate(PRIMITIVE_TYPES)}
_WINDOW_FIELDS = (
    "size",
    "stride",
    "padding_low",
    "padding_high",
    "window_dilation",
    "base_dilation",
)
_INT64_MIN, _INT64_SPAN = -(1 << 63), 1 << 64


def _names() -> list[str]:
    def seq(prefix: str, n: int, aggregate: bool = True) -> list[str]:
        out = [f"{prefix}_{i}" for i in range(n)]
        return out + [f"{prefix}_sum", f"{prefix}_product"] if aggregate else out

    names = ["is_root", "element_size_in_bits"]
    names += [f"shape_element_type_is_{name}" for name, _ in PRIMITIVE_TYPES]
    names += seq("shape_dimensions", 6) + ["shape_tuple_shapes_size", "parameter_number"]
    names += seq("dimensions", 6, aggregate=False)
    for f in _WINDOW_FIELDS:
        names += seq(f"window_{f}", 6)
    names += [f"window_window_reversal_{i}" for i in range(6)]
    names += ["window_window_reversal_true_count", "window_window_reversal_false_count"]
    conv = "convolution_dim_numbers"
    names += [f"{conv}_input_batch_dim", f"{conv}_input_feature_dim"]
    names += seq(f"{conv}_input_spatial_dims", 4, aggregate=False)
    names += [f"{conv}_kernel_input_feature_dim", f"{conv}_kernel_output_feature_dim"]
    names += seq(f"{conv}_kernel_spatial_dims", 4, aggregate=False)
    names += [f"{conv}_output_batch_dim", f"{conv}_output_feature_dim"]
    names += ["feature_group_count", "batch_group_count"]
    for f in ("start", "stride", "limit"):
        names += seq(f"slice_dims_{f}", 2)
    names += seq("dynamic_slice_sizes", 2)
    names += seq("padding_config_edge_padding_low", 2)
    names += seq("padding_config_edge_padding_high", 2)
    names += ["is_stable"] + seq("layout_minor_to_major", 6, aggregate=False)
    return names


#: The 140 node-feature column names, in order.
NODE_FEATURE_NAMES: tuple[str, ...] = tuple(_names())
assert len(NODE_FEATURE_NAMES) == 140


def _wrap(value: int) -> int:
    """Wrap to int64, as the C++ accumulators do."""
    return (value - _INT64_MIN) % _INT64_SPAN + _INT64_MIN


def sequence_features(
    values: Iterable[int], leading: int, empty_product: int = 1, aggregate: bool = True
) -> list[int]:
    """The first ``leading`` values (zero padded), then their sum and product over *all*
    values (int64, wrapping); an empty list's product is ``empty_product``."""
    values = list(values)
    out = values[:leading] + [0] * max(0, leading - len(values))
    if not aggregate:
        return out
    total, product = 0, 1
    for v in values:
        total = _wrap(total + v)
        product = _wrap(product * v)
    return out + [total, product if values else empty_product]


def instruction_features(inst: dict, is_root: bool) -> list[int]:
    """The 140 integer features of one instruction (before the float32 cast)."""
    shape = inst["shape"]
    onehot = [0] * len(PRIMITIVE_TYPES)
    column = _TYPE_COLUMN.get(shape["element_type"])
    if column is not None:
        onehot[column] = 1
    row = [int(is_root), 0, *onehot]
    row += sequence_features(shape["dimensions"], 6)
    row += [shape["tuple_shapes"], inst["parameter_number"]]
    row += sequence_features(inst["dimensions"], 6, aggregate=False)
    dims = inst["window"]["dimensions"]
    for f in _WINDOW_FIELDS:
        row += sequence_features((d[f] for d in dims), 6)
    reversal = [int(d["window_reversal"]) for d in dims]
    row += sequence_features(reversal, 6, aggregate=False)
    row += [sum(reversal), len(reversal) - sum(reversal)]
    conv = inst["convolution_dimension_numbers"]
    row += [conv["input_batch_dimension"], conv["input_feature_dimension"]]
    row += sequence_features(conv["input_spatial_dimensions"], 4, aggregate=False)
    row += [conv["kernel_input_feature_dimension"], conv["kernel_output_feature_dimension"]]
    row += sequence_features(conv["kernel_spatial_dimensions"], 4, aggregate=False)
    row += [conv["output_batch_dimension"], conv["output_feature_dimension"]]
    row += [inst["feature_group_count"], inst["batch_group_count"]]
    slices = inst["slice_dimensions"]
    for f in ("start", "stride", "limit"):
        row += sequence_features((s[f] for s in slices), 2)
    row += sequence_features(inst["dynamic_slice_sizes"], 2)
    padding = inst["padding_config"]["dimensions"]
    row += sequence_features((p["edge_padding_low"] for p in padding), 2)
    row += sequence_features((p["edge_padding_high"] for p in padding), 2)
    row += [int(inst["is_stable"])]
    row += sequence_features(shape["layout"]["minor_to_major"], 6, aggregate=False)
    return row


@dataclass(frozen=True)
class ModuleGraph:
    """The graph arrays of one HLO module, with the npz key names.

    Shapes: ``node_feat`` [n, 140] float32, ``node_opcode`` [n] int64, ``edge_index``
    [m, 2] int64 (row ``[consumer, producer]``), ``node_splits`` [k] int64. ``node_index``
    maps instruction ids to node indices; ``instructions`` lists the decoded instructions
    in node order.
    """

    name: str
    node_feat: np.ndarray
    node_opcode: np.ndarray
    edge_index: np.ndarray
    node_splits: np.ndarray
    node_index: dict[int, int]
    instructions: list[dict]

    @property
    def num_nodes(self) -> int:
        return self.node_feat.shape[0]


def featurize_module(module: dict, path: str | Path | None = None) -> ModuleGraph:
    """Encode a decoded (and checked) HloModuleProto as TpuGraphs graph arrays.

    Args:
        module: from :func:`tpulearn.featurize.proto.read_hlo_module` or the ``module`` of
            a tuning message.
        path: the source file, named in warnings and errors.
    """
    comps = module["computations"]
    roots = {c["id"]: c["root_id"] for c in comps}
    instructions = [inst for c in comps for inst in c["instructions"]]
    node_index = {inst["id"]: i for i, inst in enumerate(instructions)}
    if len(node_index) != len(instructions):
        raise FeaturizeError(path, "module.computations", "unique instruction ids", "repeats")

    rows, edges, splits = [], [], [0]
    for comp in comps:
        for inst in comp["instructions"]:
            rows.append(instruction_features(inst, inst["id"] == comp["root_id"]))
            u = node_index[inst["id"]]
            edges.extend((u, node_index[v]) for v in set(inst["operand_ids"]))
            edges.extend((u, node_index[roots[c]]) for c in inst["called_computation_ids"])
        name = comp["name"]
        if "cluster" in name or "while" in name or "cond" in name:
            splits.append(len(rows))
    if splits[-1] < len(rows):
        splits.append(len(rows))

    where = str(path) if path is not None else module["name"]
    opcodes = opcode_ids([inst["opcode"] for inst in instructions], where)
    edge_index = np.array(edges, dtype=np.int64).reshape(-1, 2)
    if edge_index.size:
        edge_index = np.unique(edge_index, axis=0)  # lexicographic rows, as the release
    return ModuleGraph(
        name=module["name"],
        node_feat=np.array(rows, dtype=np.int64).astype(np.float32),
        node_opcode=np.array(opcodes, dtype=np.int64),
        edge_index=edge_index,
        node_splits=np.array(splits, dtype=np.int64),
        node_index=node_index,
        instructions=instructions,
    )
