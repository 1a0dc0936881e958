"""layout_tiling: how configurable nodes' outputs and operands tile in a config's layouts,
and the data fields it reads (raw shapes, element widths)."""

import math

import numpy as np
import torch
from tiny_graphs import check_appended_option, check_missing_field_and_tile

from tpulearn.data import LayoutDataset, TpuGraphData, UniformSampler, sample_root
from tpulearn.data.features import DEFAULT_ELEMENT_BYTES, element_bytes
from tpulearn.data.io import read_graph
from tpulearn.data.items import operand_slots
from tpulearn.featurize.features import PRIMITIVE_TYPES
from tpulearn.graph import induced_subgraph
from tpulearn.models.encoders import LAYOUT_TILING_DIM, layout_tiling

UNSET = [-1] * 6
EDGES = [[1, 0], [2, 1], [3, 2]]  # (consumer, producer): a chain


def block(*dims: int) -> list[int]:
    return list(dims) + [-1] * (6 - len(dims))


# Rows of (node 1, node 2): output, input and kernel blocks.
ROWS = [
    [block(0, 1) + UNSET + UNSET, UNSET * 3],
    [UNSET + block(1, 0) + UNSET, block(0) + UNSET + UNSET],
]


def tiling_graph(rows=ROWS) -> TpuGraphData:
    """4 nodes in a chain: 0 an f32 [300, 7] array in layout [0, 1]; 1 (configurable) a
    bf16 [130, 9] one, own layout [1, 0]; 2 (configurable) an f32 [5]; 3 reads 2."""
    g = torch.Generator().manual_seed(0)
    return TpuGraphData(
        node_feat=torch.randn(4, 140, generator=g),
        node_opcode=torch.randint(1, 100, (4,), generator=g),
        edge_index=torch.tensor(EDGES).T,
        edge_slot=torch.from_numpy(operand_slots(np.array(EDGES))),
        node_layout=torch.tensor([block(0, 1), block(1, 0), block(0), block(0)], dtype=torch.int8),
        node_shape=torch.tensor(
            [[300.0, 7, 0, 0, 0, 0], [130, 9, 0, 0, 0, 0]] + [[5] + [0] * 5] * 2
        ),
        node_width=torch.tensor([4, 2, 4, 4], dtype=torch.int8),
        node_config_ids=torch.tensor([1, 2]),
        node_config_feat=torch.as_tensor(rows, dtype=torch.float),
        config_runtime=torch.randint(1, 1000, (len(rows),), generator=g),
        config_index=torch.arange(len(rows)),
        num_nodes=4,
    )


def tiles(lane: float, lane_pad: float, sub_pad: float, width: int) -> list[float]:
    return [math.log2(lane_pad), math.log2(sub_pad), math.log2(lane * width) / 8]


def features(data: TpuGraphData) -> torch.Tensor:
    return layout_tiling(
        data.node_config_feat,
        data.node_config_ids,
        data.node_layout,
        data.node_shape,
        data.node_width,
        data.edge_index,
        data.edge_slot,
    )


def test_element_bytes_follow_the_element_type_columns():
    bits = {"pred": 8, "s8": 8, "u8": 8, "s16": 16, "u16": 16, "f16": 16, "bf16": 16}
    bits |= {"s32": 32, "u32": 32, "f32": 32, "s64": 64, "u64": 64, "f64": 64, "c64": 64}
    bits |= {"c128": 128}
    feat = np.zeros((len(PRIMITIVE_TYPES) + 1, 140), np.float32)
    feat[np.arange(len(PRIMITIVE_TYPES)), 2 + np.arange(len(PRIMITIVE_TYPES))] = 1
    width = element_bytes(feat)
    for (name, _), got in zip(PRIMITIVE_TYPES, width[:-1], strict=True):
        assert got == bits.get(name, 8 * DEFAULT_ELEMENT_BYTES) // 8, name
    assert width[-1] == DEFAULT_ELEMENT_BYTES  # no type set


def test_tiling_of_outputs_and_operands_in_each_config():
    feat = features(tiling_graph())
    assert feat.shape == (2, 2, LAYOUT_TILING_DIM)
    zeros = [0.0, 0.0, 0.0]
    # Node 1 (bf16: 16 sublanes): config 0 writes [0, 1] (130 minor), config 1 its own
    # [1, 0] (9 minor); it reads node 0 as emitted ([0, 1]: 300 minor), then in [1, 0].
    out_1 = [tiles(130, 256 / 130, 16 / 9, 2), tiles(9, 128 / 9, 144 / 130, 2)]
    in_1 = [tiles(300, 384 / 300, 8 / 7, 4), tiles(7, 128 / 7, 304 / 300, 4)]
    # Node 2 (f32 [5]: no second-minor dim, counted as 1); it reads node 1 as node 1
    # writes it in that config.
    out_2 = tiles(5, 128 / 5, 8.0, 4)
    for c in range(2):
        expected = [out_1[c] + in_1[c] + zeros, out_2 + out_1[c] + zeros]
        torch.testing.assert_close(feat[c], torch.tensor(expected))


def test_a_cut_operand_leaves_its_slot_empty_and_the_rest_unchanged():
    data = tiling_graph()
    cut = induced_subgraph(data, torch.tensor([False, True, True, True]))
    assert cut.node_shape.shape == (3, 6) and cut.node_width.shape == (3,)
    whole, part = features(data), features(cut)
    assert part[:, 0, 3:6].abs().sum() == 0  # node 1's input (node 0) is gone
    torch.testing.assert_close(part[:, 0, :3], whole[:, 0, :3])
    torch.testing.assert_close(part[:, 1], whole[:, 1])


def test_dataset_items_carry_raw_shapes_and_widths():
    ds = LayoutDataset(sample_root(), "xla", "default", "train", sampler=UniformSampler(4))
    ds.node_normalizer = ds.fit_normalizer(log=True)
    item = ds[0]
    node_feat = read_graph(ds.files[0])[0]
    assert item.node_shape.dtype == torch.float32 and item.node_width.dtype == torch.int8
    np.testing.assert_array_equal(item.node_shape.numpy(), node_feat[:, 21:27])
    assert set(item.node_width.unique().tolist()) <= {1, 2, 4, 8, 16}


def test_tiling_gives_the_same_scores_on_every_path_and_composes():
    options = {"layout_agreement": True, "readout": "attn"}
    check_appended_option(tiling_graph(), "layout_tiling", LAYOUT_TILING_DIM, 1, **options)


def test_missing_fields_and_tile_models_are_named():
    check_missing_field_and_tile(tiling_graph(), "layout_tiling", "node_shape")
