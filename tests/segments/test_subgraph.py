"""Segments as graphs: reindexed edges and config columns, halos and their cap."""

import pytest
import torch
from segment_inputs import small, tiny_graph

from tpulearn.models import MLP
from tpulearn.segments import SegmentModel, partition, segment_data, split_segments


def test_segment_data_reindexes_inner_edges_and_config_columns():
    data = tiny_graph()
    part = partition(data, 4)  # ceil(7 / 4) = 2 segments: nodes 0-2 and 3-6
    first, second = split_segments(data, part)
    assert first.num_nodes == 3 and second.num_nodes == 4
    assert first.edge_index.T.tolist() == [[1, 0], [2, 1]]
    # (3, 2) and (6, 2) cross segments and are dropped.
    assert second.edge_index.T.tolist() == [[1, 0], [2, 1], [3, 2]]
    assert first.node_config_ids.tolist() == [2] and second.node_config_ids.tolist() == [2]
    assert torch.equal(second.node_config_feat, data.node_config_feat[:, 1:2])
    assert torch.equal(second.node_feat, data.node_feat[3:])
    assert torch.equal(second.config_index, data.config_index)
    assert first.node_splits.tolist() == [0, 3] and second.node_splits.tolist() == [0, 1, 4]


def test_segment_without_configurable_node_scores_all_configs_alike():
    data = tiny_graph()
    data.node_config_ids = torch.tensor([5])
    data.node_config_feat = data.node_config_feat[:, 1:]
    seg = segment_data(data, partition(data, 4), 0)
    assert seg.node_config_feat.shape == (5, 0, 18)
    model = small().eval()
    scores = model(seg)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores, scores[:1].expand(5))


def test_halo_carries_context_nodes_and_marks_the_owned_ones():
    data = tiny_graph()
    part = partition(data, 4)  # nodes 0-2 and 3-6; (3, 2) and (6, 2) cross
    first = segment_data(data, part, 0, halo_hops=1)
    # 1 hop from {0, 1, 2}: nodes 3 and 6 (both edges into node 2).
    assert first.num_nodes == 5 and first.owned.tolist() == [True] * 3 + [False] * 2
    assert torch.equal(first.node_feat, data.node_feat[[0, 1, 2, 3, 6]])
    # Local ids 0-4 = nodes 0, 1, 2, 3, 6: every edge among them, none to nodes 4 or 5.
    assert sorted(first.edge_index.T.tolist()) == [[1, 0], [2, 1], [3, 2], [4, 2]]
    assert first.node_config_ids.tolist() == [2]
    second = segment_data(data, part, 1, halo_hops=2)
    # 2 hops from {3, ..., 6}: node 2 (1 hop), node 1 (2 hops); configurable 2 and 5.
    assert second.owned.tolist() == [False, False, True, True, True, True]
    assert second.node_config_ids.tolist() == [1, 4]
    assert torch.equal(second.node_config_feat, data.node_config_feat)
    assert "owned" not in segment_data(data, part, 1)
    with pytest.raises(ValueError, match="halo_hops"):
        segment_data(data, part, 0, halo_hops=-1)
    with pytest.raises(ValueError, match="halo_hops"):
        SegmentModel(small(), halo_hops=-1)


def test_halo_cap_takes_nearer_and_better_connected_nodes_first(unet3d):
    _, data = unet3d
    part = partition(data, 1000)
    full = [segment_data(data, part, s, halo_hops=2) for s in range(part.num_segments)]
    one_hop = [segment_data(data, part, s, halo_hops=1) for s in range(part.num_segments)]
    for s, (seg, near) in enumerate(zip(full, one_hop, strict=True)):
        context = int((~seg.owned).sum())
        first_hop = int((~near.owned).sum())
        assert first_hop < context  # a second hop adds nodes on this graph
        for cap in (0, first_hop // 2, first_hop, context - 1):
            capped = segment_data(data, part, s, halo_hops=2, max_halo_nodes=cap)
            assert int((~capped.owned).sum()) == cap
            assert int(capped.owned.sum()) == int(part.sizes[s])
        # A cap at the first hop's size keeps exactly the first hop.
        at = segment_data(data, part, s, halo_hops=2, max_halo_nodes=first_hop)
        assert torch.equal(at.node_feat, near.node_feat)
    # The default cap of SegmentModel is max_segment_nodes.
    assert SegmentModel(small(), 500, halo_hops=2).max_halo_nodes == 500


@pytest.mark.parametrize(
    "kwargs",
    [
        {"readout": "sum+mean+max", "config_node_readout": True},
        {"join": "late", "readout": "mean"},
    ],
)
def test_context_nodes_are_never_pooled(unet3d, kwargs):
    """Without message passing a node's vector is its own: a segment scored with a halo
    must score exactly as the bare segment, whatever the readout."""
    _, data = unet3d
    model = small(MLP, **kwargs).eval()
    part = partition(data, 1000)
    with torch.no_grad():
        for s in range(part.num_segments):
            bare = model(segment_data(data, part, s))
            halo = segment_data(data, part, s, halo_hops=2)
            with_halo = model(halo, owned=halo.owned)
            torch.testing.assert_close(with_halo, bare)
