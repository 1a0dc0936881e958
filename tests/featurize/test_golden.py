"""Featurizing the bundled tuning protobuf reproduces the released npz file bit for bit.

``pb/module_tuning_data_layout.pb`` holds the HloModuleProto behind
``npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz`` and 122 of its layout runs.
"""

import warnings

import numpy as np
import pytest
from featurize_inputs import LAYOUT_NPZ, LAYOUT_PB, SAMPLE

from tpulearn.data import read_layout
from tpulearn.featurize import (
    NODE_FEATURE_NAMES,
    configurable_nodes,
    featurize,
    featurize_module,
    read_module_tuning_data,
)


@pytest.fixture(scope="module")
def released():
    return np.load(LAYOUT_NPZ)


@pytest.fixture(scope="module")
def record():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every opcode of this module is in the vocabulary
        return featurize(LAYOUT_PB)


def test_node_features_all_140_columns_are_bit_identical(record, released):
    ours, theirs = record.node_feat, released["node_feat"]
    assert ours.dtype == theirs.dtype == np.float32
    assert ours.shape == theirs.shape == (3163, 140)
    differing = [NODE_FEATURE_NAMES[c] for c in range(140) if (ours[:, c] != theirs[:, c]).any()]
    assert differing == []
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))  # bits, not values


def test_the_quirky_columns_are_exercised_by_the_golden_file(released):
    feat = released["node_feat"]
    names = NODE_FEATURE_NAMES
    # Not vacuous: the file has slices, windows, convolutions and bf16 nodes.
    assert (feat[:, names.index("slice_dims_limit_0")] > 0).any()
    assert (feat[:, names.index("window_size_product")] > 1).any()
    assert (feat[:, names.index("convolution_dim_numbers_output_feature_dim")] > 0).any()
    assert (feat[:, names.index("shape_element_type_is_bf16")] == 1).any()
    # Products over empty lists are 1 on every node (window, slice, padding products).
    for name in (
        "window_stride_product",
        "slice_dims_start_product",
        "dynamic_slice_sizes_product",
    ):
        column = feat[:, names.index(name)]
        assert (column[column != 0] >= 1).all() and (column == 1).sum() > 3000


def test_graph_arrays_match(record, released):
    assert record.node_opcode.dtype == np.int64
    assert np.array_equal(record.node_opcode, released["node_opcode"].astype(np.int64))
    assert np.array_equal(record.edge_index, released["edge_index"])  # sorted, [consumer, producer]
    assert record.edge_index.shape == (5112, 2)
    assert np.array_equal(record.node_splits, released["node_splits"].reshape(-1))
    assert record.node_splits.tolist() == [0, 449, 453, 467, 471, 498, 502, 3163]
    assert np.array_equal(record.node_config_ids, released["node_config_ids"])


def test_each_valid_run_is_exactly_one_row_of_the_released_file(record, released):
    """Matching rule: a run matches a row when the whole [62, 18] config and the runtime are
    equal. Each of the 112 valid runs matches exactly one row, and together they are rows
    0-111 (the release shuffled them)."""
    feat, runtime = released["node_config_feat"], released["config_runtime"]
    assert record.node_config_feat.shape == (112, 62, 18)
    rows = []
    for config, ns in zip(record.node_config_feat, record.config_runtime, strict=True):
        hits = np.flatnonzero((feat == config).all(axis=(1, 2)) & (runtime == ns))
        assert hits.size == 1
        rows.append(int(hits[0]))
    assert sorted(rows) == list(range(112))
    assert rows != list(range(112))  # the release's order is not the runs' order
    # Runtime alone would not do: some runs' runtimes occur in other rows too.
    assert any((runtime == ns).sum() > 1 for ns in record.config_runtime)


def test_error_runs_are_the_ten_left_out(record):
    """The 10 runs with the error flag carry runtime 0; they are not measurements."""
    msg = read_module_tuning_data(LAYOUT_PB)
    errors = [run for run in msg["runs"] if run["error"]]
    assert len(msg["runs"]) == 122 and len(errors) == 10
    assert all(run["profile"]["compute_time_ns"] == 0 for run in errors)
    assert (record.config_runtime > 0).all() and record.labelled


def test_written_record_is_a_valid_dataset_file(record, released, tmp_path):
    from tpulearn.featurize import write_npz

    back = read_layout(write_npz(record, tmp_path / "unet.npz"))
    assert back.node_splits.tolist() == record.node_splits.tolist()
    assert np.array_equal(back.node_config_feat, record.node_config_feat)


def test_config_index_to_node_holds_node_indices_that_the_rule_reproduces(released):
    """The tuning proto's config_index_to_node are node indices (not instruction ids), and
    the configurable-node rule (convolution, dot, reshape outside fusions) gives them."""
    msg = read_module_tuning_data(LAYOUT_PB)
    graph = featurize_module(msg["module"])
    assert msg["config_index_to_node"] == released["node_config_ids"].tolist()
    assert np.array_equal(configurable_nodes(msg["module"], graph), released["node_config_ids"])
    assert sorted(graph.node_index.values()) == list(range(3163))


def _computation_labels(nf, opcode, edges):
    """Computation membership of the nodes of a released file, recovered from its edges:
    connected components once the caller -> callee-root edges are removed."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    callers = [41, 102, 70, 14, 23, 93, 56, 72, 82, 84, 5, 31, 111, 104, 115, 116, 117, 42]
    call = (nf[edges[:, 1], 0] == 1) & np.isin(opcode[edges[:, 0]], callers)
    inner = edges[~call]
    n = opcode.shape[0]
    adjacency = coo_matrix((np.ones(len(inner)), (inner[:, 0], inner[:, 1])), shape=(n, n))
    labels = connected_components(adjacency, directed=False)[1]
    fused = set(labels[edges[call & (opcode[edges[:, 0]] == 41), 1]].tolist())
    return labels, fused


def test_released_files_agree_with_the_configurable_node_rule():
    """Evidence for the rule on every bundled layout file (six distinct graphs): the
    configurable nodes are the convolution / dot / reshape nodes outside fused computations;
    four test graphs have reshapes inside fusions, and exactly those are left out."""
    left_out = 0
    for path in sorted((SAMPLE / "npz" / "layout").rglob("*.npz")):
        data = np.load(path)
        nf, opcode = data["node_feat"], data["node_opcode"].astype(np.int64)
        labels, fused = _computation_labels(nf, opcode, data["edge_index"])
        candidates = np.flatnonzero(np.isin(opcode, [26, 34, 75]))
        predicted = [i for i in candidates if labels[i] not in fused]
        assert predicted == data["node_config_ids"].tolist(), path.name
        left_out += len(candidates) - len(predicted)
    assert left_out == 14  # 4 + 2 + 4 + 4 fused reshapes across the test files
