"""SegmentModel: inference as the sum of segment scores, halos, checkpointed segments."""

import re

import pytest
import torch
from segment_inputs import small, tiny_graph
from torch_geometric.data import Batch

from tpulearn.data import TpuGraphData
from tpulearn.losses import pairwise_hinge_loss
from tpulearn.models import GAT, GCN, GIN, SAGE
from tpulearn.segments import SegmentModel


def linear_head(model):
    """The model with a bias-free linear head: a graph score is then linear in the pooled
    vector, so summed segment scores equal the whole graph's when the pooled vectors do."""
    model.head = torch.nn.Linear(model.head[0].in_features, 1, bias=False)
    return model.eval()


@pytest.mark.parametrize("layer,hops", [(SAGE, 2), (GAT, 2), (GIN, 2), (GCN, 3)])
def test_halo_of_the_receptive_field_gives_the_whole_graph_score(unet3d, layer, hops):
    """With a halo covering the receptive field (GCN's degree normalisation reads one hop
    further), every owned node gets its whole-graph vector: with a sum readout, the segment
    model is the whole-graph model. Without the halo it is not (edges are cut)."""
    _, data = unet3d
    model = linear_head(small(layer))
    with torch.no_grad():
        whole = model(data)
        halo = SegmentModel(model, 1000, halo_hops=hops, max_halo_nodes=10**6)
        torch.testing.assert_close(halo(data), whole, rtol=1e-4, atol=1e-4 * whole.abs().max())
        cut = SegmentModel(model, 1000)(data)
        assert (cut - whole).abs().max() > 1e-3 * whole.abs().max()
        batch = halo(Batch.from_data_list([data, tiny_graph(8)]))
        torch.testing.assert_close(batch[0], halo(data))


def by_hand_segments(data, bounds):
    """Contiguous segments cut directly from ranges, independent of segments.py."""
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        src, dst = data.edge_index
        keep = (src >= lo) & (src < hi) & (dst >= lo) & (dst < hi)
        ids = data.node_config_ids
        cols = ((ids >= lo) & (ids < hi)).nonzero().squeeze(1)
        out.append(
            TpuGraphData(
                node_feat=data.node_feat[lo:hi],
                node_opcode=data.node_opcode[lo:hi],
                edge_index=data.edge_index[:, keep] - lo,
                node_config_ids=ids[cols] - lo,
                node_config_feat=data.node_config_feat[:, cols],
                config_runtime=data.config_runtime,
                num_nodes=hi - lo,
            )
        )
    return out


@pytest.mark.parametrize("layer", [SAGE, GCN, GAT])
def test_inference_equals_whole_graph_per_segment_forward(unet3d, layer):
    _, data = unet3d
    model = small(layer, readout="mean+max").eval()
    seg_model = SegmentModel(model, max_segment_nodes=1000).eval()
    with torch.no_grad():
        expected = model(Batch.from_data_list(by_hand_segments(data, [0, 924, 1849, 2774])))
        torch.testing.assert_close(seg_model.segment_scores(data), expected)
        torch.testing.assert_close(seg_model(data), expected.sum(0))
        batch = seg_model(Batch.from_data_list([data, tiny_graph(8)]))
        torch.testing.assert_close(batch[0], expected.sum(0))


def test_one_segment_equals_the_plain_model(unet3d):
    _, data = unet3d
    model = small().eval()
    with torch.no_grad():
        plain = model(data)
        torch.testing.assert_close(SegmentModel(model, 5000)(data), plain)
        torch.testing.assert_close(SegmentModel(model, enabled=False)(data), plain)


@pytest.mark.parametrize("layer", [SAGE, GCN, GIN])
def test_checkpointed_segments_give_the_exact_gradient(unet3d, layer):
    """checkpoint=True recomputes each segment in the backward pass: scores and gradients
    equal those of the segment model with every segment kept in the graph, scored one
    segment per pass as well so that dropout (on here) draws the same masks; the
    recomputation must replay them."""
    _, data = unet3d
    data = data.clone()
    data.node_feat = data.node_feat.double()
    data.node_config_feat = data.node_config_feat.double()
    runs = []
    for checkpoint in (False, True):
        model = small(layer, dropout=0.2).double()
        seg = SegmentModel(
            model, max_segment_nodes=1000, segments_per_batch=1, checkpoint=checkpoint
        ).train()
        torch.manual_seed(7)
        scores = seg(data)
        pairwise_hinge_loss(scores[None], data.config_runtime[None]).backward()
        runs.append((scores.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (plain, plain_grads), (ckpt, ckpt_grads) = runs
    torch.testing.assert_close(ckpt, plain, rtol=1e-12, atol=1e-12)
    assert plain_grads.keys() == ckpt_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(ckpt_grads[name], plain_grads[name], rtol=1e-10, atol=1e-12)


def test_checkpointed_segments_keep_one_segment_of_activations(unet3d):
    """The forward pass of a checkpointed model saves no activation for backward beyond
    the inputs of each segment, far fewer bytes than the plain segment model keeps."""
    _, data = unet3d

    def saved_bytes(checkpoint: bool) -> int:
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        seg = SegmentModel(small(), max_segment_nodes=1000, checkpoint=checkpoint).train()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            seg(data)
        return total

    plain, ckpt = saved_bytes(False), saved_bytes(True)
    assert ckpt < plain / 5, (ckpt, plain)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_segment_nodes": 0}, "max_segment_nodes must be an integer >= 1, got 0"),
        ({"method": "metsi"}, "method must be one of ('contiguous', 'metis'), got 'metsi'"),
    ],
)
def test_bad_partition_settings_are_refused_when_built(kwargs, message):
    # Before, only the first forward that partitioned a graph refused them.
    with pytest.raises(ValueError, match=re.escape(message)):
        SegmentModel(small(), **kwargs)
