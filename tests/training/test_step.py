"""One training step on its own: the function the trainer's loop and benchmarks share."""

import pytest
import torch

from tpulearn.data import TpuGraphData
from tpulearn.data.items import configs_alike
from tpulearn.losses import pairwise_hinge_loss
from tpulearn.metrics import kendall_tau, ordered_pair_accuracy
from tpulearn.models import SAGE
from tpulearn.segments import SegmentModel, gst_trainer
from tpulearn.training.step import step_runner, train_step


def graph(seed: int, num_configs: int = 6) -> TpuGraphData:
    g = torch.Generator().manual_seed(seed)
    return TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2]]).T,
        node_config_ids=torch.tensor([2, 5]),
        node_config_feat=torch.randint(-1, 6, (num_configs, 2, 18), generator=g).float(),
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        num_nodes=7,
        stem=f"g{seed}",
    )


def hinge(scores, runtime):
    return pairwise_hinge_loss(scores, runtime)


def test_train_step_is_the_mean_loss_over_graphs_and_one_optimizer_step():
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=1, opcode_dim=4)
    graphs = [graph(1), graph(2)]
    with torch.no_grad():
        expected = sum(pairwise_hinge_loss(model(g)[None], g.config_runtime[None]) for g in graphs)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pairs = [(g, 6) for g in graphs]
    stats = train_step(step_runner(model), hinge, optimizer, pairs, "cpu")
    assert stats.configs == 12
    assert abs(stats.loss - expected.item() / 2) < 1e-6
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_train_step_reports_the_gradient_norm_before_clipping_and_the_batch_ranking():
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=1, opcode_dim=4)
    graphs = [graph(1), graph(2)]
    with torch.no_grad():
        scores = [model(g) for g in graphs]
    # What clipping reacts to: the norm of the unclipped gradient of the mean loss.
    for p in model.parameters():
        p.grad = None
    sum(hinge(model(g)[None], g.config_runtime[None]) / 2 for g in graphs).backward()
    expected = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()
    taus = [kendall_tau(s, g.config_runtime) for s, g in zip(scores, graphs, strict=True)]
    opas = [ordered_pair_accuracy(s, g.config_runtime) for s, g in zip(scores, graphs, strict=True)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = train_step(
        step_runner(model), hinge, optimizer, [(g, 6) for g in graphs], "cpu", grad_clip=1e-3
    )
    assert stats.grad_norm == pytest.approx(expected, rel=1e-5) and stats.grad_norm > 1e-3
    assert stats.kendall_tau == pytest.approx(sum(taus) / 2)
    assert stats.opa == pytest.approx(sum(opas) / 2)


def test_train_step_runs_a_gst_step_for_a_segment_model():
    torch.manual_seed(0)
    model = SegmentModel(SAGE("layout", hidden_channels=8, num_layers=1, opcode_dim=4), 4)
    gst = gst_trainer(model, seed=3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_step(step_runner(model, gst), hinge, optimizer, [(graph(1), 6)], "cpu")
    assert gst.last is not None and gst.last.num_segments == [2]
    assert len(gst.table.values) == 1  # the graph's history entries


def alike(g: TpuGraphData) -> TpuGraphData:
    """``g`` with every config given the first one's features (runtimes kept)."""
    g = g.clone()
    g.node_config_feat = g.node_config_feat[:1].expand_as(g.node_config_feat).clone()
    return g


def test_configs_alike_reads_the_config_features_only():
    g = graph(1)
    assert not configs_alike(g)
    assert configs_alike(alike(g))
    assert not configs_alike(graph(1, num_configs=1))  # one config: nothing to compare
    tile = TpuGraphData(config_feat=torch.zeros(3, 24), config_runtime=torch.tensor([1, 2, 3]))
    assert configs_alike(tile)
    tile.config_feat[2, 5] = 1.0
    assert not configs_alike(tile)


def test_train_step_counts_the_graphs_with_an_order_to_learn():
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=1, opcode_dim=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    same_runtime = graph(3)
    same_runtime.config_runtime = torch.full((6,), 7)
    cases = [
        ([graph(1), graph(2)], 2),
        ([graph(1), alike(graph(2))], 1),  # scored alike, whatever the runtimes
        ([alike(graph(1)), same_runtime], 0),
    ]
    for graphs, expected in cases:
        stats = train_step(step_runner(model), hinge, optimizer, [(g, 6) for g in graphs], "cpu")
        assert stats.rankable == expected
    # Alike configs get exactly equal scores: nothing but rounding in their loss's gradient.
    with torch.no_grad():
        scores = model(alike(graph(2)))
    assert torch.equal(scores, scores[:1].expand_as(scores))
