"""Tests for tpulearn.metrics: hand-computed values, scipy / brute-force agreement, real data."""

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tpulearn
from tpulearn.metrics import (
    COLLECTIONS,
    Evaluator,
    kaggle_score,
    kendall_tau,
    metric_names,
    ordered_pair_accuracy,
    parse_collection,
    top_k_error,
)

SAMPLE = Path(tpulearn.__file__).parent / "data/_sample/tpugraphs"
VALID_FILE = SAMPLE / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


# Brute-force O(c^2) references, straight from the definitions.
def brute_opa(scores, runtime):
    correct = total = 0
    for i in range(len(scores)):
        for j in range(i + 1, len(scores)):
            if runtime[i] != runtime[j]:
                total += 1
                correct += np.sign(scores[i] - scores[j]) == np.sign(runtime[i] - runtime[j])
    return correct / total if total else math.nan


def brute_top_k_error(scores, runtime, k):
    chosen = sorted(range(len(scores)), key=lambda i: (scores[i], i))[:k]
    best = min(runtime)
    return (min(runtime[i] for i in chosen) - best) / best


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# --- hand-computed values -------------------------------------------------------------


def test_kendall_tau_perfect_and_reversed():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([4, 3, 2, 1], [10, 20, 30, 40]) == -1.0


def test_kendall_tau_ties_in_scores():
    # Pairs: (0,1) tied in scores, (0,2) and (1,2) concordant -> 2 / sqrt(2 * 3).
    assert kendall_tau([1.0, 1.0, 2.0], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))


def test_kendall_tau_duplicate_runtimes():
    # (0,1) tied in runtime, the 5 other pairs concordant -> 5 / sqrt(6 * 5).
    assert kendall_tau([1, 2, 3, 4], [5, 5, 6, 7]) == pytest.approx(5 / math.sqrt(30))


def test_kendall_tau_undefined_is_nan_like_scipy():
    assert math.isnan(kendall_tau([1.0], [5]))
    assert math.isnan(kendall_tau([1.0, 1.0, 1.0], [5, 6, 7]))  # constant prediction
    assert math.isnan(kendall_tau([1.0, 2.0, 3.0], [5, 5, 5]))  # constant runtime


def test_opa_matches_tf_ranking_doc_example():
    # tfr.keras.metrics.OPAMetric docstring: y_true [0, 1, 2], y_pred [3, 1, 2] -> 1/3.
    assert ordered_pair_accuracy([3.0, 1.0, 2.0], [0, 1, 2]) == pytest.approx(1 / 3)


def test_opa_tied_predictions_are_wrong_and_tied_runtimes_ignored():
    assert ordered_pair_accuracy([1.0, 1.0, 2.0], [1, 2, 3]) == pytest.approx(2 / 3)
    # Only pair (0,2) is misordered among the 5 pairs with different runtimes.
    assert ordered_pair_accuracy([3.0, 1.0, 2.0, 4.0], [5, 5, 6, 7]) == pytest.approx(4 / 5)
    assert math.isnan(ordered_pair_accuracy([1.0, 2.0], [7, 7]))


def test_top_k_error_hand_values():
    scores = [0.3, 0.1, 0.2, 0.4]
    runtime = [100, 150, 120, 110]  # predicted order: 150, 120, 100, 110
    assert top_k_error(scores, runtime, 1) == pytest.approx(0.5)
    assert top_k_error(scores, runtime, 2) == pytest.approx(0.2)
    assert top_k_error(scores, runtime, 3) == 0.0
    assert top_k_error(scores, runtime, 10) == 0.0  # k > num_configs means all configs


def test_top_k_error_breaks_prediction_ties_by_lowest_index():
    assert top_k_error([0.0, 0.0], [200, 100], 1) == pytest.approx(1.0)
    assert top_k_error([0.0, 0.0], [100, 200], 1) == 0.0


def test_single_config_graph():
    assert top_k_error([0.5], [100], 1) == 0.0
    assert math.isnan(ordered_pair_accuracy([0.5], [100]))


def test_accepts_torch_tensors_including_bfloat16():
    scores = torch.tensor([0.1, 0.2, 0.3], dtype=torch.bfloat16, requires_grad=True)
    runtime = torch.tensor([10, 20, 30], dtype=torch.int64)
    assert kendall_tau(scores, runtime) == 1.0
    assert top_k_error(scores, runtime, 1) == 0.0


# --- input errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "runtime", "message"),
    [
        ([1.0, 2.0], [1, 2, 3], "lengths differ.*2 != 3"),
        ([], [], "scores is empty"),
        ([1.0, math.nan], [1, 2], "scores contains NaN or inf"),
        ([1.0, math.inf], [1, 2], "scores contains NaN or inf"),
        ([[1.0, 2.0]], [1, 2], r"scores must be 1-D \[num_configs\], got shape \(1, 2\)"),
        (["a", "b"], [1, 2], "scores must be numeric"),
    ],
)
def test_metric_input_errors(scores, runtime, message):
    for metric in (kendall_tau, ordered_pair_accuracy):
        with pytest.raises(ValueError, match=message):
            metric(scores, runtime)


def test_top_k_error_rejects_bad_k_and_unlabelled_runtime():
    with pytest.raises(ValueError, match="k must be an integer >= 1, got 0"):
        top_k_error([1.0, 2.0], [1, 2], 0)
    with pytest.raises(ValueError, match="all zero: unlabelled"):
        top_k_error([1.0, 2.0], [0, 0], 1)
    with pytest.raises(ValueError, match="must be positive"):
        top_k_error([1.0, 2.0], [0, 5], 1)


# --- property tests against scipy and brute force --------------------------------------

small_ints = st.lists(st.integers(0, 5), min_size=1, max_size=40)
pairs = st.integers(1, 40).flatmap(
    lambda n: st.tuples(
        st.lists(
            st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6)), min_size=n, max_size=n
        ),
        st.lists(st.integers(1, 6), min_size=n, max_size=n),
    )
)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_kendall_tau_matches_scipy(data):
    scores, runtime = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns where tau is undefined (NaN)
        expected = scipy.stats.kendalltau(scores, runtime).statistic
    assert same(kendall_tau(scores, runtime), expected)


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_opa_matches_brute_force(data):
    scores, runtime = data
    assert same(ordered_pair_accuracy(scores, runtime), brute_opa(scores, runtime))


@settings(max_examples=300, deadline=None)
@given(pairs, st.integers(1, 50))
def test_top_k_error_matches_brute_force(data, k):
    scores, runtime = data
    assert top_k_error(scores, runtime, k) == pytest.approx(brute_top_k_error(scores, runtime, k))


def test_kendall_tau_matches_scipy_on_100k_configs_with_ties():
    rng = np.random.default_rng(0)
    runtime = rng.integers(1, 5_000, 100_000)  # many duplicate runtimes
    scores = np.round(runtime + rng.normal(0, 2_000, runtime.size), -2)  # many tied scores
    assert kendall_tau(scores, runtime) == pytest.approx(
        scipy.stats.kendalltau(scores, runtime).statistic, abs=1e-12
    )


def test_kendall_tau_100k_configs_is_fast():
    rng = np.random.default_rng(1)
    scores, runtime = rng.random(100_000), rng.integers(1, 10**10, 100_000)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        kendall_tau(scores, runtime)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


# --- Evaluator -------------------------------------------------------------------------


def test_parse_collection():
    assert parse_collection("tile:xla") == ("tile", "xla", None)
    assert parse_collection("layout:nlp:random") == ("layout", "nlp", "random")
    with pytest.raises(ValueError, match="unknown collection 'layout:xla'"):
        parse_collection("layout:xla")


def test_evaluator_rejects_unknown_collection():
    with pytest.raises(ValueError, match="unknown collection 'tile:nlp'.*layout:xla:default"):
        Evaluator("tile:nlp")


def test_tile_evaluator_metrics():
    ev = Evaluator("tile:xla")
    ev.add("a", [0.3, 0.1, 0.2, 0.4], [100, 150, 120, 110])  # top1 0.5, top5/top10 0
    ev.add("b", [0.1, 0.2], [100, 200])  # all 0
    result = ev.compute()
    assert set(result) == {"top1_error", "top5_error", "top10_error", "score", "num_graphs"}
    assert result["top1_error"] == pytest.approx(0.25)
    assert result["top5_error"] == 0.0
    assert result["score"] == 1.0
    assert result["num_graphs"] == 2


def test_tile_score_is_one_minus_top5_error():
    ev = Evaluator("tile:xla")
    runtime = [300, 200, 250, 260, 270, 280, 100]  # the best config is predicted last
    ev.add("k", np.arange(7.0), runtime)
    # Best of the top 5 is 200, the true best 100: error 1.0, score 0.
    assert ev.compute()["top5_error"] == pytest.approx(1.0)
    assert ev.compute()["score"] == pytest.approx(0.0)


def test_layout_evaluator_metrics_and_dict_input():
    ev = Evaluator("layout:xla:random")
    ev.add({"up": ([1.0, 2.0, 3.0], [10, 20, 30]), "down": ([3.0, 2.0, 1.0], [10, 20, 30])})
    result = ev.compute()
    assert set(result) == {
        "kendall_tau",
        "top1_error",
        "top10_error",
        "top100_error",
        "opa",
        "score",
        "num_graphs",
        "num_graphs_excluded",
    }
    assert result["kendall_tau"] == 0.0  # mean of 1 and -1
    assert result["opa"] == 0.5
    assert result["score"] == result["kendall_tau"]
    assert result["top1_error"] == pytest.approx(1.0)  # (0 + 2) / 2
    assert result["num_graphs_excluded"] == 0
    assert ev.per_graph()["down"]["kendall_tau"] == -1.0
    assert ev.per_graph()["up"]["num_configs"] == 3
    assert list(ev.per_graph()) == ["up", "down"]


def test_layout_one_config_graph_is_excluded_from_tau_not_from_top_k():
    ev = Evaluator("layout:nlp:default")
    ev.add("g", [1.0, 2.0, 3.0], [10, 20, 30])
    ev.add("single", [0.0], [50])
    result = ev.compute()
    assert result["kendall_tau"] == 1.0
    assert result["opa"] == 1.0
    assert result["num_graphs_excluded"] == 1
    assert result["num_graphs"] == 2
    assert result["top1_error"] == 0.0
    assert math.isnan(ev.per_graph()["single"]["kendall_tau"])


def test_layout_all_graphs_excluded_raises():
    ev = Evaluator("layout:nlp:default")
    ev.add("single", [0.0], [50])
    with pytest.raises(ValueError, match="kendall_tau is undefined for all 1 graphs"):
        ev.compute()


def test_layout_constant_prediction_scores_tau_zero():
    ev = Evaluator("layout:xla:default")
    ev.add("flat", [0.5, 0.5, 0.5], [30, 10, 20])
    result = ev.compute()
    assert result["kendall_tau"] == 0.0
    assert result["opa"] == 0.0  # tied predictions are never correct
    assert result["num_graphs_excluded"] == 0


def test_evaluator_errors_name_the_graph():
    ev = Evaluator("layout:xla:default")
    with pytest.raises(TypeError, match="takes the graph's name first.*got a list as the name"):
        ev.add([1.0, 2.0], [1, 2], "g0")
    with pytest.raises(ValueError, match="graph 'g1': 2 != 3"):
        ev.add("g1", [1.0, 2.0], [1, 2, 3])
    with pytest.raises(ValueError, match="scores for graph 'g2' contains NaN"):
        ev.add("g2", [1.0, math.nan], [1, 2])
    with pytest.raises(ValueError, match="runtime for graph 'g3' is all zero: unlabelled"):
        ev.add("g3", [1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="scores for graph 'g4' is empty"):
        ev.add("g4", [], [])
    with pytest.raises(ValueError, match="no graphs were added to the layout:xla:default"):
        ev.compute()
    ev.add("ok", [1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="graph 'ok' was already added"):
        ev.add("ok", [1.0, 2.0], [1, 2])
    with pytest.raises(ValueError, match="either a mapping of graphs or name, scores and runtime"):
        ev.add({"x": ([1.0], [1])}, [1.0])
    assert len(ev) == 1
    ev.reset()
    assert len(ev) == 0


def test_kaggle_score():
    scores = dict.fromkeys(COLLECTIONS, 0.5) | {"tile:xla": 1.0}
    assert kaggle_score(scores) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"missing \['layout:nlp:random'\]"):
        kaggle_score({c: 0.5 for c in COLLECTIONS if c != "layout:nlp:random"})
    with pytest.raises(ValueError, match=r"unknown \['layout:xla'\]"):
        kaggle_score(dict.fromkeys(COLLECTIONS, 0.5) | {"layout:xla": 0.1})
    with pytest.raises(ValueError, match="non-finite score"):
        kaggle_score(dict.fromkeys(COLLECTIONS, math.nan))


# --- the bundled real validation file -------------------------------------------------


@pytest.fixture(scope="module")
def real_runtime():
    with np.load(VALID_FILE) as npz:
        return npz["config_runtime"]


def test_real_file_has_duplicate_runtimes(real_runtime):
    assert real_runtime.dtype == np.int64
    assert np.unique(real_runtime).size < real_runtime.size  # tau-b ties matter here


def test_real_file_true_runtimes_score_perfectly(real_runtime):
    ev = Evaluator("layout:xla:default")
    ev.add("unet_3d.4x4.bf16", real_runtime, real_runtime)
    result = ev.compute()
    assert result["kendall_tau"] == 1.0
    assert result["opa"] == 1.0
    assert result["top1_error"] == result["top10_error"] == result["top100_error"] == 0.0


def test_real_file_negated_runtimes_score_minus_one(real_runtime):
    scores = -real_runtime.astype(np.float64)
    assert kendall_tau(scores, real_runtime) == -1.0
    assert ordered_pair_accuracy(scores, real_runtime) == 0.0
    assert top_k_error(scores, real_runtime, 1) > 0.0


def test_real_file_official_eval_indices(real_runtime):
    indices = json.loads((SAMPLE / "eval_indices/xla_default.json").read_text())["unet_3d.4x4.bf16"]
    runtime = real_runtime[indices]
    scores = np.random.default_rng(0).random(runtime.size)
    ev = Evaluator("layout:xla:default")
    ev.add("unet_3d.4x4.bf16", scores, runtime)
    assert ev.per_graph()["unet_3d.4x4.bf16"]["num_configs"] == 1000
    assert ev.compute()["kendall_tau"] == pytest.approx(
        scipy.stats.kendalltau(scores, runtime).statistic, abs=1e-12
    )


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_metric_names_are_what_compute_reports(collection):
    # The trainer checks trainer.select_metric against them before a run starts.
    ev = Evaluator(collection)
    ev.add("g", scores=[0.3, 0.1, 0.2], runtime=[3, 1, 2])
    assert metric_names(collection) == tuple(ev.compute())
