"""The wire-format decoder and the module encoding on hand-built messages."""

import struct

import numpy as np
import pytest
from featurize_inputs import (
    F32,
    computation,
    instruction,
    int_field,
    len_field,
    module,
    repeated_ints,
    small_module,
    tag,
    varint,
)

from tpulearn.featurize import (
    NODE_FEATURE_NAMES,
    OPCODE_IDS,
    FeaturizeError,
    featurize,
    featurize_module,
    read_hlo_module,
    read_message,
)
from tpulearn.featurize.features import sequence_features
from tpulearn.featurize.wire import Field, Schema, decode

SCALARS = Schema(
    "Scalars",
    {
        1: Field("i64", "int64"),
        2: Field("u64", "uint64"),
        3: Field("i32", "int32"),
        4: Field("flag", "bool"),
        5: Field("d", "double"),
        6: Field("f", "float"),
        7: Field("ints", "int64", repeated=True),
        8: Field("text", "string"),
    },
)
OUTER = Schema(
    "Outer",
    {1: Field("inner", "message", message=SCALARS), 2: Field("items", "count", repeated=True)},
)


def col(name):
    return NODE_FEATURE_NAMES.index(name)


def test_scalars_of_every_wire_type():
    data = (
        int_field(1, -5)  # negative int64: ten bytes
        + int_field(2, (1 << 64) - 1)
        + int_field(3, -7)
        + int_field(4, 1)
        + tag(5, 1)
        + struct.pack("<d", 2.5)
        + tag(6, 5)
        + struct.pack("<f", -1.5)
        + len_field(8, "héllo".encode())
    )
    assert len(varint(-5)) == 10
    msg = decode(data, SCALARS)
    assert msg == {
        "i64": -5,
        "u64": (1 << 64) - 1,
        "i32": -7,
        "flag": True,
        "d": 2.5,
        "f": -1.5,
        "ints": [],
        "text": "héllo",
    }
    assert decode(b"", SCALARS)["i64"] == 0  # proto3 defaults


def test_packed_and_unpacked_repeated_fields_concatenate():
    data = repeated_ints(7, [1, -2, 300]) + repeated_ints(7, [4, 5], packed=False)
    assert decode(data, SCALARS)["ints"] == [1, -2, 300, 4, 5]


def test_unknown_fields_of_every_wire_type_are_skipped():
    unknown = (
        int_field(20, 99)
        + tag(21, 1)
        + b"\x00" * 8
        + len_field(22, b"\xff\xfe anything")
        + tag(23, 5)
        + b"\x00" * 4
        + tag(24, 3)  # a (deprecated) group with a nested group inside
        + int_field(1, 5)
        + tag(25, 3)
        + tag(25, 4)
        + tag(24, 4)
    )
    assert decode(unknown + int_field(1, 42), SCALARS)["i64"] == 42


def test_a_singular_message_seen_twice_merges():
    data = len_field(1, int_field(1, 3) + repeated_ints(7, [1])) + len_field(
        1, int_field(2, 4) + repeated_ints(7, [2])
    )
    inner = decode(data, OUTER)["inner"]
    assert (inner["i64"], inner["u64"], inner["ints"]) == (3, 4, [1, 2])


def test_count_fields_are_counted_not_parsed():
    data = len_field(2, b"\xff\xff not a message") * 3
    assert decode(data, OUTER)["items"] == 3


def test_sequence_features_wrap_in_int64_and_use_the_empty_product():
    assert sequence_features([], 2) == [0, 0, 0, 1]
    assert sequence_features([], 6, empty_product=0)[-2:] == [0, 0]
    # Sums and products run over every value, not only the emitted ones.
    assert sequence_features([2, 3, 4], 2) == [2, 3, 9, 24]
    big = sequence_features([1 << 40, 1 << 40], 6)
    assert big[-1] == 0  # 2^80 wraps to 0 in int64, as the C++ accumulator does
    assert sequence_features([-(1 << 62), -(1 << 62)], 2)[-2] == -(1 << 63)


def test_small_module_graph_with_sparse_64_bit_ids():
    graph = featurize_module(read_hlo_module(small_module()))
    # Nodes in proto order: the fused computation first, then main.
    ops = [OPCODE_IDS[name] for name in ("parameter", "parameter", "reshape", "add")]
    ops += [OPCODE_IDS[name] for name in ("parameter", "parameter", "fusion", "dot")]
    ops += [OPCODE_IDS["reshape"], OPCODE_IDS["tuple"]]
    assert graph.node_opcode.tolist() == ops
    assert graph.node_index[(7 << 32) + 4] == 3
    # One edge per distinct operand (add(p, p) -> one edge), the fusion -> fused root edge.
    assert graph.edge_index.tolist() == [
        [2, 1],
        [3, 0],
        [6, 3],
        [6, 4],
        [7, 5],
        [7, 6],
        [8, 7],
        [9, 7],
        [9, 8],
    ]
    assert graph.node_splits.tolist() == [0, 10]  # no cluster / while / cond computation
    feat = graph.node_feat
    assert feat[:, col("is_root")].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    assert feat[7, col("shape_dimensions_0") : col("shape_dimensions_product") + 1].tolist() == [
        4,
        16,
        0,
        0,
        0,
        0,
        20,
        64,
    ]
    assert feat[7, col("shape_element_type_is_f32")] == 1
    assert feat[5, col("parameter_number")] == 1
    assert feat[
        7, col("layout_minor_to_major_0") : col("layout_minor_to_major_1") + 1
    ].tolist() == [
        1,
        0,
    ]
    assert feat[9, col("shape_element_type_is_tuple")] == 1


def test_packed_and_unpacked_encodings_featurize_identically():
    a = featurize_module(read_hlo_module(small_module(packed=True)))
    b = featurize_module(read_hlo_module(small_module(packed=False)))
    assert np.array_equal(a.node_feat, b.node_feat) and np.array_equal(a.edge_index, b.edge_index)


def test_configurable_nodes_skip_fused_computations():
    record = featurize(small_module())
    # dot (7) and the entry reshape (8); the reshape inside the fusion (2) is not one.
    assert record.node_config_ids.tolist() == [7, 8]
    assert record.node_config_feat.shape == (1, 2, 18) and (record.node_config_feat == -1).all()
    assert record.config_runtime.tolist() == [0] and not record.labelled


def test_splits_after_cluster_while_and_cond_computations():
    comps = [
        computation(1, "while_body", [instruction(10, "parameter", (2,))], 10),
        computation(2, "scalar_add", [instruction(20, "parameter", ())], 20),
        computation(3, "a_cond", [instruction(30, "parameter", ())], 30),
        computation(
            4,
            "main",
            [
                instruction(40, "parameter", (2,)),
                instruction(41, "while", (2,), operands=[40], called=[1, 3]),
            ],
            41,
        ),
    ]
    graph = featurize_module(read_hlo_module(module("m", comps, 4)))
    assert graph.node_splits.tolist() == [0, 1, 3, 5]
    # The while calls body and condition: one edge to each root.
    assert sorted(graph.edge_index[graph.edge_index[:, 0] == 4, 1].tolist()) == [0, 2, 3]


def test_unknown_opcodes_map_to_zero_with_a_warning_naming_them():
    comps = [
        computation(
            1,
            "main",
            [
                instruction(1, "parameter", (4,)),
                instruction(2, "erf", (4,), operands=[1]),
                instruction(3, "erf", (4,), operands=[2]),
                instruction(4, "ragged-dot", (4,), operands=[3]),
            ],
            4,
        )
    ]
    with pytest.warns(UserWarning, match=r"erf \(2x\), ragged-dot \(1x\)"):
        graph = featurize_module(read_hlo_module(module("m", comps, 1)))
    assert graph.node_opcode.tolist() == [OPCODE_IDS["parameter"], 0, 0, 0]


def test_message_kinds_are_told_apart():
    raw = small_module()
    assert read_message(raw)[0] == "module"
    assert read_message(len_field(1, raw))[0] == "hlo"  # HloProto {hlo_module}
    tuning = len_field(1, raw) + int_field(2, 12345) + repeated_ints(4, [7])
    kind, msg = read_message(tuning)
    assert kind == "tuning" and msg["config_index_to_node"] == [7]
    assert read_message(len_field(1, tuning))[0] == "tile"  # TuningData {modules}


def test_element_types_outside_the_one_hot_leave_it_empty():
    comps = [computation(1, "main", [instruction(1, "parameter", (4,), element_type=21)], 1)]
    graph = featurize_module(read_hlo_module(module("m", comps, 1)))  # S4
    assert (
        graph.node_feat[0, col("shape_element_type_is_invalid") : col("shape_dimensions_0")].sum()
        == 0
    )
    comps = [computation(1, "main", [instruction(1, "parameter", (4,), element_type=F32)], 1)]
    graph = featurize_module(read_hlo_module(module("m", comps, 1)))
    assert graph.node_feat[0, col("shape_element_type_is_f32")] == 1


def test_module_check_errors_name_the_field():
    bad_operand = module(
        "m", [computation(1, "main", [instruction(1, "negate", (2,), operands=[99])], 1)], 1
    )
    with pytest.raises(FeaturizeError, match=r"computations\[0\]\.instructions\[0\]\.operand_ids"):
        read_hlo_module(bad_operand)
    bad_root = module("m", [computation(1, "main", [instruction(1, "parameter", (2,))], 5)], 1)
    with pytest.raises(FeaturizeError, match=r"root_id.*found 5"):
        read_hlo_module(bad_root)
    twice = module(
        "m",
        [computation(1, "main", [instruction(1, "parameter"), instruction(1, "parameter")], 1)],
        1,
    )
    with pytest.raises(FeaturizeError, match="unique instruction ids"):
        read_hlo_module(twice)
    callee = module("m", [computation(1, "main", [instruction(1, "call", (), called=[8])], 1)], 1)
    with pytest.raises(FeaturizeError, match="called_computation_ids"):
        read_hlo_module(callee)
