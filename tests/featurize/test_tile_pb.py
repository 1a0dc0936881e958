"""The bundled tile TuningData decodes into 15 kernels that pass the tile reader's checks."""

import numpy as np
import pytest
from featurize_inputs import TILE_PB

from tpulearn.data import read_tile
from tpulearn.featurize import featurize, read_tuning_data, write_npz


@pytest.fixture(scope="module")
def kernels():
    return featurize(TILE_PB)


def test_fifteen_kernels_round_trip_through_read_tile(kernels, tmp_path):
    assert len(kernels) == 15
    assert len({k.stem for k in kernels}) == 15
    for kernel in kernels:
        back = read_tile(write_npz(kernel, tmp_path / f"{kernel.stem}.npz"))
        assert back.stem == kernel.stem
        assert back.node_feat.shape == (kernel.num_nodes, 140)
        assert np.array_equal(back.node_feat, kernel.node_feat)
        assert np.array_equal(back.node_opcode, kernel.node_opcode)
        assert np.array_equal(back.edge_index, kernel.edge_index)
        assert np.array_equal(back.config_feat, kernel.config_feat)
        assert np.array_equal(back.config_runtime, kernel.config_runtime)
        assert np.array_equal(back.config_runtime_normalizers, kernel.config_runtime_normalizers)
        assert back.labelled and (back.config_runtime > 1).all()


def test_configs_are_the_valid_runs_normalised_by_the_default(kernels):
    msg = read_tuning_data(TILE_PB)
    for kernel, mod in zip(kernels, msg["modules"], strict=True):
        valid = [
            run for run in mod["runs"] if not run["error"] and run["profile"]["compute_time_ns"] > 1
        ]
        assert kernel.config_runtime.tolist() == [r["profile"]["compute_time_ns"] for r in valid]
        (default,) = [r for r in valid if r["is_default"]]
        assert set(kernel.config_runtime_normalizers.tolist()) == {
            default["profile"]["compute_time_ns"]
        }
    # fusion.191 has 581 runs, 2 of them failed: they are not configs.
    assert [k.num_configs for k in kernels][:2] == [61, 579]


def test_tile_config_features_follow_the_release(kernels):
    """Kernel, output, input bounds: 6 values, sum, product; an empty list's product is 0."""
    by_name = {k.stem.split("_")[0]: k for k in kernels}
    first = by_name["fusion.232"].config_feat[0]  # output bounds [2, 26, 4, 2], others empty
    assert first.tolist() == [0] * 8 + [2, 26, 4, 2, 0, 0, 34, 416] + [0] * 8
    assert (by_name["reshape.37"].config_feat == 0).all()  # no bounds at all
    assert by_name["copy.24"].num_nodes == 2 and by_name["copy.24"].edge_index.tolist() == [[1, 0]]
