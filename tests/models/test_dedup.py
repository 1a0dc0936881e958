"""Distinct node states: exact ids, and the same scores and gradients as per-config work."""

import pytest
import torch
from tiny_graphs import chain_graph as tiny_graph
from torch_geometric.data import Batch

from tpulearn.data import AllConfigsSampler, LayoutDataset, sample_root
from tpulearn.models import GAT, GCN, GIN, SAGE, ResGCN, dedup
from tpulearn.models.plan import csr_matrix

ROOT = sample_root()


def test_merge_slots_on_a_hand_built_case():
    # 3 rows; row 0 has slots (a, b), row 1 has slot (c), row 2 has none. 4 configs.
    slot_row = torch.tensor([0, 0, 1])
    ids = torch.tensor(
        [
            [0, 1, 2],  # config 0
            [0, 1, 2],  # config 1: same as config 0 everywhere
            [1, 0, 2],  # config 2: row 0 tuple reversed -> different
            [0, 1, 3],  # config 3: row 1 differs only
        ]
    )
    index, count = dedup.merge_slots(ids, slot_row, num_rows=3, num_ids=4)
    assert index.shape == (4, 3)
    # Row 0: configs 0, 1, 3 share (0, 1); config 2 has (1, 0).
    assert index[0, 0] == index[1, 0] == index[3, 0] != index[2, 0]
    # Row 1: configs 0, 1, 2 share id 2; config 3 has 3.
    assert index[0, 1] == index[1, 1] == index[2, 1] != index[3, 1]
    # Row 2 (no slots): one state for every config, distinct from the other rows' states.
    assert len(set(index[:, 2].tolist())) == 1
    assert set(index[:, 2].tolist()).isdisjoint(index[:, :2].flatten().tolist())
    # Ids are dense 0..count-1: 2 + 2 + 1 states.
    assert count == 5 and sorted(set(index.flatten().tolist())) == list(range(5))


def test_merge_slots_long_rows_need_every_slot():
    # One row of 9 slots: tuples that differ only in the last slot must differ.
    torch.manual_seed(0)
    ids = torch.randint(0, 3, (50, 9))
    ids[1] = ids[0]
    ids[2] = ids[0]
    ids[2, 8] = (ids[0, 8] + 1) % 3
    index, count = dedup.merge_slots(ids, torch.zeros(9, dtype=torch.long), 1, 3)
    expected = torch.unique(ids, dim=0).shape[0]
    assert count == expected
    assert index[0, 0] == index[1, 0] != index[2, 0]
    # Equal ids exactly when the rows are equal.
    same = index[:, 0, None] == index[None, :, 0]
    assert torch.equal(same, (ids[:, None] == ids[None]).all(-1))


@pytest.mark.parametrize("collide", [False, True])
def test_distinct_tuples_are_exact_even_when_every_hash_collides(collide, monkeypatch):
    if collide:  # every tuple hashes alike: the slot-by-slot check must catch it
        monkeypatch.setattr(dedup, "_mix", lambda x: torch.zeros_like(x))
    torch.manual_seed(0)
    slot_row = torch.tensor([0, 0, 0, 1, 1, 3])  # row 2 has no slot
    ids = torch.randint(0, 3, (40, 6))
    index, count = dedup.distinct_tuples(ids, slot_row, num_rows=4)
    merged, merged_count = dedup.merge_slots(ids, slot_row, 4, 3)
    assert count == merged_count
    # The same partition of (config, row) pairs as the exact merge.
    flat, ref = index.flatten(), merged.flatten()
    assert torch.equal(flat[:, None] == flat[None], ref[:, None] == ref[None])


def test_unique_rows_and_representatives():
    rows = torch.tensor([[1.0, 2.0], [0.5, 2.0], [1.0, 2.0], [0.5, 2.0], [3.0, 0.0]])
    inverse, rep = dedup.unique_rows(rows)
    assert inverse.tolist()[0] == inverse.tolist()[2] and inverse[1] == inverse[3]
    assert rep.numel() == 3
    assert torch.equal(rows[rep][inverse], rows)


@pytest.mark.parametrize("collide", [False, True])
def test_unique_rows_are_exact_even_when_every_hash_collides(collide, monkeypatch):
    if collide:  # every row hashes alike: the row-by-row check must catch it
        monkeypatch.setattr(dedup, "_mix", lambda x: torch.zeros_like(x))
    torch.manual_seed(0)
    rows = torch.randint(0, 3, (200, 4)).float()
    rows[1::7] = -0.0  # compared by bits: -0.0 is not 0.0
    inverse, rep = dedup.unique_rows(rows)
    bits = rows.view(torch.int32)
    assert rep.numel() == torch.unique(bits, dim=0).shape[0]
    assert torch.equal(inverse[:, None] == inverse[None], (bits[:, None] == bits[None]).all(-1))
    assert torch.equal(rows[rep][inverse].view(torch.int32), bits)


def test_unique_rows_give_the_ids_of_the_slot_tuples():
    """unique_rows hashes the rows as distinct_tuples hashes them as tuples of slots, so
    both give the same ids (the order distinct states are stored and computed in)."""
    torch.manual_seed(1)
    rows = torch.randint(-1, 6, (500, 9)).double()
    inverse, rep = dedup.unique_rows(rows)
    slot_row = torch.arange(500).repeat_interleave(9)
    ids, count = dedup.distinct_tuples(rows.view(torch.int64).reshape(1, -1), slot_row, 500, False)
    assert torch.equal(inverse, ids.view(-1)) and rep.numel() == count


def test_mix_is_splitmix64_and_leaves_its_input_alone():
    def splitmix64(v):  # the finaliser on Python ints, mod 2**64
        v %= 1 << 64
        v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) % (1 << 64)
        v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) % (1 << 64)
        v ^= v >> 31
        return v - (1 << 64) if v >= 1 << 63 else v

    x = torch.tensor([0, 1, 2, -1, 123456789, -(1 << 63), (1 << 63) - 1])
    before = x.clone()
    assert dedup._mix(x).tolist() == [splitmix64(v) for v in x.tolist()]
    assert torch.equal(x, before)


def _coalesced_csr(rows, cols, values, size):
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, size)
    return coo.coalesce().to_sparse_csr()


@pytest.mark.parametrize("repeats", [False, True])
def test_csr_matrix_is_the_coalesced_matrix(repeats):
    # Entries in no order; with repeats, some positions appear 2-4 times (summed).
    gen = torch.Generator().manual_seed(0)
    size = (7, 11)
    position = torch.randperm(size[0] * size[1], generator=gen)[:30]
    if repeats:
        position = torch.cat([position, position[:6], position[:3], position[:1]])
        position = position[torch.randperm(position.numel(), generator=gen)]
    rows, cols = position // size[1], position % size[1]
    values = torch.randn(position.numel(), generator=gen)
    got = csr_matrix(rows, cols, values, size)
    want = _coalesced_csr(rows, cols, values, size)
    assert got.layout == torch.sparse_csr and got.shape == size
    assert torch.equal(got.crow_indices(), want.crow_indices())
    assert torch.equal(got.col_indices(), want.col_indices())
    assert torch.equal(got.values(), want.values())
    dense = torch.zeros(size).index_put_((rows, cols), values, accumulate=True)
    assert torch.allclose(got.to_dense(), dense)
    x = torch.randn(size[1], 3, generator=gen)
    assert torch.equal(got @ x, want @ x)


def test_csr_matrix_of_no_entries():
    empty = torch.zeros(0, dtype=torch.long)
    got = csr_matrix(empty, empty, torch.zeros(0), (4, 5))
    assert got.crow_indices().tolist() == [0, 0, 0, 0, 0] and got._nnz() == 0
    assert torch.equal(got.to_dense(), torch.zeros(4, 5))


def _valid_graph(num_configs: int):
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    ds.node_normalizer = ds.fit_normalizer(log=True)
    data = ds[0]
    data.node_config_feat = data.node_config_feat[:num_configs]
    data.config_runtime = data.config_runtime[:num_configs]
    data.config_index = data.config_index[:num_configs]
    return data


MODEL_OPTIONS = [
    {},
    {"jk": "cat", "readout": "mean+max", "config_node_readout": True},
    {"jk": "max", "residual": True, "act": "prelu", "norm": "layer", "readout_l2": True},
    {"readout": "attn+max", "config_node_readout": True, "pre_layers": 2},
    {"readout": "attn", "attn_gate": "config_free", "head": "linear", "post_layers": 2},
]


@pytest.mark.parametrize("cls", [SAGE, GCN, GIN, ResGCN])
@pytest.mark.parametrize("options", MODEL_OPTIONS)
def test_distinct_states_equal_per_config_work_on_a_real_graph(cls, options, monkeypatch):
    data = _valid_graph(96)
    torch.manual_seed(0)
    model = cls("layout", hidden_channels=16, num_layers=3, **options).double().eval()
    rows = []
    distinct = dedup.distinct_tuples

    def spy(ids, *args, **kwargs):
        index, count = distinct(ids, *args, **kwargs)
        if kwargs.get("by_row", True):  # a layer's states (not the layer-0 config rows)
            rows.append((index.numel(), count))
        return index, count

    monkeypatch.setattr(dedup, "distinct_tuples", spy)
    with torch.no_grad():
        fast = model(data)
    # The distinct-state path ran, once per layer, and found far fewer states than rows.
    assert len(rows) == 3 and all(count < total / 4 for total, count in rows)
    with torch.no_grad():
        model.distinct_states = False
        slow = model(data)
    assert fast.shape == slow.shape == (96,)
    assert (fast - slow).abs().max() <= 1e-10 * slow.abs().max()


@pytest.mark.parametrize("cls", [SAGE, GCN, GIN])
def test_distinct_states_give_the_same_gradients(cls):
    data = _valid_graph(24)
    torch.manual_seed(1)
    model = cls("layout", hidden_channels=16, num_layers=2, readout="mean+max").double().train()
    grads = []
    for distinct in (True, False):
        model.distinct_states = distinct
        model.zero_grad()
        scores = model(data)
        (scores * torch.linspace(-1, 1, scores.numel(), dtype=scores.dtype)).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_distinct_states_on_a_batch_with_chunks_and_on_other_layers():
    graphs = [tiny_graph(6, seed=s) for s in range(3)]
    graphs[1].node_config_feat[3] = graphs[1].node_config_feat[0]  # a repeated config
    batch = Batch.from_data_list(graphs)
    for cls in (SAGE, GAT):  # GAT attends over the same distinct states
        torch.manual_seed(0)
        model = cls("layout", hidden_channels=8, num_layers=3).double().eval()
        with torch.no_grad():
            fast = model(batch, config_chunk=4)
            model.distinct_states = False
            slow = model(batch)
        assert fast.shape == (3, 6)
        assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_a_graph_without_configurable_nodes_uses_the_plain_path():
    data = tiny_graph(4)
    data.node_config_ids = torch.zeros(0, dtype=torch.long)
    data.node_config_feat = torch.zeros(4, 0, 18)
    model = SAGE("layout", hidden_channels=8).eval()
    with torch.no_grad():
        scores = model(data)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    # No config reaches any node: every config scores the same.
    assert torch.allclose(scores, scores[0].expand(4))
