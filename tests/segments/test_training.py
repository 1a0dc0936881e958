"""The GST step: stale dropout, rescaling, fill of missing entries, max_age, GSTTrainer."""

import math

import pytest
import torch
from segment_inputs import LAYERS, small, tiny_graph
from torch_geometric.data import Batch

from tpulearn.losses import pairwise_hinge_loss
from tpulearn.segments import (
    GSTTrainer,
    HistoryTable,
    SegmentModel,
    combine,
    gst_step,
    stale_keep_mask,
    trained_multiplier,
)


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


def test_a_graph_without_its_list_is_named(unet3d):
    # gst.step(data) failed on 'tuple' has no attribute 'config_index'.
    _, data = unet3d
    with pytest.raises(TypeError, match=r"takes a list of graphs \(or a Batch\): pass \[data\]"):
        GSTTrainer(SegmentModel(small()).eval(), seed=3).step(data)
