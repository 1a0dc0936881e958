"""The GNN family: shapes, gradients, config permutation and exact pruning."""

import itertools
import warnings

import pytest
import torch
from tiny_graphs import scores_on_every_path
from torch_geometric.data import Batch

from tpulearn.data import LayoutDataset, TileDataset, TpuGraphData, UniformSampler, sample_root
from tpulearn.graph import directed_edges
from tpulearn.models import GAT, GCN, GIN, MLP, SAGE, ResGCN
from tpulearn.models.plan import Planner

ROOT = sample_root()
LAYERS = [SAGE, GCN, GAT, GIN, ResGCN, MLP]
JOINS = ["early", "late"]
READOUTS = ["sum", "mean", "max", "attn", "sum+mean+max"]


def tiny_graph(task: str, num_configs: int = 5, seed: int = 0) -> TpuGraphData:
    """7 nodes in a chain with a branch; nodes 2 and 5 configurable (layout)."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2]]).T
    data = TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=edges,
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        num_nodes=7,
    )
    if task == "tile":
        data.config_feat = torch.randn(num_configs, 24, generator=g)
    else:
        data.node_config_ids = torch.tensor([2, 5])
        data.node_config_feat = torch.randint(-1, 6, (num_configs, 2, 18), generator=g).float()
    return data


def real_graph(task: str, num_configs: int = 4) -> TpuGraphData:
    if task == "tile":
        ds = TileDataset(ROOT, "valid", sampler=UniformSampler(num_configs))
    else:
        ds = LayoutDataset(ROOT, "xla", "default", "train", sampler=UniformSampler(num_configs))
    ds.node_normalizer = ds.fit_normalizer(log=True)
    return ds[0]


def permuted(data: TpuGraphData, perm: torch.Tensor) -> TpuGraphData:
    out = data.clone()
    for key in ("config_runtime", "config_index", "config_feat", "node_config_feat"):
        if key in out:
            out[key] = out[key][perm]
    return out


def check_model(model, data):
    model.train()
    scores = model(data)
    c = data.config_runtime.numel()
    assert scores.shape == (c,)
    assert torch.isfinite(scores).all()
    (scores * torch.linspace(-1, 1, c)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        base = model(data)
        perm = torch.randperm(c, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(model(permuted(data, perm)), base[perm], rtol=1e-4, atol=1e-5)


GRID = list(itertools.product(LAYERS, JOINS, ["tile", "layout"], READOUTS))


@pytest.mark.parametrize("layer,join,task,readout", GRID, ids=lambda v: getattr(v, "__name__", v))
def test_grid_on_a_tiny_graph(layer, join, task, readout):
    torch.manual_seed(0)
    model = layer(task, hidden_channels=16, num_layers=2, join=join, readout=readout)
    check_model(model, tiny_graph(task))


@pytest.mark.parametrize(
    "layer,join,task", list(itertools.product(LAYERS, JOINS, ["tile", "layout"]))
)
def test_grid_on_a_real_bundled_graph(layer, join, task):
    torch.manual_seed(0)
    model = layer(task, hidden_channels=16, num_layers=2, join=join, readout="sum+mean+max")
    check_model(model, real_graph(task))


def test_layout_extras_config_node_readout_attention_jk():
    for jk in ("cat", "max"):
        model = SAGE(
            "layout",
            hidden_channels=16,
            jk=jk,
            config_node_readout=True,
            config_attention=True,
            attention_heads=2,
            norm="layer",
            residual=True,
            l2_normalize=True,
            act="prelu",
        )
        check_model(model, tiny_graph("layout"))


def to_double(data):
    out = data.clone()
    for key in ("node_feat", "config_feat", "node_config_feat"):
        if key in out:
            out[key] = out[key].double()
    return out


PRUNE_GRAPHS = [
    "layout/xla/default/valid/unet_3d.4x4.bf16",
    "layout/nlp/default/test/3a0c5517a87df8d82fd637b83298a3ba",
]
# GAT's naive copies of the nlp graph take ~3 s: that one case runs with the slow tests.
PRUNE_CASES = [
    pytest.param(
        name,
        layer,
        id=f"{layer.__name__}-{name}",
        marks=[pytest.mark.slow] if layer is GAT and "/nlp/" in name else [],
    )
    for name in PRUNE_GRAPHS
    for layer in LAYERS
]


@pytest.mark.parametrize(("name", "layer"), PRUNE_CASES)
def test_pruned_compute_equals_naive_per_config_copies(name, layer):
    source, search, split = name.split("/")[1:4]
    ds = LayoutDataset(ROOT, source, search, split, sampler=UniformSampler(3))
    data = to_double(ds[0])
    torch.manual_seed(0)
    model = layer("layout", hidden_channels=16, num_layers=3, readout="sum+mean+max").double()
    model.eval()
    with torch.no_grad():
        pruned = model(data)
        model.prune = False
        naive = model(data)
    # Raw (unnormalised) features make scores large; the bound is relative.
    scale = naive.abs().max().clamp(min=1.0)
    assert ((pruned - naive).abs().max() / scale) < 1e-5
    assert not torch.equal(pruned, torch.zeros_like(pruned))


@pytest.mark.parametrize("layer", [SAGE, GCN, GIN, ResGCN])
def test_sparse_aggregation_equals_the_pyg_layers(layer):
    data = to_double(real_graph("layout", num_configs=5))
    torch.manual_seed(0)
    model = layer("layout", hidden_channels=16, num_layers=3, jk="cat").double().eval()
    with torch.no_grad():
        fast = model(data)
        model.sparse_aggregation = False
        slow = model(data)
    # Mean weights are stored in float32, hence a float32-level relative bound.
    assert ((fast - slow).abs().max() / slow.abs().max()) < 1e-6


def test_naive_copies_equal_scoring_each_config_alone():
    # prune=False must itself be the per-config computation: score configs one at a time.
    data = tiny_graph("layout", num_configs=4)
    model = SAGE("layout", hidden_channels=8, num_layers=2, prune=False).eval()
    with torch.no_grad():
        together = model(data)
        alone = torch.cat([model(permuted(data, torch.tensor([i]))) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_config_chunks_give_the_same_scores():
    data = tiny_graph("layout", num_configs=7)
    model = GAT("layout", hidden_channels=8, config_attention=True, attention_heads=2).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(data, config_chunk=3), model(data))


def test_pruning_touches_only_nodes_near_configurable_ones():
    data = tiny_graph("layout")
    edges = directed_edges(data.edge_index, "stored")
    plan = Planner(1, propagates=True, aggregation="mean", inputs="configurable").plan(
        data, edges, None
    )
    # Messages flow consumer -> producer: configurable 2 and 5 reach 1 and 4 in one hop.
    assert [m.nonzero().squeeze(1).tolist() for m in plan.masks] == [[2, 5], [1, 2, 4, 5]]
    layer = plan.layers[0]
    # The subgraph: S_1 and its in-neighbours 3 (-> 2) and 6 (-> 2, -> 5).
    assert layer.node_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert layer.prev_pos.tolist() == [1, 4] and layer.upd.tolist() == [0, 1, 3, 4]
    assert int(layer.edge_keep.sum()) == layer.edges.shape[1] == 5
    assert layer.adj.shape == (4, 6) and plan.distinct


def test_batch_of_graphs_scores_each_graph_like_alone():
    a, b = tiny_graph("layout", seed=0), tiny_graph("layout", seed=1)
    model = SAGE("layout", hidden_channels=8, readout="sum+max").eval()
    with torch.no_grad():
        both = model(Batch.from_data_list([a, b]))
        assert both.shape == (2, 5)
        torch.testing.assert_close(both[0], model(a), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(both[1], model(b), rtol=1e-5, atol=1e-6)
    t1, t2 = tiny_graph("tile", seed=0), tiny_graph("tile", seed=1)
    tile = GCN("tile", hidden_channels=8).eval()
    with torch.no_grad():
        torch.testing.assert_close(tile(Batch.from_data_list([t1, t2]))[1], tile(t2))


def test_tile_batch_with_unequal_config_counts_is_a_clear_error():
    batch = Batch.from_data_list([tiny_graph("tile", 5), tiny_graph("tile", 4)])
    with pytest.raises(ValueError, match="same number of configs"):
        SAGE("tile")(batch)


def test_repr_is_one_readable_line():
    text = repr(SAGE("layout", hidden_channels=32, readout=["sum", "max"], config_attention=True))
    assert "\n" not in text
    assert text.startswith("SAGE(task=layout, join=early, hidden_channels=32, num_layers=3")
    assert "readout=sum+max" in text and "config_attention" in text and "parameters" in text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"readout": "median"}, "readout"),
        ({"join": "middle"}, "join"),
        ({"norm": "batch"}, "norm"),
        ({"edge_direction": "up"}, "edge_direction"),
        ({"jk": "lstm"}, "jk"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAGE("layout", **kwargs)


def test_bad_choices_use_the_shared_wording():
    # tpulearn._checks.check_choice: the wording of every refused choice in tpulearn.
    with pytest.raises(ValueError, match=r"^norm must be one of \(None, 'layer'\), got 'batch'$"):
        SAGE("layout", norm="batch")


def test_config_node_readout_is_a_no_op_for_tile():
    tile = SAGE("tile", hidden_channels=8, config_node_readout=True)
    assert not tile.config_node_readout and "config_node_readout" not in repr(tile)
    assert SAGE("layout", hidden_channels=8, config_node_readout=True).config_node_readout


@pytest.mark.parametrize("layer", LAYERS)
def test_bf16_autocast_runs_and_stays_close_to_fp32(layer):
    data = real_graph("layout")
    model = layer("layout", hidden_channels=16, num_layers=2)
    with torch.autocast("cpu", torch.bfloat16):
        low = model(data)
    low.float().sum().backward()
    assert low.dtype == torch.bfloat16 and torch.isfinite(low.float()).all()
    with torch.no_grad():
        full = model(data)
    assert (low.float() - full).abs().max() <= 0.05 * full.abs().max() + 1e-2


@pytest.mark.gpu
@pytest.mark.parametrize("layer", LAYERS)
def test_cuda_scores_match_cpu(layer):
    data = real_graph("layout")
    torch.manual_seed(0)
    model = layer("layout", hidden_channels=16, num_layers=2).eval()
    with torch.no_grad():
        cpu = model(data)
        gpu = model.cuda()(data.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)


def test_gin_layers_use_the_models_activation():
    assert isinstance(GIN("layout", hidden_channels=8).convs[0].nn[1], torch.nn.LeakyReLU)
    assert isinstance(GIN("layout", hidden_channels=8, act="gelu").convs[0].nn[1], torch.nn.GELU)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: SAGE("layout", attention_heads=2), "attention_heads=2 has no effect"),
        (lambda: SAGE("tile", layout_onehot=False), "layout_onehot=False has no effect"),
        (lambda: MLP("layout", edge_direction="stored"), "MLP passes no messages"),
    ],
)
def test_options_a_switch_disables_warn_when_changed(make, match):
    with pytest.warns(UserWarning, match=match):
        make()


def test_options_at_their_defaults_or_in_effect_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SAGE("layout", config_attention=True, attention_heads=2)
        SAGE("tile", attention_heads=4, config_node_readout=True)
        SAGE("layout", layout_onehot=False, edge_direction="stored")
        MLP("tile")


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_a_linear_head_over_a_sum_readout_scores_a_sum_of_per_node_terms(head):
    # No message passing: each configurable node's vector depends on its own config only,
    # so with a sum readout and a linear head the score is additive over the two nodes:
    # s(a', b') - s(a, b') == s(a', b) - s(a, b). An MLP head breaks that.
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=8, num_layers=0, readout="sum", head=head)
    model.eval()
    data = tiny_graph("layout", num_configs=2)
    a, b = data.node_config_feat[0], data.node_config_feat[1]
    cfg = torch.stack([a, torch.stack([b[0], a[1]]), torch.stack([a[0], b[1]]), b])
    data = tiny_graph("layout", num_configs=4)
    data.node_config_feat = cfg
    with torch.no_grad():
        s = model(data).double()
    interaction = (s[3] - s[2]) - (s[1] - s[0])
    if head == "linear":
        assert abs(float(interaction)) < 1e-5
        assert isinstance(model.head, torch.nn.Linear)
    else:
        assert abs(float(interaction)) > 1e-5


def test_an_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head"):
        SAGE("layout", head="deep")


@pytest.mark.parametrize(
    ("key", "value", "minimum"), [("hidden_channels", 0, 1), ("num_layers", -1, 0)]
)
def test_bad_widths_and_depths_are_refused(key, value, minimum):
    # hidden_channels=0 once failed deep in torch on an uninitialised parameter.
    with pytest.raises(ValueError, match=rf"{key} must be an integer >= {minimum}, got {value}"):
        SAGE("layout", **{key: value})


@pytest.mark.parametrize("dropout", [-0.1, 1.0, 1.5, float("nan"), "0.1"])
def test_a_dropout_outside_0_to_1_is_refused(dropout):
    # 1.5 once failed in the first forward pass, in torch's bernoulli_.
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got"):
        SAGE("layout", dropout=dropout)


def test_no_message_passing_layers_still_scores():
    model = SAGE("layout", num_layers=0, hidden_channels=8, opcode_dim=4)
    scores = model(tiny_graph("layout", num_configs=3))
    assert scores.shape == (3,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("task", ["layout", "tile"])
def test_dropout_masks_are_shared_by_the_configs_of_a_graph(task):
    # Two identical configs score identically in train mode: the masks are drawn per
    # (layer, node), not per config, so dropout adds no noise to score differences.
    data = tiny_graph(task, num_configs=4)
    key = "node_config_feat" if task == "layout" else "config_feat"
    data[key][1] = data[key][0]
    torch.manual_seed(0)
    model = SAGE(task, hidden_channels=16, dropout=0.5).train()
    scores = model(data)
    assert scores[0] == scores[1]
    assert not torch.equal(scores, model.eval()(data))  # dropout was active


def test_dropout_gives_the_same_scores_on_every_per_config_path():
    # The distinct-state, sparse-product, C-copies and unpruned paths draw the same masks.
    data = tiny_graph("layout", num_configs=6)
    options = [
        {},
        {"distinct_states": False},
        {"distinct_states": False, "sparse_aggregation": False},
        {"prune": False},
    ]
    torch.manual_seed(0)
    reference = SAGE("layout", hidden_channels=16, dropout=0.3)
    outs = []
    for kw in options:
        model = SAGE("layout", hidden_channels=16, dropout=0.3, **kw)
        model.load_state_dict(reference.state_dict())
        torch.manual_seed(1)
        outs.append(model.train()(data))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])


def test_config_shared_dropout_shares_one_mask_over_the_config_dimension():
    from tpulearn.models.base import ConfigSharedDropout

    drop = ConfigSharedDropout(0.5).train()
    torch.manual_seed(0)
    out = drop(torch.ones(2, 5, 64))
    assert torch.equal(out, out[:, :1].expand_as(out))  # every config, the same mask
    assert set(out.unique().tolist()) == {0.0, 2.0}
    assert not torch.equal(out[0], out[1])  # graphs get masks of their own
    x = torch.randn(2, 5, 8)
    assert torch.equal(drop.eval()(x), x)


def test_config_attention_adds_no_per_config_dropout_noise():
    data = tiny_graph("layout", num_configs=4)
    data.node_config_feat[1] = data.node_config_feat[0]
    torch.manual_seed(0)
    model = SAGE("layout", hidden_channels=16, dropout=0.5, config_attention=True).train()
    scores = model(data)
    assert scores[0] == scores[1]


def test_layout_shape_reads_the_output_dims_in_the_chosen_order():
    from tpulearn.models.encoders import ConfigEncoder

    encoder = ConfigEncoder("layout", 4, layout_onehot=True, layout_shape=True)
    feat = torch.full((2, 18), -1.0)
    feat[0, :3] = torch.tensor([2.0, 0.0, 1.0])  # minor-to-major: dim 2, then 0, then 1
    dims = torch.tensor([10.0, 20.0, 30.0, 0.0, 0.0, 0.0])
    seen = {}
    encoder.lin.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    encoder(feat, dims.expand(2, 6))
    shape_part = seen["x"][:, -6:]
    assert shape_part[0].tolist() == [30.0, 10.0, 20.0, 0.0, 0.0, 0.0]
    assert shape_part[1].tolist() == [0.0] * 6  # an unset layout reads no sizes
    with pytest.raises(ValueError, match="dims"):
        encoder(feat)


def test_layout_shape_gives_the_same_scores_on_every_per_config_path():
    data = tiny_graph("layout", num_configs=6)
    torch.manual_seed(0)
    reference = SAGE("layout", hidden_channels=16, layout_shape=True)
    outs = []
    for kw in ({}, {"distinct_states": False}, {"sparse_aggregation": False}, {"prune": False}):
        model = SAGE("layout", hidden_channels=16, layout_shape=True, **kw)
        model.load_state_dict(reference.state_dict())
        outs.append(model.eval()(data))
        check_model(model, data)
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
    with pytest.raises(ValueError, match="join='early'"):
        SAGE("layout", layout_shape=True, join="late")
    with pytest.warns(UserWarning, match="layout_shape"):
        SAGE("tile", layout_shape=True)


def test_tile_layout_models_read_42_config_features_and_refuse_24():
    data = tiny_graph("tile", num_configs=6)
    extra = data.clone()
    extra.config_feat = torch.cat([data.config_feat, torch.randn(6, 18)], dim=1)
    for join in JOINS:
        model = SAGE("tile", hidden_channels=8, join=join, tile_layout=True)
        assert model.config_encoder.in_channels == 42 and "tile_layout" in repr(model)
        check_model(model, extra)
        with pytest.raises(ValueError, match="tile_layout must agree"):
            model(data)
        with pytest.raises(ValueError, match="tile_layout must agree"):
            SAGE("tile", hidden_channels=8, join=join)(extra)
    with pytest.warns(UserWarning, match="tile_layout"):
        SAGE("layout", tile_layout=True)


def test_layout_relations_describe_each_block_alike_for_every_rank():
    from tpulearn.models.encoders import LAYOUT_RELATION_DIM, layout_relations

    def row(out, inp, ker):
        pad = lambda b: b + [-1] * (6 - len(b))  # noqa: E731
        return pad(out) + pad(inp) + pad(ker)

    feat = torch.tensor(
        [
            row([2, 1, 0], [0, 1], []),  # row-major rank 3, column-major rank 2, unset
            row([1, 0, 2], [1, 0], [0]),  # neither order, row-major rank 2, rank 1 (both)
            row([1, 0], [3, 2, 1, 0], [0, 1, 2, 3]),
        ],
        dtype=torch.float,
    )
    out = layout_relations(feat).view(3, 3, 13)
    assert out.shape[1] * out.shape[2] == LAYOUT_RELATION_DIM
    desc, asc, unset = out[..., :6], out[..., 6:12], out[..., 12]
    # The middle dim of an odd rank is where both orders put it.
    assert desc[0, 0].tolist() == [1, 1, 1, 0, 0, 0] and asc[0, 0].tolist() == [0, 1, 0, 0, 0, 0]
    assert asc[0, 1].tolist() == [1, 1, 0, 0, 0, 0] and desc[0, 1].sum() == 0
    assert unset[0].tolist() == [0, 0, 1] and out[0, 2, :12].sum() == 0
    assert desc[1, 0].sum() == 0 and asc[1, 0].tolist() == [0, 0, 1, 0, 0, 0]
    assert desc[1, 2].tolist() == asc[1, 2].tolist() == [1, 0, 0, 0, 0, 0]
    # Row-major is the same feature at rank 2 and at rank 4.
    assert desc[2, 0].tolist()[:2] == desc[2, 1].tolist()[:2] == [1, 1]
    assert desc[2, 1].tolist() == [1, 1, 1, 1, 0, 0] and asc[2, 2].tolist() == [1, 1, 1, 1, 0, 0]
    assert unset[1:].sum() == 0


@pytest.mark.parametrize(
    "options", [{"layout_relations": True}, {"pre_layers": 2}, {"post_layers": 1}]
)
def test_encoder_options_give_the_same_scores_on_every_per_config_path(options):
    data = tiny_graph("layout", num_configs=6)
    models, outs = scores_on_every_path(data, **options)
    for model in models:
        check_model(model, data)
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
    assert not torch.allclose(outs[0], outs[0][0].expand_as(outs[0]))


def test_pre_layers_are_counted_and_checked():
    plain, deeper = (
        SAGE("layout", hidden_channels=8),
        SAGE("layout", hidden_channels=8, pre_layers=2),
    )
    extra = sum(p.numel() for p in deeper.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (8 * 8 + 8)
    assert "pre_layers=2" in repr(deeper) and "pre_layers" not in repr(plain)
    with pytest.raises(ValueError, match="pre_layers must be 0 or more"):
        SAGE("layout", pre_layers=-1)


def test_post_layers_follow_the_last_layer_and_are_checked():
    plain, deeper = (
        SAGE("layout", hidden_channels=8, num_layers=2),
        SAGE("layout", hidden_channels=8, num_layers=2, post_layers=2),
    )
    extra = sum(p.numel() for p in deeper.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (8 * 8 + 8)
    # Inside the last layer's activation only: the first layer's is the plain one.
    assert isinstance(deeper.acts[0], type(plain.acts[0]))
    assert len(deeper.acts[1]) == 1 + 2 * 2
    assert "post_layers=2" in repr(deeper) and "post_layers" not in repr(plain)
    with pytest.raises(ValueError, match="post_layers must be 0 or more"):
        SAGE("layout", post_layers=-1)
    with pytest.raises(ValueError, match="num_layers is 0"):
        SAGE("layout", num_layers=0, post_layers=1)


@pytest.mark.parametrize("task, other", [("layout", "tile"), ("tile", "layout")])
def test_a_model_given_the_other_tasks_item_says_so(task, other):
    # Before: AttributeError: 'GlobalStorage' object has no attribute 'node_config_feat'.
    key = "config_feat" if task == "tile" else "node_config_feat"
    with pytest.raises(
        ValueError,
        match=f"^a {task} model scores data with {key}; this data has none: a {other} item$",
    ):
        SAGE(task, hidden_channels=8, num_layers=1)(real_graph(other))
