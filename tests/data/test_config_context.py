"""``data.context_hops``: the configurable nodes' neighbourhood as a per-graph transform,
applied by the layout datasets to every item of every split."""

import pytest
import torch
from tiny_graphs import chain_graph
from torch_geometric.data import Batch

from tpulearn.data import CollectionData, LayoutDataset, UniformSampler, sample_root
from tpulearn.graph import ConfigContext
from tpulearn.models import SAGE

LAYOUT = "layout:xla:default"


def test_keeps_the_neighbourhood_of_configurable_nodes():
    data = chain_graph()
    sub = ConfigContext(1)(data)
    # Within 1 hop of 2 or 5 (either direction): 1, 2, 3, 4, 5, 6; node 0 is dropped. Its
    # edge 1 -> 0 goes; edges among the kept nodes stay: 2-1, 3-2, 4-3, 5-4, 6-5, 6-2.
    assert (sub.num_nodes, sub.node_config_ids.tolist(), sub.edge_index.shape[1]) == (6, [1, 4], 6)
    torch.testing.assert_close(sub.node_feat, data.node_feat[1:])
    assert data.num_nodes == 7  # the input is left as it was
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=2).eval()
    with torch.no_grad():
        # The whole graph reads node 0: the scores differ.
        assert not torch.allclose(model(sub), model(data))
    assert repr(ConfigContext(1)) == "ConfigContext(hops=1)"
    with pytest.raises(ValueError, match="hops must be >= 0"):
        ConfigContext(-1)


def test_each_graph_then_batch_is_the_batch_transformed():
    graphs = [chain_graph(5, seed=s) for s in range(2)]
    transform = ConfigContext(0)
    apart = Batch.from_data_list([transform(g) for g in graphs])
    together = transform(Batch.from_data_list(graphs))
    for key in ("node_feat", "node_opcode", "edge_index", "node_config_ids", "batch"):
        assert torch.equal(apart[key], together[key]), key
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=2).eval()
    with torch.no_grad():
        alone = torch.stack([model(transform(g)) for g in graphs])
        torch.testing.assert_close(model(apart), alone)


def test_layout_dataset_transforms_every_item():
    def dataset(transform=None):
        sampler = UniformSampler(4)
        return LayoutDataset(
            sample_root(), "xla", "default", "train", sampler=sampler, transform=transform
        )

    whole, cut = dataset(), dataset(ConfigContext(1))
    expected = ConfigContext(1)(whole[0])
    assert expected.num_nodes < whole[0].num_nodes
    for item in (cut[0], next(cut.chunks(0, 4)), next(cut.sample_chunks(0, 4))):
        assert item.num_nodes == expected.num_nodes
        assert torch.equal(item.edge_index, expected.edge_index)
        assert torch.equal(item.node_config_ids, expected.node_config_ids)


def test_collection_data_sets_the_transform_of_every_layout_split():
    plain = CollectionData(LAYOUT, "layout", normalize=None)
    assert plain.context_hops is None and plain.layout_transform() is None
    data = CollectionData(LAYOUT, "layout", normalize=None, context_hops=1)
    for dataset in (data.train_set(), data.eval_set("valid")):
        assert repr(dataset.transform) == "ConfigContext(hops=1)"
    with pytest.raises(ValueError, match="data.context_hops applies to layout"):
        CollectionData("tile:xla", "tile", context_hops=1)
    with pytest.raises(ValueError, match="data.context_hops"):
        CollectionData(LAYOUT, "layout", context_hops=-1)
