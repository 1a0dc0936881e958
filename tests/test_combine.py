"""The ensemble's score arithmetic against hand-computed values: average ranks with ties,
z-scores with constant members, and what one member gives."""

import math

import numpy as np
import pytest

from tpulearn.combine import average_ranks, combine_scores, zscores


def test_average_ranks_share_the_mean_rank_of_ties():
    assert average_ranks(np.array([0.3, 0.1, 0.2])).tolist() == [3.0, 1.0, 2.0]
    # 1 < 2 = 2 < 5: the tied pair holds ranks 2 and 3, so both get 2.5.
    assert average_ranks(np.array([1, 2, 2, 5])).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks(np.array([7.0, 7.0, 7.0])).tolist() == [2.0, 2.0, 2.0]


def test_average_ranks_match_scipy_rankdata():
    stats = pytest.importorskip("scipy.stats")
    scores = np.random.default_rng(0).integers(0, 20, size=200).astype(np.float32)
    np.testing.assert_array_equal(average_ranks(scores), stats.rankdata(scores))


def test_zscores_by_hand_and_constant_scores_are_zeros():
    s = math.sqrt(1.5)  # [1, 2, 3]: mean 2, population std sqrt(2 / 3)
    np.testing.assert_allclose(zscores(np.array([1.0, 2.0, 3.0])), [-s, 0.0, s])
    # 0.1 three times: a mean that rounds off 0.1 would leave a tiny std, not zeros.
    assert zscores(np.array([0.1, 0.1, 0.1], dtype=np.float32)).tolist() == [0.0, 0.0, 0.0]


def test_rank_combine_is_the_mean_rank():
    a = np.array([0.1, 0.5, 0.3])  # ranks 1 3 2
    b = np.array([10.0, 20.0, 30.0])  # ranks 1 2 3
    assert combine_scores([a, b]).tolist() == [1.0, 2.5, 2.5]
    # Any increasing transform of a member leaves the ranks, hence the ensemble, alone.
    assert combine_scores([np.exp(100 * a), b - 1e6]).tolist() == [1.0, 2.5, 2.5]


def test_zscore_combine_is_the_mean_zscore_and_a_constant_member_counts_zero():
    s = math.sqrt(1.5)
    got = combine_scores([np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])], "zscore")
    np.testing.assert_allclose(got, [-s / 2, 0.0, s / 2])
    # Affine transforms of a member change nothing.
    scaled = combine_scores([np.array([1.0, 2.0, 3.0]) * 50 + 7, np.array([4.0] * 3)], "zscore")
    np.testing.assert_allclose(scaled, got)


def test_a_constant_member_leaves_the_other_members_order():
    a = np.array([0.4, 0.1, 0.9, 0.2])
    for method in ("rank", "zscore"):
        got = combine_scores([a, np.zeros(4)], method)
        assert np.argsort(got, kind="stable").tolist() == [1, 3, 0, 2]


@pytest.mark.parametrize("method", ["rank", "zscore"])
def test_one_member_keeps_its_order_and_ties(method):
    member = np.array([2.0, 1.0, 2.0, 0.0, 5.0])
    got = combine_scores([member], method)
    order = np.argsort(member, kind="stable")
    assert np.argsort(got, kind="stable").tolist() == order.tolist() == [3, 1, 0, 2, 4]
    assert got[0] == got[2]  # the tie stays a tie
    if method == "rank":
        assert got.tolist() == [3.5, 2.0, 3.5, 1.0, 5.0]


def test_the_same_member_twice_is_that_member():
    member = np.random.default_rng(1).standard_normal(50)
    for method in ("rank", "zscore"):
        np.testing.assert_array_equal(
            combine_scores([member, member], method), combine_scores([member], method)
        )


def test_bad_members_are_clear_errors():
    with pytest.raises(ValueError, match="at least one member"):
        combine_scores([])
    with pytest.raises(ValueError, match="ensemble='mean': expected one of rank, zscore"):
        combine_scores([np.ones(3)], "mean")
    with pytest.raises(ValueError, match="member 2 scored 2 configs, member 1 3"):
        combine_scores([np.ones(3), np.ones(2)])
    with pytest.raises(ValueError, match="member 2's scores must be finite"):
        combine_scores([np.ones(2), np.array([1.0, np.nan])])
    with pytest.raises(ValueError, match="member 1's scores must be 1-D"):
        combine_scores([np.ones((2, 2))])
