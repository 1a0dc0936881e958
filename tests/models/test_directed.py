"""Directed layers (``directed=True``): users and operands read apart, on every path."""

import pytest
import torch
from test_gnn import check_model, real_graph, tiny_graph, to_double
from tiny_graphs import PER_CONFIG_PATHS

from tpulearn.graph import directed_edges
from tpulearn.models import GAT, GCN, GIN, MLP, SAGE
from tpulearn.models.plan import Planner

LAYERS = [SAGE, GCN, GIN, GAT]


def directed_model(layer, seed: int = 0, **kwargs):
    """A 16-wide layout model whose directed weights are random (they start at zero)."""
    torch.manual_seed(seed)
    model = layer("layout", hidden_channels=16, num_layers=3, directed=True, **kwargs)
    for lin in model.directed:
        torch.nn.init.normal_(lin.weight, std=0.3)
    return model


def test_the_directed_terms_start_at_zero_so_training_starts_from_the_undirected_model():
    data = tiny_graph("layout", num_configs=6)
    torch.manual_seed(0)
    plain = SAGE("layout", hidden_channels=16)
    torch.manual_seed(0)
    directed = SAGE("layout", hidden_channels=16, directed=True)
    assert all(not lin.weight.any() for lin in directed.directed)
    missing, unexpected = directed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("directed.") for k in missing)
    torch.testing.assert_close(directed.eval()(data), plain.eval()(data), rtol=0, atol=0)
    # ...and the zero weights still get gradients: they learn.
    check_model(directed, data)
    assert all(lin.weight.grad.abs().sum() > 0 for lin in directed.directed)


def test_the_plan_holds_the_mean_of_each_nodes_users_and_of_its_operands():
    data = tiny_graph("layout")  # stored edges (consumer, producer): 6 reads 5 and 2
    edges = directed_edges(data.edge_index, "both")
    directions = [directed_edges(data.edge_index, d) for d in ("stored", "reversed")]
    planner = Planner(1, propagates=True, aggregation="mean", inputs="configurable")
    layer = planner.plan(data, edges, None, directions).layers[0]
    nodes = layer.node_ids.tolist()
    rows = layer.mask.nonzero().squeeze(1).tolist()
    users = {i: [] for i in range(7)}
    operands = {i: [] for i in range(7)}
    for consumer, producer in data.edge_index.T.tolist():
        users[producer].append(consumer)
        operands[consumer].append(producer)
    for matrix, neighbours in zip(layer.directions, (users, operands), strict=True):
        dense = matrix.to_dense()
        for r, node in enumerate(rows):
            expected = torch.zeros(len(nodes))
            for j in neighbours[node]:
                expected[nodes.index(j)] += 1 / len(neighbours[node])
            torch.testing.assert_close(dense[r], expected)
    # Node 2 has two users (3, 6) and one operand (1): the directions differ.
    r = rows.index(2)
    assert layer.directions[0].to_dense()[r, nodes.index(3)] == 0.5
    assert layer.directions[1].to_dense()[r, nodes.index(1)] == 1


@pytest.mark.parametrize("layer", LAYERS)
def test_every_per_config_path_gives_the_same_scores(layer):
    for data in (tiny_graph("layout", num_configs=6), to_double(real_graph("layout", 5))):
        reference = directed_model(layer).double()
        outs = []
        for kw in PER_CONFIG_PATHS:
            model = layer("layout", hidden_channels=16, num_layers=3, directed=True, **kw)
            model.double().load_state_dict(reference.state_dict())
            with torch.no_grad():
                outs.append(model.eval()(data))
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0])
        assert not torch.allclose(outs[0], outs[0][0].expand_as(outs[0]))
        # Configs in chunks score alike.
        with torch.no_grad():
            torch.testing.assert_close(reference.eval()(data, config_chunk=2), outs[0])


@pytest.mark.parametrize("layer", LAYERS)
def test_directed_layers_tell_users_from_operands(layer):
    # Reversing every edge leaves the undirected layers' graph ("both") unchanged, so only
    # the directed terms can tell the two graphs apart.
    data = tiny_graph("layout", num_configs=6)
    flipped = data.clone()
    flipped.edge_index = data.edge_index.flip(0)
    model = directed_model(layer).eval()
    with torch.no_grad():
        assert not torch.allclose(model(data), model(flipped))
        for lin in model.directed:
            lin.weight.zero_()
        torch.testing.assert_close(model(data), model(flipped))


def test_directed_models_train_and_keep_their_weights_in_the_state_dict():
    data = tiny_graph("layout", num_configs=6)
    model = directed_model(SAGE)
    check_model(model, data)
    keys = [k for k in model.state_dict() if k.startswith("directed.")]
    assert len(keys) == 3  # one Linear(2H, H) per layer
    assert "directed" in repr(model) and "directed" not in repr(SAGE("layout"))


def test_directed_needs_both_edge_directions_and_a_model_that_passes_messages():
    with pytest.raises(ValueError, match="directed needs edge_direction='both'"):
        SAGE("layout", directed=True, edge_direction="stored")
    with pytest.warns(UserWarning, match="directed"):
        model = MLP("layout", directed=True)
    assert model.directed is None
