"""GAT on the exact config-dependent path: the same scores and gradients as the PyG layer."""

import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.nn import GATv2Conv
from torch_geometric.utils import remove_self_loops

from tpulearn.data import AllConfigsSampler, LayoutDataset, TpuGraphData, sample_root
from tpulearn.models import GAT, dedup
from tpulearn.models.attention import AttentionPasses, attend
from tpulearn.models.plan import aggregation_matrix

ROOT = sample_root()

# A chain with a branch, plus a duplicate edge (6 -> 2 twice, 5 -> 4 twice) and self-loops
# (3 -> 3, 0 -> 0): GATv2Conv counts duplicates twice and swaps self-loops for its own.
EDGES = [[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2], [6, 2], [3, 3], [0, 0], [5, 4]]


def tiny_graph(num_configs: int, seed: int = 0) -> TpuGraphData:
    """7 nodes, float64; nodes 2 and 5 configurable with 3 layouts each (configs repeat)."""
    g = torch.Generator().manual_seed(seed)
    return TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g, dtype=torch.float64),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=torch.tensor(EDGES).T,
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        node_config_ids=torch.tensor([2, 5]),
        node_config_feat=torch.randint(-1, 2, (num_configs, 2, 18), generator=g).double(),
        num_nodes=7,
    )


def real_graph(num_configs: int) -> TpuGraphData:
    """The bundled validation graph's first configs (they repeat layouts), float64."""
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    ds.node_normalizer = ds.fit_normalizer(log=True)
    data = ds[0]
    for key in ("node_config_feat", "config_runtime", "config_index"):
        data[key] = data[key][:num_configs]
    for key in ("node_feat", "node_config_feat"):
        data[key] = data[key].double()
    return data


def scores_and_grads(model, data, **options):
    """Scores and the flat parameter gradient of a fixed loss, with ``options`` set."""
    saved = {name: getattr(model, name) for name in options}
    for name, value in options.items():
        setattr(model, name, value)
    model.zero_grad()
    scores = model(data)
    (
        scores * torch.linspace(-1, 1, scores.numel(), dtype=scores.dtype).view_as(scores)
    ).sum().backward()
    for name, value in saved.items():
        setattr(model, name, value)
    return scores.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


def assert_same(got, ref, tol=1e-10):
    for a, b in zip(got, ref, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= tol * b.abs().max()


# The PyG layer on C copies of the subgraph, and on C copies of the whole graph.
REFERENCES = [{"sparse_aggregation": False}, {"sparse_aggregation": False, "prune": False}]
# The attention paths: distinct states, one edge list for all configs, full graph.
PATHS = [{}, {"distinct_states": False}, {"prune": False}]


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_attention_paths_equal_the_pyg_layer_on_a_batch(mode, monkeypatch):
    batch = Batch.from_data_list([tiny_graph(8, seed=0), tiny_graph(8, seed=1)])
    torch.manual_seed(0)
    model = GAT("layout", hidden_channels=8, num_layers=3, readout="sum+max").double()
    getattr(model, mode)()
    distinct_layers = []
    monkeypatch.setattr(
        AttentionPasses, "_distinct", _spy(AttentionPasses._distinct, distinct_layers)
    )
    refs = [scores_and_grads(model, batch, **options) for options in REFERENCES]
    assert not distinct_layers
    assert_same(refs[1], refs[0])
    for options in PATHS:
        assert_same(scores_and_grads(model, batch, **options), refs[0])
    assert len(distinct_layers) == 3  # the default path took the distinct states


def _spy(method, calls):
    def spy(self, i, *args):
        calls.append(i)
        return method(self, i, *args)

    return spy


@pytest.mark.parametrize(
    "options",
    [{}, {"jk": "cat", "config_node_readout": True, "residual": True, "norm": "layer"}],
)
def test_attention_equals_the_pyg_layer_on_a_real_graph(options, monkeypatch):
    data = real_graph(48)
    torch.manual_seed(0)
    model = GAT("layout", hidden_channels=16, num_layers=3, heads=2, **options).double().train()
    counts = []
    distinct = dedup.distinct_tuples

    def spy(ids, *args, **kwargs):
        index, count = distinct(ids, *args, **kwargs)
        if kwargs.get("by_row", True):
            counts.append((index.numel(), count))
        return index, count

    monkeypatch.setattr(dedup, "distinct_tuples", spy)
    fast = scores_and_grads(model, data)
    # Each layer computed its distinct states, far fewer than its (config, node) rows.
    assert len(counts) == 3 and all(count < rows / 4 for rows, count in counts)
    assert_same(fast, scores_and_grads(model, data, sparse_aggregation=False))


def test_tile_attention_equals_the_pyg_layer():
    g = torch.Generator().manual_seed(0)
    data = tiny_graph(5)
    del data.node_config_ids, data.node_config_feat
    data.config_feat = torch.randn(5, 24, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = GAT("tile", hidden_channels=8, num_layers=2).double().train()
    assert_same(
        scores_and_grads(model, data), scores_and_grads(model, data, sparse_aggregation=False)
    )


def test_attend_equals_gatv2conv_with_duplicate_edges_and_self_loops():
    torch.manual_seed(0)
    conv = GATv2Conv(6, 5, heads=3, concat=False).double()
    num_nodes = 9
    edges = torch.randint(0, num_nodes, (2, 40))
    edges = torch.cat([edges, edges[:, :6], torch.tensor([[4, 7], [4, 7]])], 1)
    x = torch.randn(num_nodes, 6, dtype=torch.float64)
    clean = remove_self_loops(edges)[0]
    nodes = torch.ones(num_nodes, dtype=torch.bool)
    keep = torch.ones(clean.shape[1], dtype=torch.bool)
    ids = torch.arange(num_nodes)
    matrix = aggregation_matrix("sum", nodes, ids, clean, keep, None, num_nodes)
    assert matrix.values().max() > 1  # duplicates are counted, not collapsed
    torch.testing.assert_close(attend(conv, matrix, x, x), conv(x, edges), rtol=0, atol=1e-12)
    # Configs as an extra dimension: each column attends alone.
    xs = torch.randn(num_nodes, 4, 6, dtype=torch.float64)
    out = attend(conv, matrix, xs, xs)
    for c in range(4):
        torch.testing.assert_close(out[:, c], conv(xs[:, c], edges), rtol=0, atol=1e-12)


def test_attend_refuses_options_it_does_not_reproduce():
    nodes = torch.ones(2, dtype=torch.bool)
    edge = torch.tensor([[0], [1]])
    matrix = aggregation_matrix("sum", nodes, torch.arange(2), edge, nodes[:1], None, 2)
    x = torch.randn(2, 4)
    with pytest.raises(ValueError, match="concat"):
        attend(GATv2Conv(4, 4, heads=2), matrix, x, x)
    with pytest.raises(ValueError, match="attention dropout"):
        attend(GATv2Conv(4, 4, heads=2, concat=False, dropout=0.5).train(), matrix, x, x)
    attend(GATv2Conv(4, 4, heads=2, concat=False, dropout=0.5).eval(), matrix, x, x)
