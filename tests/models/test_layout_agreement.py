"""layout_agreement: where configurable nodes' layouts disagree with their own and their
operands' (the copies a compiler inserts), and the data fields it reads."""

import numpy as np
import torch
from tiny_graphs import check_appended_option, check_missing_field_and_tile
from torch_geometric.data import Batch

from tpulearn.data import LayoutDataset, TpuGraphData, UniformSampler, sample_root
from tpulearn.data.items import operand_slots
from tpulearn.graph import induced_subgraph
from tpulearn.models import SAGE
from tpulearn.models.encoders import LAYOUT_AGREEMENT_DIM, layout_agreement, operands

UNSET = [-1] * 6
EDGES = [[1, 0], [2, 1], [3, 2], [3, 1], [4, 3], [5, 4]]  # (consumer, producer)


def block(*dims: int) -> list[int]:
    return list(dims) + [-1] * (6 - len(dims))


def chain_graph(num_configs: int = 6, seed: int = 0, rows=None) -> TpuGraphData:
    """6 nodes; 1, 3 and 4 configurable; 3 reads (2, 1), 4 reads 3: node 3's kernel and
    node 4's input are configurable producers, the other operands config-free."""
    g = torch.Generator().manual_seed(seed)
    if rows is None:
        rows = torch.randint(-1, 2, (num_configs, 3, 18), generator=g).float()
    layouts = [block(0, 1), block(1, 0), block(1, 0), block(1, 0), block(0, 1), block(0)]
    return TpuGraphData(
        node_feat=torch.randn(6, 140, generator=g),
        node_opcode=torch.randint(1, 100, (6,), generator=g),
        edge_index=torch.tensor(EDGES).T,
        edge_slot=torch.from_numpy(operand_slots(np.array(EDGES))),
        node_layout=torch.tensor(layouts, dtype=torch.int8),
        node_config_ids=torch.tensor([1, 3, 4]),
        node_config_feat=torch.as_tensor(rows, dtype=torch.float),
        config_runtime=torch.randint(1, 1000, (len(rows),), generator=g),
        config_index=torch.arange(len(rows)),
        num_nodes=6,
    )


def test_operand_slots_number_each_consumers_edges_in_stored_order():
    # Consumers out of order; node 3 has three operands (the third and later share 2).
    edges = np.array([[3, 2], [4, 3], [3, 1], [1, 0], [3, 0], [3, 5]])
    assert operand_slots(edges).tolist() == [0, 0, 1, 0, 2, 2]
    assert operand_slots(np.zeros((0, 2), np.int64)).tolist() == []
    edge_index = torch.from_numpy(edges.T.copy())
    first, second = operands(edge_index, torch.from_numpy(operand_slots(edges)), 6).tolist()
    assert first == [-1, 0, -1, 2, 3, -1] and second == [-1, -1, -1, 1, -1, -1]


# Rows of (node 1, node 3, node 4): output, input and kernel blocks.
ROWS = [
    [
        block(1, 0) + block(0, 1) + UNSET,  # = own layout; reads node 0 as it is emitted
        UNSET + block(0, 1) + block(0, 1),  # reads node 2's [1, 0] and node 1's [1, 0]
        block(1, 0) + block(1, 0) + UNSET,  # own is [0, 1]; node 3 emits its own [1, 0]
    ],
    [
        block(0, 1) + UNSET + UNSET,  # differs from own [1, 0]; reads what is emitted
        block(0, 1) + block(1, 0) + block(0, 1),  # own is [1, 0]; reads as 2 and 1 emit
        UNSET + block(1, 0) + UNSET,  # node 3 now emits its row [0, 1]
    ],
]


def test_agreement_compares_rows_of_one_config_and_own_layouts():
    data = chain_graph(rows=ROWS)
    feat = layout_agreement(
        data.node_config_feat,
        data.node_config_ids,
        data.node_layout,
        data.edge_index,
        data.edge_slot,
    )
    assert feat.shape == (2, 3, LAYOUT_AGREEMENT_DIM)
    own, slots = feat[..., :6], feat[..., 6:].reshape(2, 3, 2, 8)
    present, configurable, mismatch = slots[..., 0], slots[..., 1], slots[..., 2:]
    both = [1, 1, 0, 0, 0, 0]
    none = [0] * 6
    assert own.tolist() == [[none, none, both], [both, both, none]]
    for c in range(2):
        assert present[c].tolist() == [[1, 0], [1, 1], [1, 0]]
        assert configurable[c].tolist() == [[0, 0], [0, 1], [1, 0]]
    assert mismatch[0].tolist() == [[none, none], [both, both], [none, none]]
    assert mismatch[1].tolist() == [[none, none], [none, none], [both, none]]


def test_a_cut_operand_leaves_its_slot_empty():
    data = chain_graph(rows=ROWS)
    keep = torch.tensor([True, True, False, True, True, True])  # node 3's first operand
    cut = induced_subgraph(data, keep)
    assert cut.edge_slot.numel() == cut.edge_index.shape[1] == 4
    feat = layout_agreement(
        cut.node_config_feat,
        cut.node_config_ids,
        cut.node_layout,
        cut.edge_index,
        cut.edge_slot,
    ).reshape(2, 3, -1)
    whole = layout_agreement(
        data.node_config_feat,
        data.node_config_ids,
        data.node_layout,
        data.edge_index,
        data.edge_slot,
    )
    assert feat[:, 1, 6:14].abs().sum() == 0  # node 3's input slot: gone, not shifted
    torch.testing.assert_close(feat[:, 1, 14:], whole[:, 1, 14:])  # its kernel stays
    torch.testing.assert_close(feat[:, [0, 2]], whole[:, [0, 2]])


def test_dataset_items_carry_raw_layouts_and_operand_slots():
    ds = LayoutDataset(sample_root(), "xla", "default", "train", sampler=UniformSampler(4))
    ds.node_normalizer = ds.fit_normalizer(log=True)
    item = ds[0]
    assert item.node_layout.dtype == torch.int8 and item.node_layout.shape == (item.num_nodes, 6)
    assert item.edge_slot.shape == (item.edge_index.shape[1],)
    # Raw minor-to-major entries (-1 padded), not the normalised node features.
    assert int(item.node_layout.min()) >= -1 and int(item.node_layout.max()) <= 5
    assert (item.node_layout >= 0).any()


def test_agreement_gives_the_same_scores_on_every_per_config_path():
    options = {"layout_relations": True, "readout": "attn"}
    check_appended_option(chain_graph(), "layout_agreement", LAYOUT_AGREEMENT_DIM, 4, **options)


def test_a_batch_scores_each_graph_like_alone():
    a, b = chain_graph(seed=0), chain_graph(seed=1)
    model = SAGE("layout", hidden_channels=8, layout_agreement=True).eval()
    with torch.no_grad():
        both = model(Batch.from_data_list([a, b]))
        torch.testing.assert_close(both[0], model(a), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both[1], model(b), rtol=1e-5, atol=1e-6)


def test_missing_fields_and_tile_models_are_named():
    check_missing_field_and_tile(chain_graph(), "layout_agreement", "node_layout")
