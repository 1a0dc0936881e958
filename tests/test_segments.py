"""Graph segment training: partitions, segments, history table, stale dropout, GST step."""

import importlib
import io
import math
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from tpulearn.data import LayoutDataset, TpuGraphData, UniformSampler, sample_root
from tpulearn.losses import pairwise_hinge_loss
from tpulearn.models import GAT, GCN, GIN, MLP, SAGE, ResGCN
from tpulearn.segments import (
    GSTSettings,
    GSTTrainer,
    HistoryTable,
    PartitionCache,
    SegmentModel,
    combine,
    gst_step,
    gst_trainer,
    partition,
    segment_data,
    split_segments,
    stale_keep_mask,
    trained_multiplier,
)

LAYERS = [SAGE, GCN, GAT, GIN, ResGCN, MLP]


def tiny_graph(num_configs: int = 5, seed: int = 0, stem: str = "tiny") -> TpuGraphData:
    """7 nodes in a chain with a branch; nodes 2 and 5 configurable."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2]]).T
    return TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=edges,
        node_config_ids=torch.tensor([2, 5]),
        node_config_feat=torch.randint(-1, 6, (num_configs, 2, 18), generator=g).float(),
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        node_splits=torch.tensor([0, 4, 7]),
        num_nodes=7,
        stem=stem,
    )


@pytest.fixture(scope="module")
def unet3d():
    ds = LayoutDataset(sample_root(), "xla", "default", "train", sampler=UniformSampler(8))
    ds.normalizer = ds.fit_normalizer(log=True)
    return ds, ds[0]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and spinning OpenMP workers on a busy 2-core
    # machine slow every small op down by orders of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(layer=SAGE, **kwargs):
    torch.manual_seed(0)
    return layer("layout", hidden_channels=16, num_layers=2, **kwargs)


# ---------------------------------------------------------------------- partitions


def check_cover(part, num_nodes, limit):
    assert part.assignment.shape == (num_nodes,)
    assert int(part.sizes.sum()) == num_nodes
    assert int(part.sizes.max()) <= limit
    for s in range(part.num_segments):
        nodes = part.nodes(s)
        assert nodes.numel() == int(part.sizes[s]) > 0
        assert torch.equal(part.local_index[nodes], torch.arange(nodes.numel()))


@pytest.mark.parametrize("n,limit", [(1, 1000), (999, 1000), (1000, 1000), (1001, 1000), (10, 3)])
def test_contiguous_partition_is_balanced_ranges(n, limit):
    part = partition((n, torch.zeros(2, 0, dtype=torch.long)), limit)
    check_cover(part, n, limit)
    assert part.num_segments == math.ceil(n / limit)
    assert int(part.sizes.max() - part.sizes.min()) <= 1
    assert bool((part.assignment.diff() >= 0).all())  # node-id ranges
    assert part.key is None


def test_real_graph_splits_into_three_contiguous_segments(unet3d):
    _, data = unet3d
    part = partition(data)
    check_cover(part, 2774, 1000)
    assert part.sizes.tolist() == [924, 925, 925]
    assert part.key == "unet3d:2774:contiguous:1000"


@pytest.mark.parametrize("limit", [1000, 300, 64])
def test_metis_partition_covers_nodes_within_the_limit(unet3d, limit):
    pytest.importorskip("pymetis")
    _, data = unet3d
    part = partition(data, limit, method="metis")
    check_cover(part, data.num_nodes, limit)
    assert part.num_segments >= math.ceil(data.num_nodes / limit)
    first = [int(part.nodes(s)[0]) for s in range(part.num_segments)]
    assert first == sorted(first)  # numbered by smallest node


@pytest.mark.parametrize("first_split", ["lopsided", "none"])
def test_metis_parts_above_the_limit_are_split_again(monkeypatch, first_split):
    # A stand-in for METIS: its first answer is unbalanced (80% in one part) or no split at
    # all; later answers are balanced. Every segment must still respect the limit.
    calls = []

    def fake_parts(pymetis, n, src, dst, nparts, seed):
        calls.append((n, nparts))
        if len(calls) == 1:
            lopsided = np.where(np.arange(n) < 0.8 * n, 0, 1 + np.arange(n) % (nparts - 1))
            return lopsided if first_split == "lopsided" else np.zeros(n, dtype=np.int64)
        return np.arange(n) * nparts // n

    monkeypatch.setitem(sys.modules, "pymetis", types.ModuleType("pymetis"))
    monkeypatch.setattr(
        importlib.import_module("tpulearn.segments.partition"), "_metis_parts", fake_parts
    )
    edges = torch.stack([torch.arange(1, 100), torch.arange(99)])
    part = partition((100, edges), 30, method="metis")
    check_cover(part, 100, 30)
    assert calls[0] == (100, 4)
    assert len(calls) == (2 if first_split == "lopsided" else 1)


def test_metis_without_pymetis_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymetis", None)
    with pytest.raises(ImportError, match=r"pip install tpulearn\[gst\]"):
        partition(tiny_graph(), 3, method="metis")


def test_partition_cache_computes_once_per_key():
    cache = PartitionCache()
    data = tiny_graph()
    first = cache.get(data, 3)
    assert cache.get(tiny_graph(seed=1), 3) is first  # same stem and size: cached
    assert cache.get(data, 4) is not first
    assert len(cache) == 2
    assert first.key == "tiny:7:contiguous:3"


# ---------------------------------------------------------------------- segments


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


def test_gst_step_trains_segments_with_their_halo(unet3d):
    _, data = unet3d
    seg_model = SegmentModel(small(), 1000, halo_hops=2).eval()
    out = gst_step(seg_model, HistoryTable(), [data], keep_prob=1.0)
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)
    # Every entry is filled fresh on a first step, so the prediction is the full sum.
    torch.testing.assert_close(out.scores[0], fresh.sum(0), rtol=1e-5, atol=1e-4)
    out.scores.sum().backward()
    assert all(p.grad is not None for p in seg_model.model.convs.parameters())


# ---------------------------------------------------------------------- inference


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


def test_trainer_trains_checkpointed_segments_without_a_history_table(tmp_path):
    seg = SegmentModel(small(), max_segment_nodes=1000, checkpoint=True)
    assert gst_trainer(seg) is None
    assert "checkpoint" in repr(seg)


def test_gst_settings_for_a_model_that_does_not_train_by_gst_warn():
    settings = GSTSettings(max_age=0)
    with pytest.warns(UserWarning, match=r"\{'max_age': 0\} have no effect: SAGE trains on whole"):
        assert gst_trainer(small(), settings) is None
    disabled = SegmentModel(small(), max_segment_nodes=1000, enabled=False)
    with pytest.warns(UserWarning, match="segments disabled"):
        assert gst_trainer(disabled, settings) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gst_trainer(small(), GSTSettings()) is None  # the defaults: nothing was set
        assert gst_trainer(SegmentModel(small(), 1000), settings).max_age == 0


# ---------------------------------------------------------------------- history table


def test_history_table_index_arithmetic():
    table = HistoryTable()
    table.ensure("a", num_configs=4, num_segments=3)
    table.ensure("b", num_configs=2, num_segments=2)
    table.write("a", torch.tensor([1, 3]), 2, torch.tensor([10.0, 30.0]))
    table.write("a", torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([5.0, 7.0]))
    expected = torch.zeros(4, 3)
    expected[1, 2], expected[3, 2], expected[0, 0], expected[3, 1] = 10, 30, 5, 7
    assert torch.equal(table.values["a"], expected)
    assert torch.equal(table.filled["a"], expected != 0)
    # Row-major per graph: (config 3, segment 1) is flat entry 3 * 3 + 1 = 10.
    assert table.values["a"].flatten()[10] == 7
    values, filled = table.read("a", torch.tensor([3, 1]))
    assert values.tolist() == [[0.0, 7.0, 30.0], [0.0, 0.0, 10.0]]
    assert filled.tolist() == [[False, True, True], [False, False, True]]
    assert not table.filled["b"].any() and table.num_entries == 16
    table.ensure("a", num_configs=6, num_segments=3)  # grows, keeps what it had
    assert table.values["a"].shape == (6, 3) and torch.equal(table.values["a"][:4], expected)
    assert not table.filled["a"][4:].any()
    with pytest.raises(ValueError, match="segments"):
        table.ensure("a", 6, 4)


def test_history_state_dict_round_trip():
    table = HistoryTable()
    table.ensure("g", 3, 2)
    table.write("g", torch.tensor([2]), 1, torch.tensor([1.5]))
    buffer = io.BytesIO()
    torch.save(table.state_dict(), buffer)
    buffer.seek(0)
    other = HistoryTable()
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(other.values["g"], table.values["g"])
    assert torch.equal(other.filled["g"], table.filled["g"])
    assert torch.equal(other.stamps["g"], table.stamps["g"]) and other.clock == table.clock


def test_history_ages_count_steps_since_the_last_write():
    table = HistoryTable()
    table.ensure("g", 4, 2)
    table.write("g", torch.tensor([0, 1]), 0, torch.ones(2))
    table.tick()
    table.tick()
    table.write("g", torch.tensor([1]), 0, torch.ones(1))
    table.write("g", torch.tensor([3]), 1, torch.ones(1))
    ages = table.age("g", torch.tensor([0, 1, 3]))
    assert ages[:, 0].tolist() == [2, 0, 2] and ages[2, 1] == 0
    table.ensure("g", 6, 2)  # grown rows are unwritten
    assert not table.filled["g"][4:].any()
    # A state saved without write steps loads with every entry written at step 0.
    state = table.state_dict()
    del state["stamps"], state["clock"]
    other = HistoryTable()
    other.load_state_dict(state)
    assert other.clock == 0 and not other.stamps["g"].any()


# ---------------------------------------------------------------------- dropout, rescaling


@pytest.mark.parametrize("keep_prob", [0.5, 0.3])
def test_stale_dropout_keeps_the_expected_fraction(keep_prob):
    n = 10_000
    keep = stale_keep_mask((n,), keep_prob, torch.Generator().manual_seed(0))
    sigma = math.sqrt(keep_prob * (1 - keep_prob) / n)
    assert abs(keep.float().mean().item() - keep_prob) < 3 * sigma
    assert stale_keep_mask((100,), 1.0).all() and not stale_keep_mask((100,), 0.0).any()


def test_rescaling_on_a_hand_built_case():
    trained = torch.tensor([2.0, -1.0])
    stale = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # S = 4
    keep = torch.tensor([[True, False, True], [False, False, True]])
    # Reference: m = 1 + (S - 1)(1 - p) = 2.5 at p = 0.5 (the reference's (S - 1) / 2 + 1).
    assert trained_multiplier(4, 0.5) == 2.5 == (4 - 1) / 2 + 1
    assert trained_multiplier(4, 1.0) == 1.0 and trained_multiplier(4, 0.0) == 4.0
    assert combine(trained, stale, keep, 0.5).tolist() == [9.0, 3.5]
    assert combine(trained, stale, keep, 0.5, "stale").tolist() == [10.0, 11.0]
    assert combine(trained, stale, keep, 0.5, "none").tolist() == [6.0, 5.0]
    with pytest.raises(ValueError, match="rescale"):
        combine(trained, stale, keep, 0.5, "both")


# ---------------------------------------------------------------------- GST step


def test_first_step_fills_missing_entries_with_fresh_scores(unet3d):
    ds, data = unet3d
    seg_model = SegmentModel(small()).eval()  # eval: fresh scores are deterministic
    trainer = GSTTrainer(seg_model, keep_prob=1.0)
    scores = trainer.step([data], num_configs=[ds.num_configs[0]])
    key = "unet3d:2774:contiguous:1000"
    assert trainer.table.values[key].shape == (1159, 3)
    assert trainer.table.filled[key][data.config_index].all()
    assert int(trainer.table.filled[key].sum()) == 3 * data.config_index.unique().numel()
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)  # [3, C]
    torch.testing.assert_close(trainer.table.values[key][data.config_index], fresh.T)
    torch.testing.assert_close(scores[0], fresh.sum(0))  # p = 1: nothing dropped


def test_fill_pass_runs_in_eval_mode_and_restores_training(unet3d):
    _, data = unet3d
    seg_model = SegmentModel(small(dropout=0.5)).train()
    table = HistoryTable()
    out = gst_step(seg_model, table, [data], keep_prob=1.0, num_configs=[1159])
    assert seg_model.training  # back in train mode after the fill
    seg_model.eval()
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)  # eval mode: no dropout
    values = table.values["unet3d:2774:contiguous:1000"][data.config_index]
    # The filled segments hold the deterministic eval-mode scores; the trained one was
    # computed in train mode (dropout 0.5), so it differs.
    for s in range(3):
        if s != out.segments[0]:
            torch.testing.assert_close(values[:, s], fresh[s])
    assert not torch.allclose(values[:, out.segments[0]], fresh[out.segments[0]])


def test_missing_zero_reads_unwritten_entries_as_zero(unet3d):
    _, data = unet3d
    seg_model = SegmentModel(small()).eval()
    out = gst_step(seg_model, HistoryTable(), [data], keep_prob=1.0, missing="zero")
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)
    torch.testing.assert_close(out.scores[0], fresh[out.segments[0]])


@pytest.mark.parametrize("max_age", [None, 0, 1])
def test_max_age_recomputes_entries_older_than_the_bound(unet3d, max_age):
    """Stored entries are kept while at most ``max_age`` steps old, then recomputed; with
    p = 1, the prediction is the trained segment plus exactly what was read."""
    _, data = unet3d  # 3 segments
    seg_model = SegmentModel(small(), 1000).eval()
    table = HistoryTable()
    gst_step(seg_model, table, [data], keep_prob=1.0)  # step 1: every entry fresh
    key = seg_model.partition(data).key
    table.values[key].fill_(1000.0)  # mark the stored values (written at step 1)
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)
    for step in (2, 3):
        out = gst_step(seg_model, table, [data], keep_prob=1.0, max_age=max_age)
        t = out.segments[0]
        others = [s for s in range(3) if s != t]
        read = out.scores[0].detach() - fresh[t]
        # Entries written at step 1 are step - 1 steps old when read.
        stale = max_age is not None and step - 1 > max_age
        expected = fresh[others].sum(0) if stale else None
        if stale:
            torch.testing.assert_close(read, expected, rtol=1e-4, atol=1e-3)
        else:
            # Kept entries still hold the marks (the one trained at step 2 holds fresh).
            assert (read > 500).all()
        table.values[key][:, t] = 1000.0  # keep the marks on the trained column too
        table.stamps[key][:, t] = 1
    with pytest.raises(ValueError, match="max_age"):
        gst_step(seg_model, table, [data], max_age=-1)


@pytest.mark.parametrize("rescale,factor", [("trained", 3.0), ("none", 1.0)])
def test_all_dropped_gives_the_rescaled_trained_segment(unet3d, rescale, factor):
    _, data = unet3d
    seg_model = SegmentModel(small()).eval()
    out = gst_step(seg_model, HistoryTable(), [data], keep_prob=0.0, rescale=rescale)
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)[out.segments[0]]
    torch.testing.assert_close(out.scores[0], factor * fresh)


@pytest.mark.parametrize("unit", ["entry", "segment"])
def test_dropout_unit_decides_per_entry_or_per_segment(unet3d, unit):
    _, data = unet3d  # 3 segments, 8 configs
    seg_model = SegmentModel(small()).eval()
    with torch.no_grad():
        fresh = seg_model.segment_scores(data)  # [3, C]
    table = HistoryTable()
    first = gst_step(seg_model, table, [data], keep_prob=1.0)  # fills every entry
    kept_patterns, mixed_steps = set(), 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        out = gst_step(
            seg_model, table, [data], 0.5, "none", generator=generator, dropout_unit=unit
        )
        trained = out.segments[0]
        others = [s for s in range(3) if s != trained]
        # With rescale "none": prediction - trained segment = sum of the kept stale scores.
        rest = (out.scores[0] - fresh[trained]).detach()
        # Decode which stale segments each config kept (the scores are distinct here).
        options = {
            (a, b): a * fresh[others[0]] + b * fresh[others[1]] for a in (0, 1) for b in (0, 1)
        }
        per_config = []
        for c in range(rest.numel()):
            match = [k for k, v in options.items() if torch.isclose(v[c], rest[c], atol=1e-5)]
            assert len(match) == 1
            per_config.append(match[0])
        mixed_steps += len(set(per_config)) > 1
        kept_patterns.update(per_config)
    assert first.scores.shape == (1, 8)
    # Decisions vary over steps; per entry they also differ between configs of one step,
    # per segment never.
    assert kept_patterns == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert (mixed_steps == 0) if unit == "segment" else (mixed_steps >= 35)


def test_trainer_state_round_trip_replays_the_same_step(unet3d):
    _, data = unet3d
    trainer = GSTTrainer(SegmentModel(small()).eval(), seed=3)
    trainer.step([data])
    state = trainer.state_dict()
    again = GSTTrainer(SegmentModel(small()).eval(), seed=99)
    again.load_state_dict(state)
    for key in state["table"]["values"]:
        assert torch.equal(again.table.values[key], trainer.table.values[key])
    a, b = trainer.step([data]), again.step([data])
    assert trainer.last.segments == again.last.segments
    torch.testing.assert_close(a, b)


def test_disabled_segments_train_on_whole_graphs(unet3d):
    _, data = unet3d
    model = small().eval()
    trainer = GSTTrainer(SegmentModel(model, enabled=False))
    with torch.no_grad():
        torch.testing.assert_close(
            trainer.step([data, data]), model(Batch.from_data_list([data] * 2))
        )
    assert len(trainer.table) == 0


@pytest.mark.parametrize("layer", LAYERS, ids=lambda c: c.__name__)
def test_gst_step_on_the_real_graph_every_layer_type(unet3d, layer):
    _, data = unet3d
    seg_model = SegmentModel(small(layer, join="early")).train()
    trainer = GSTTrainer(seg_model)
    other = tiny_graph(num_configs=8)
    scores = trainer.step([data, other])
    assert scores.shape == (2, 8)
    loss = pairwise_hinge_loss(scores, torch.stack([data.config_runtime, other.config_runtime]))
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    grads = {n: p.grad for n, p in seg_model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert trainer.last.num_segments == [3, 1]


@pytest.mark.gpu
def test_table_and_segments_follow_the_model_to_cuda(unet3d):
    _, data = unet3d
    seg_model = SegmentModel(small().cuda())
    trainer = GSTTrainer(seg_model)
    scores = trainer.step([data])
    assert scores.is_cuda and trainer.table.device.type == "cuda"
    assert seg_model.eval()(data).is_cuda
