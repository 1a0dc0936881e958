"""ModuleTuningData and TuningData on hand-built messages: which runs become configs."""

import numpy as np
import pytest
from featurize_inputs import int_field, len_field, repeated_ints, small_module

from tpulearn.featurize import FeaturizeError, featurize


def layout_run(nodes, runtime, error=False, default=False):
    """A ConfigProfile with a layout config: ``nodes`` lists each node's tensors' dims."""
    node_msgs = b"".join(
        len_field(1, b"".join(len_field(1, repeated_ints(1, dims)) for dims in tensors))
        for tensors in nodes
    )
    config = len_field(2, len_field(1, node_msgs))  # HloModuleConfig { LayoutConfig }
    profile = len_field(4, int_field(4, runtime))
    return len_field(3, config + int_field(3, error) + profile + int_field(5, default))


def tuning(runs, config_ids, module=None):
    return (
        len_field(1, module or small_module())
        + int_field(2, 99)
        + b"".join(runs)
        + repeated_ints(4, config_ids)
    )


def test_valid_runs_become_rows_and_unsorted_node_ids_are_sorted():
    # config_index_to_node lists the reshape (8) before the dot (7).
    data = tuning(
        [
            layout_run([[[0]], [[1, 0], [0, 1]]], 500, default=True),
            layout_run([[[0]], [[0, 1]]], 0, error=True),  # a failed run: runtime 0
            layout_run([[], [[0, 1], [1, 0], [1, 0]]], 400),
        ],
        [8, 7],
    )
    record = featurize(data)
    assert record.node_config_ids.tolist() == [7, 8]
    assert record.config_runtime.tolist() == [500, 400] and record.labelled
    dot, reshape = record.node_config_feat[0]
    assert dot[:12].tolist() == [1, 0, -1, -1, -1, -1, 0, 1, -1, -1, -1, -1]
    assert reshape.tolist() == [0] + [-1] * 17
    assert record.node_config_feat[1, 1].tolist() == [-1] * 18
    assert record.node_config_feat[1, 0, 12:14].tolist() == [1, 0]


def test_layout_dims_beyond_six_are_cut_as_the_release_does():
    record = featurize(tuning([layout_run([[list(range(8))]], 7)], [7]))
    assert record.node_config_feat[0, 0, :6].tolist() == [0, 1, 2, 3, 4, 5]


def test_a_tuning_message_without_valid_runs_keeps_the_default_config():
    with pytest.warns(UserWarning, match="none of the 1 runs is valid"):
        record = featurize(tuning([layout_run([[[0]]], 0, error=True)], [7]))
    assert record.config_runtime.tolist() == [0] and (record.node_config_feat == -1).all()


def test_inconsistent_tuning_data_names_the_field():
    with pytest.raises(
        FeaturizeError, match=r"runs\[0\]\.module_config\.layout_config\.nodes.*2 node"
    ):
        featurize(tuning([layout_run([[[0]]], 5)], [7, 8]))
    with pytest.raises(FeaturizeError, match=r"tensors.*at most 3 tensors.*found 4"):
        featurize(tuning([layout_run([[[0], [0], [0], [0]]], 5)], [7]))
    with pytest.raises(FeaturizeError, match=r"config_index_to_node.*below 10.*found 10"):
        featurize(tuning([layout_run([[[0]]], 5)], [10]))
    with pytest.raises(FeaturizeError, match="config_index_to_node.*distinct"):
        featurize(tuning([layout_run([[[0]], [[0]]], 5)], [7, 7]))


def tile_run(kernel, output, runtime, default=False, error=False):
    bounds = repeated_ints(1, kernel) + repeated_ints(2, output)
    op_config = len_field(1, len_field(1, bounds))  # HloOpConfig { TileSizeConfig }
    profile = len_field(4, int_field(4, runtime))
    return len_field(3, op_config + int_field(3, error) + profile + int_field(5, default))


def test_tile_runs_and_their_normaliser():
    kernel = len_field(1, small_module()) + int_field(2, (1 << 64) - 5)
    runs = [
        tile_run([2, 3], [4], 100, default=True),
        tile_run([], [], 1),  # 1 ns or less: not a measurement
        tile_run([1], [1], 50, error=True),
        tile_run([5, 6, 7, 8, 9, 10, 11], [2], 80),
    ]
    (record,) = featurize(len_field(1, kernel + b"".join(runs)), "tile")
    assert record.stem == "small_-5"  # fingerprint as a signed hex number
    assert record.config_runtime.tolist() == [100, 80]
    assert record.config_runtime_normalizers.tolist() == [100, 100]
    first, second = record.config_feat
    assert first[:8].tolist() == [2, 3, 0, 0, 0, 0, 5, 6] and first[8:16].tolist() == [
        4,
        0,
        0,
        0,
        0,
        0,
        4,
        4,
    ]
    assert first[16:].tolist() == [0] * 8  # no input bounds: product 0
    assert second[:8].tolist() == [5, 6, 7, 8, 9, 10, 56, 1663200]  # sum, product of all 7


def test_tile_kernels_without_a_default_run_are_an_error():
    kernel = len_field(1, small_module()) + tile_run([1], [1], 10) + tile_run([2], [2], 20)
    with pytest.raises(FeaturizeError, match=r"modules\[0\]\.runs.*is_default"):
        featurize(len_field(1, kernel), "tile")


def test_modules_without_tile_runs_are_skipped_with_a_warning():
    single = len_field(1, small_module()) + tile_run([1], [1], 10, default=True)
    good = (
        len_field(1, small_module()) + tile_run([1], [1], 10, default=True) + tile_run([2], [2], 20)
    )
    with pytest.warns(UserWarning, match=r"skipped 1 module\(s\).*\[0\]"):
        records = featurize(len_field(1, single) + len_field(1, good), "tile")
    assert len(records) == 1 and np.array_equal(records[0].config_runtime, [10, 20])


def test_a_tuning_file_without_a_kernel_to_rank_is_an_error():
    # Its one module has a single run: nothing to rank, so no record (was: an empty list).
    single = len_field(1, small_module()) + tile_run([1], [1], 10, default=True)
    with pytest.raises(FeaturizeError, match=r"field 'modules'.*kernel to rank.*found 1 module"):
        featurize(len_field(1, single), "tile")
