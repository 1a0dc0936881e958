"""Tests for tpulearn.losses: hand-computed values, numerics, masking, invariances."""

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tpulearn.losses import (
    CombinedLoss,
    ListMLELoss,
    MSELoss,
    PairwiseHingeLoss,
    listmle_loss,
    mse_loss,
    pad_by_graph,
    pairwise_hinge_loss,
)


def _lse(*xs):
    return math.log(sum(math.exp(x) for x in xs))


def _random_batch(seed=0, num_graphs=3, num_configs=7):
    """Scores and tie-free int64 runtimes spanning 1e3..1e12 ns."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(num_graphs, num_configs, generator=g, dtype=torch.float64)
    runtime = torch.stack([torch.randperm(num_configs, generator=g) for _ in range(num_graphs)])
    runtime = (10.0 ** (3 + 9 * runtime / (num_configs - 1))).long()
    return scores, runtime


ALL_LOSSES = [
    ListMLELoss(temperature=3.0),
    PairwiseHingeLoss(margin=0.5),
    MSELoss("log"),
    MSELoss("zscore"),
]


# ---- ListMLE values ---------------------------------------------------------


def test_listmle_two_configs_by_hand():
    # Fastest config (runtime 5) first; logits = -scores.
    loss = listmle_loss(torch.tensor([[0.3, -0.4]]), torch.tensor([[9, 5]]))
    expected = -(0.4 - _lse(0.4, -0.3))  # second factor is log(1) = 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_listmle_three_configs_by_hand_with_temperature():
    scores = torch.tensor([[0.5, 1.0, -0.2]])
    runtime = torch.tensor([[20, 30, 10]])
    for temperature in (1.0, 10.0):
        # True order: config 2, 0, 1.
        a, b, c = (0.2 / temperature, -0.5 / temperature, -1.0 / temperature)
        expected = (_lse(a, b, c) - a) + (_lse(b, c) - b)
        loss = listmle_loss(scores, runtime, temperature=temperature)
        assert loss.item() == pytest.approx(expected, rel=1e-6)
        assert ListMLELoss(temperature)(scores, runtime).item() == pytest.approx(expected, rel=1e-6)


def test_listmle_ties_use_breslow_and_ignore_order():
    # Two tied configs both compete against the whole tie group: 2 * lse - sum.
    scores = torch.tensor([[0.3, -0.1]])
    loss = listmle_loss(scores, torch.tensor([[7, 7]]))
    assert loss.item() == pytest.approx(2 * _lse(-0.3, 0.1) - (-0.3 + 0.1), rel=1e-6)
    # Tie in the middle: configs 1 and 2 tie after config 0.
    scores = torch.tensor([[0.0, 0.2, 0.5, 1.0]])
    runtime = torch.tensor([[1, 2, 2, 3]])
    l0, l1, l2, l3 = 0.0, -0.2, -0.5, -1.0
    expected = (_lse(l0, l1, l2, l3) - l0) + 2 * _lse(l1, l2, l3) - l1 - l2 + 0.0
    assert listmle_loss(scores, runtime).item() == pytest.approx(expected, rel=1e-6)
    perm = torch.tensor([2, 3, 0, 1])
    permuted = listmle_loss(scores[:, perm], runtime[:, perm])
    assert permuted.item() == pytest.approx(expected, rel=1e-6)


def test_listmle_perfect_scorer_beats_reversed():
    runtime = torch.tensor([[10, 20, 30, 40, 50]])
    perfect = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])  # lower score = faster
    assert listmle_loss(perfect, runtime) < listmle_loss(perfect.flip(-1), runtime)


def test_listmle_finite_on_extreme_values_and_ties():
    runtime = torch.logspace(3, 12, 64, dtype=torch.float64).long().repeat(4, 1)
    runtime[1] = 1000  # all tied
    runtime[2, ::2] = runtime[2, 1::2]  # pairs of ties
    scores = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)) * 1e4
    scores.requires_grad_()
    for temperature in (0.1, 1.0, 10.0):
        loss = listmle_loss(scores, runtime, temperature=temperature)
        (grad,) = torch.autograd.grad(loss, scores)
        assert torch.isfinite(loss) and loss > 0
        assert torch.isfinite(grad).all()
    # Float runtimes spanning the same range, in half precision scores (AMP).
    loss = listmle_loss(scores.detach().half(), runtime.double())
    assert torch.isfinite(loss) and loss.dtype == torch.float32


def test_listmle_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be positive"):
        ListMLELoss(temperature=0.0)


# ---- Pairwise hinge -----------------------------------------------------------


def test_hinge_three_configs_by_hand():
    scores = torch.tensor([[0.0, 0.05, 1.0]])
    runtime = torch.tensor([[1, 2, 3]])
    # Pairs (0,1): 0.1 - 0.05 = 0.05; (0,2) and (1,2) are ordered with margin.
    loss = pairwise_hinge_loss(scores, runtime, margin=0.1)
    assert loss.item() == pytest.approx(0.05 / 3, rel=1e-6)
    # A reversed pair pays margin plus the gap.
    loss = PairwiseHingeLoss(margin=0.1)(torch.tensor([[0.3, 0.0]]), torch.tensor([[1, 2]]))
    assert loss.item() == pytest.approx(0.4, rel=1e-6)


def test_hinge_zero_iff_every_pair_ordered_with_margin():
    runtime = torch.tensor([[50, 10, 30, 20]])
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0]])  # gaps of exactly 1.0
    assert pairwise_hinge_loss(scores, runtime, margin=1.0).item() == 0.0
    assert pairwise_hinge_loss(scores, runtime, margin=1.01).item() > 0.0
    swapped = torch.tensor([[4.0, 2.0, 3.0, 1.0]])
    assert pairwise_hinge_loss(swapped, runtime, margin=0.1).item() > 0.0


def test_hinge_excludes_equal_runtime_pairs():
    # Configs 1 and 2 tie: only pairs (0,1) and (0,2), both ordered -> zero.
    scores = torch.tensor([[0.0, 5.0, 1.0]])
    assert pairwise_hinge_loss(scores, torch.tensor([[1, 2, 2]]), margin=0.5).item() == 0.0
    # A graph whose runtimes all tie has no pairs and is left out of the mean.
    scores = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    runtime = torch.tensor([[1, 2], [3, 3]])
    assert pairwise_hinge_loss(scores, runtime, margin=0.5).item() == pytest.approx(0.5)


# ---- MSE --------------------------------------------------------------------------


def test_mse_targets_by_hand():
    scores = torch.tensor([[1.0, 2.0]])
    runtime = torch.tensor([[100, 400]])
    log_expected = ((1 - math.log(100)) ** 2 + (2 - math.log(400)) ** 2) / 2
    assert mse_loss(scores, runtime).item() == pytest.approx(log_expected, rel=1e-6)
    # normalized without runtime_normalizer: runtime / best runtime = [1, 4].
    assert mse_loss(scores, runtime, target="normalized").item() == pytest.approx(2.0)
    # normalized with runtime_normalizer: runtime / runtime_normalizer = [0.5, 2].
    runtime_normalizer = torch.tensor([[200, 200]])
    value = MSELoss("normalized")(scores, runtime, runtime_normalizer=runtime_normalizer)
    assert value.item() == pytest.approx((0.5**2 + 0.0**2) / 2)
    with pytest.raises(ValueError, match="target must be one of"):
        MSELoss("linear")


def test_mse_zscore_by_hand():
    # log runtimes ln 100 + (0, ln 4, 2 ln 4): centred (-ln 4, 0, ln 4), population std
    # ln 4 * sqrt(2/3), so the target is (-sqrt(3/2), 0, sqrt(3/2)); the scores are
    # centred per graph too: (-4/3, -1/3, 5/3).
    scores = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    runtime = torch.tensor([[100, 400, 1600]])
    z = math.sqrt(1.5)
    expected = ((-4 / 3 + z) ** 2 + (1 / 3) ** 2 + (5 / 3 - z) ** 2) / 3
    assert mse_loss(scores, runtime, target="zscore").item() == pytest.approx(expected)


def test_mse_zscore_ignores_each_graphs_offset_and_runtime_scale():
    scores, runtime = _random_batch(seed=3)
    runtime = runtime + 10
    value = mse_loss(scores, runtime, target="zscore")
    shifted = scores + torch.tensor([[5.0], [-2.0], [0.5]], dtype=scores.dtype)
    scaled = runtime * torch.tensor([[3], [1000], [7]])
    assert mse_loss(shifted, runtime, target="zscore").item() == pytest.approx(value.item())
    assert mse_loss(scores, scaled, target="zscore").item() == pytest.approx(value.item())
    # Differently scaled scores are a different fit: the magnitudes are learnt.
    assert mse_loss(2 * scores, runtime, target="zscore").item() != pytest.approx(value.item())


def test_mse_zscore_of_tied_runtimes_is_the_scores_spread():
    # No spread to standardise: the target is 0, the loss the scores' variance.
    scores = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    value = mse_loss(scores, torch.tensor([[50, 50]]), target="zscore")
    assert value.item() == pytest.approx(1.0)


# ---- Shared behaviour -----------------------------------------------------------


@pytest.mark.parametrize("loss_fn", ALL_LOSSES, ids=lambda m: type(m).__name__)
def test_padding_garbage_leaves_loss_and_grad_unchanged(loss_fn):
    scores, runtime = _random_batch()
    scores.requires_grad_()
    clean = loss_fn(scores, runtime)
    (clean_grad,) = torch.autograd.grad(clean, scores)

    pad = 4
    garbage = torch.tensor([float("nan"), float("inf"), -1e30, 7.0]).repeat(3, 1)
    padded_scores = torch.cat([scores.detach(), garbage.double()], dim=1).requires_grad_()
    padded_runtime = torch.cat([runtime, torch.tensor([[0, -5, 1, 2**62]]).repeat(3, 1)], 1)
    mask = torch.ones_like(padded_runtime, dtype=torch.bool)
    mask[:, -pad:] = False
    padded = loss_fn(padded_scores, padded_runtime, mask)
    (padded_grad,) = torch.autograd.grad(padded, padded_scores)

    assert padded.item() == pytest.approx(clean.item(), rel=1e-12)
    assert torch.allclose(padded_grad[:, :-pad], clean_grad)
    assert (padded_grad[:, -pad:] == 0).all()


@pytest.mark.parametrize("loss_fn", ALL_LOSSES, ids=lambda m: type(m).__name__)
def test_permuting_configs_with_runtimes_leaves_loss_unchanged(loss_fn):
    scores, runtime = _random_batch(seed=3)
    perm = torch.randperm(scores.size(1), generator=torch.Generator().manual_seed(4))
    assert loss_fn(scores[:, perm], runtime[:, perm]).item() == pytest.approx(
        loss_fn(scores, runtime).item(), rel=1e-12
    )


@pytest.mark.parametrize("loss_fn", ALL_LOSSES, ids=lambda m: type(m).__name__)
def test_graphs_with_fewer_than_two_configs_are_ignored(loss_fn):
    scores, runtime = _random_batch(seed=5, num_graphs=1)
    alone = loss_fn(scores, runtime)
    # Add a graph with one real config and an empty graph.
    batch_scores = torch.cat([scores, torch.randn(2, scores.size(1), dtype=scores.dtype)])
    batch_runtime = torch.cat([runtime, torch.full((2, scores.size(1)), 1000)])
    mask = torch.ones_like(batch_runtime, dtype=torch.bool)
    mask[1, 1:] = False
    mask[2] = False
    assert loss_fn(batch_scores, batch_runtime, mask).item() == pytest.approx(alone.item())


@pytest.mark.parametrize("loss_fn", ALL_LOSSES, ids=lambda m: type(m).__name__)
def test_no_qualifying_graph_gives_connected_zero(loss_fn):
    scores = torch.tensor([[1.0, float("nan")], [2.0, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, False], [False, False]])
    loss = loss_fn(scores, torch.tensor([[5, 6], [7, 8]]), mask)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert (scores.grad == 0).all()


def test_one_dimensional_input_is_one_graph():
    scores = torch.tensor([0.5, 1.0, -0.2])
    runtime = torch.tensor([20, 30, 10])
    assert listmle_loss(scores, runtime).item() == pytest.approx(
        listmle_loss(scores[None], runtime[None]).item()
    )


def test_shape_and_mask_errors_are_clear():
    with pytest.raises(ValueError, match=r"runtime has shape \(2, 3\), scores \(2, 4\)"):
        listmle_loss(torch.zeros(2, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="mask must be bool"):
        mse_loss(torch.zeros(2, 4), torch.ones(2, 4), torch.ones(2, 4))


def test_normalizer_changes_the_ranked_quantity():
    # Raw runtimes say config 0 is faster; normalized ones say config 1 is.
    scores = torch.tensor([[0.0, 1.0]])
    runtime = torch.tensor([[100, 150]])
    runtime_normalizer = torch.tensor([[50, 100]])
    assert pairwise_hinge_loss(scores, runtime, margin=0.5).item() == 0.0
    assert (
        pairwise_hinge_loss(
            scores, runtime, runtime_normalizer=runtime_normalizer, margin=0.5
        ).item()
        == 1.5
    )


# ---- CombinedLoss ---------------------------------------------------------------


def test_combined_equals_weighted_sum_and_logs_terms():
    scores, runtime = _random_batch(seed=6)
    listmle, mse = ListMLELoss(temperature=10), MSELoss()
    combined = CombinedLoss([{"loss": listmle, "weight": 1.0}, {"loss": mse, "weight": 0.02}])
    total = combined(scores, runtime)
    expected = listmle(scores, runtime) + 0.02 * mse(scores, runtime)
    assert total.item() == pytest.approx(expected.item(), rel=1e-12)
    assert set(combined.last_terms) == {"ListMLELoss", "MSELoss"}
    assert combined.last_terms["MSELoss"].item() == pytest.approx(mse(scores, runtime).item())
    assert combined.last_terms["MSELoss"].grad_fn is None


def test_combined_names_and_validation():
    combined = CombinedLoss(
        [{"loss": MSELoss()}, {"loss": MSELoss("normalized")}, {"loss": MSELoss(), "name": "aux"}]
    )
    assert combined.names == ["MSELoss", "MSELoss_1", "aux"]
    assert combined.weights == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="must have the key loss, and may have weight"):
        CombinedLoss([{"loss": MSELoss(), "wieght": 2.0}])
    with pytest.raises(TypeError, match="loss must be an nn.Module"):
        CombinedLoss([{"loss": "ListMLE", "weight": 1.0}])
    with pytest.raises(ValueError, match="at least one term"):
        CombinedLoss([])


def test_combined_from_hydra_config():
    cfg = OmegaConf.create(
        {
            "_target_": "tpulearn.losses.CombinedLoss",
            "terms": [
                {
                    "weight": 1.0,
                    "loss": {"_target_": "tpulearn.losses.ListMLELoss", "temperature": 10},
                },
                {"weight": 0.02, "loss": {"_target_": "tpulearn.losses.MSELoss"}},
            ],
        }
    )
    combined = instantiate(cfg)
    assert isinstance(combined, CombinedLoss)
    assert isinstance(combined.losses[0], ListMLELoss) and combined.losses[0].temperature == 10
    assert isinstance(combined.losses[1], MSELoss) and combined.weights == [1.0, 0.02]
    scores, runtime = _random_batch(seed=7)
    expected = listmle_loss(scores, runtime, temperature=10) + 0.02 * mse_loss(scores, runtime)
    assert combined(scores, runtime).item() == pytest.approx(expected.item(), rel=1e-12)


def test_the_listmle_hinge_config_is_listmle_plus_30_hinges():
    from tiny_runs import compose_config

    combined = instantiate(compose_config(overrides=["loss=listmle_hinge"]).loss)
    scores, runtime = _random_batch(seed=8)
    expected = listmle_loss(scores, runtime, temperature=1.0) + 30.0 * pairwise_hinge_loss(
        scores, runtime, margin=0.1
    )
    assert combined(scores, runtime).item() == pytest.approx(expected.item(), rel=1e-12)
    assert combined.names == ["ListMLELoss", "PairwiseHingeLoss"]


# ---- pad_by_graph ---------------------------------------------------------------


def test_pad_by_graph_from_counts_and_batch():
    runtime = torch.tensor([10, 20, 30, 40, 50, 60], dtype=torch.long)
    dense, mask = pad_by_graph(runtime, counts=[2, 0, 4])
    assert dense.dtype == torch.long
    assert dense.tolist() == [[10, 20, 0, 0], [0, 0, 0, 0], [30, 40, 50, 60]]
    assert mask.tolist() == [[True, True, False, False], [False] * 4, [True] * 4]
    batch = torch.tensor([0, 0, 2, 2, 2, 2])
    dense_b, mask_b = pad_by_graph(runtime, batch, batch_size=3)
    assert torch.equal(dense_b, dense) and torch.equal(mask_b, mask)


def test_pad_by_graph_feeds_the_losses():
    flat_scores = torch.tensor([0.3, -0.4, 0.5, 1.0, -0.2])
    flat_runtime = torch.tensor([9, 5, 20, 30, 10])
    scores, mask = pad_by_graph(flat_scores, counts=[2, 3], fill_value=float("nan"))
    runtime, _ = pad_by_graph(flat_runtime, counts=[2, 3])
    expected = (
        listmle_loss(flat_scores[:2], flat_runtime[:2])
        + listmle_loss(flat_scores[2:], flat_runtime[2:])
    ) / 2
    assert listmle_loss(scores, runtime, mask).item() == pytest.approx(expected.item(), rel=1e-6)


def test_pad_by_graph_errors():
    with pytest.raises(ValueError, match="exactly one of `batch` or `counts`"):
        pad_by_graph(torch.zeros(3))
    with pytest.raises(ValueError, match="3 values but 4 graph indices"):
        pad_by_graph(torch.zeros(3), counts=[2, 2])


def test_a_negative_margin_is_refused_and_zero_is_the_plain_order():
    # A negative margin leaves pairs ordered the wrong way by less than it unpenalised.
    with pytest.raises(ValueError, match="margin must be a number >= 0, got -0.5"):
        PairwiseHingeLoss(margin=-0.5)
    scores, runtime = torch.tensor([[0.0, 1.0]]), torch.tensor([[1, 2]])
    assert PairwiseHingeLoss(margin=0)(scores, runtime).item() == 0.0
    assert PairwiseHingeLoss(margin=0)(-scores, runtime).item() == 1.0


def test_combined_loss_weights_must_be_non_negative_and_not_all_zero():
    hinge, mse = PairwiseHingeLoss(), MSELoss()
    with pytest.raises(ValueError, match="terms.1.weight must be a number >= 0, got -1"):
        CombinedLoss([{"loss": hinge}, {"loss": mse, "weight": -1}])
    with pytest.raises(ValueError, match="needs a term of positive weight; every weight is 0"):
        CombinedLoss([{"loss": hinge, "weight": 0}, {"loss": mse, "weight": 0.0}])
    # A zero weight beside a positive one switches a term off: allowed.
    assert CombinedLoss([{"loss": hinge, "weight": 0}, {"loss": mse}]).weights == [0.0, 1.0]
