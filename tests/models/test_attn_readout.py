"""The softmax-gated (``attn``) readout: its arithmetic and its agreement across paths."""

import pytest
import torch
from tiny_graphs import chain_graph
from torch_geometric.data import Batch

from tpulearn.models import SAGE
from tpulearn.models.readout import Readout


def _readout(gate, batch, num_graphs, owned=None):
    return Readout(
        ("attn",), "last", False, False, "layout", None, None, None, batch, num_graphs, owned, gate
    )


@pytest.mark.parametrize("heads", [1, 3])
def test_attn_pool_is_the_softmax_weighted_mean_per_config_and_graph(heads):
    torch.manual_seed(0)
    gate = torch.nn.Linear(3, heads).double()
    batch = torch.tensor([0, 0, 0, 1, 1])
    mask = torch.tensor([False, True, False, True, False])  # nodes 1 and 3 depend on configs
    base = torch.randn(5, 3, dtype=torch.double) * 30  # logits at the bound
    dep = torch.randn(4, 2, 3, dtype=torch.double) * 30
    out = _readout(gate, batch, 2)([mask], [base], [dep], None)
    assert out.shape == (4, 2, 3 * heads)
    for c in range(4):
        x = base.clone()
        x[mask] = dep[c]
        for g in range(2):
            rows = x[batch == g]
            for k in range(heads):
                logits = 20 * torch.tanh(gate(rows)[:, k] / 20)
                weights = torch.softmax(logits, 0)
                expected = (weights[:, None] * rows).sum(0)
                torch.testing.assert_close(out[c, g, 3 * k : 3 * k + 3], expected)


def test_attn_pool_follows_a_dominant_logit_and_leaves_unowned_nodes_out():
    gate = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        gate.weight.copy_(torch.tensor([[30.0, 0.0]]))  # the first column decides
    base = torch.tensor([[1.0, 7.0], [0.0, 3.0], [2.0, 5.0]])
    mask = torch.zeros(3, dtype=torch.bool)
    owned = torch.tensor([True, True, False])
    out = _readout(gate, torch.zeros(3, dtype=torch.long), 1, owned)(
        [mask], [base], [base.new_zeros(2, 0, 2)], None
    )
    # Node 2 has the largest logit but is context (not owned): node 0 takes all the weight.
    torch.testing.assert_close(out, torch.tensor([[[1.0, 7.0]]]).expand(2, 1, 2))


def test_attn_readout_needs_its_gate():
    with pytest.raises(ValueError, match="attn readout needs its gate"):
        Readout(("attn",), "last", False, False, "layout", None, None, None, torch.zeros(1), 1)


def _double(data):
    for key in ("node_feat", "node_config_feat"):
        data[key] = data[key].double()
    return data


@pytest.mark.parametrize("attn_gate", ["state", "config_free"])
@pytest.mark.parametrize("jk", ["last", "cat"])
def test_attn_readout_gives_the_same_scores_on_every_path(jk, attn_gate):
    data = _double(chain_graph(num_configs=6))
    data.node_config_feat[4] = data.node_config_feat[1]  # a repeated config
    torch.manual_seed(0)
    model = SAGE(
        "layout",
        hidden_channels=8,
        num_layers=2,
        jk=jk,
        readout="attn+sum",
        attn_heads=2,
        pre_layers=1,
        attn_gate=attn_gate,
    ).double()
    model.eval()
    with torch.no_grad():
        ref = model(data)
        assert torch.allclose(model(data, config_chunk=4), ref, rtol=1e-10, atol=1e-12)
        model.distinct_states = False
        assert torch.allclose(model(data), ref, rtol=1e-10, atol=1e-12)
        model.prune = False
        assert torch.allclose(model(data), ref, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ref, ref[0].expand_as(ref))  # the configs are told apart


def test_attn_readout_on_a_batch_scores_each_graph_like_alone_and_trains():
    a, b = _double(chain_graph(5, seed=0)), _double(chain_graph(5, seed=1))
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, readout="attn", head="linear").double()
    model.eval()
    with torch.no_grad():
        both = model(Batch.from_data_list([a, b]))
        torch.testing.assert_close(both[0], model(a))
        torch.testing.assert_close(both[1], model(b))
    model.train()
    model(a).sum().backward()
    assert model.gate.weight.grad is not None and model.gate.weight.grad.abs().sum() > 0


def test_attn_heads_are_checked():
    assert SAGE("layout", hidden_channels=8, readout="attn", attn_heads=3).gate.out_features == 3
    with pytest.raises(ValueError, match="attn_heads must be 1 or more"):
        SAGE("layout", readout="attn", attn_heads=0)
    with pytest.warns(UserWarning, match="attn_heads"):
        SAGE("layout", readout="sum", attn_heads=2)


def test_a_config_free_gate_weighs_each_node_alike_in_every_config():
    torch.manual_seed(0)
    gate = torch.nn.Linear(3, 2).double()
    readout = Readout(
        kinds=("attn",),
        jk="last",
        config_node_readout=False,
        l2=False,
        task="layout",
        config_encoder=None,
        late_config=None,
        config_ids=None,
        batch=torch.tensor([0, 0, 0, 1, 1]),
        num_graphs=2,
        owned=None,
        gate=gate,
        gate_free=True,
    )
    mask = torch.tensor([False, True, False, True, False])
    base = torch.randn(5, 3, dtype=torch.double)
    dep = torch.randn(4, 2, 3, dtype=torch.double)
    free = torch.randn(5, 3, dtype=torch.double)  # every node's config-free vector
    out = readout([mask], [base], [dep], None, readout.node_weights([free]))
    logits = 20 * torch.tanh(gate(free) / 20)  # [5, heads]: no config in them
    for c in range(4):
        x = base.clone()
        x[mask] = dep[c]
        for g, rows in enumerate((torch.tensor([0, 1, 2]), torch.tensor([3, 4]))):
            for k in range(2):
                weights = torch.softmax(logits[rows, k], 0)
                expected = (weights[:, None] * x[rows]).sum(0)
                torch.testing.assert_close(out[c, g, 3 * k : 3 * k + 3], expected)
    with pytest.raises(ValueError, match="config-free vectors"):
        readout([mask], [base], [dep], None)


@pytest.mark.parametrize("attn_gate", ["state", "config_free"])
def test_the_gate_reads_no_config_only_when_config_free(attn_gate):
    data = _double(chain_graph(num_configs=5))
    other = data.clone()
    other.node_config_feat = data.node_config_feat[:1].expand_as(data.node_config_feat).clone()
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=2, readout="attn", attn_gate=attn_gate)
    model = model.double().eval()
    seen = []
    model.gate.register_forward_hook(lambda module, args, out: seen.append(args[0].clone()))
    with torch.no_grad():
        model(data)
        first = list(seen)
        seen.clear()
        model(other)
    same = len(first) == len(seen) and all(map(torch.equal, first, seen))
    assert same == (attn_gate == "config_free")


def test_a_weighted_pool_is_the_weighted_sum_of_each_configs_states():
    from tpulearn.models import dedup

    torch.manual_seed(0)
    values = torch.randn(6, 4, dtype=torch.double)
    index = torch.tensor([[0, 1, 2], [3, 1, 5], [0, 4, 2]])  # [C, rows]
    group = torch.tensor([1, 0, 1])
    weight = torch.rand(3, dtype=torch.double)
    state = dedup.StateLayer(values, index)
    out = dedup.pool(state, group, 3, "sum", weight)
    dense = values[index] * weight[None, :, None]
    expected = torch.zeros(3, 3, 4, dtype=torch.double)
    expected.index_add_(1, group, dense)
    torch.testing.assert_close(out, expected)  # group 2 has no rows: 0
    with pytest.raises(ValueError, match="weighted pool sums"):
        dedup.pool(state, group, 3, "max", weight)


def test_attn_gate_is_checked():
    with pytest.raises(ValueError, match="attn_gate"):
        SAGE("layout", readout="attn", attn_gate="nodes")
    with pytest.warns(UserWarning, match="attn_gate"):
        SAGE("layout", readout="sum", attn_gate="config_free")
