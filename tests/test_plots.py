"""tpulearn.plots: the values drawn, the files written, and evaluate.py plots=true."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from tiny_runs import compose_config, tiny_overrides  # noqa: E402

from tpulearn import plots  # noqa: E402
from tpulearn.data import read_layout, sample_root  # noqa: E402
from tpulearn.data.stats import k_hop_nodes, segment_edge_counts  # noqa: E402
from tpulearn.evaluation import evaluate  # noqa: E402
from tpulearn.metrics import kendall_tau  # noqa: E402
from tpulearn.segments import partition  # noqa: E402
from tpulearn.training import GraphScores, evaluate_scores, train  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VALID = "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


def is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0 and path.read_bytes()[:8] == PNG_SIGNATURE


# ------------------------------------------------------------------ ranking curve


def brute_force_random_curve(runtime) -> np.ndarray:
    """Best runtime found after k tries, averaged over every order of the configs."""
    runtime = np.asarray(runtime, dtype=np.float64)
    curves = [
        np.minimum.accumulate(runtime[list(p)]) for p in itertools.permutations(range(runtime.size))
    ]
    return np.mean(curves, axis=0)


def test_random_order_expectation_equals_the_average_over_every_order():
    runtime = np.array([5, 3, 3, 9, 4, 12])  # a tie, and the best not first
    exact = plots.expected_best_of_random(runtime, np.arange(1, 7))
    np.testing.assert_allclose(exact, brute_force_random_curve(runtime), rtol=1e-12)
    assert exact[0] == pytest.approx(runtime.mean()) and exact[-1] == 3.0


def test_random_order_expectation_matches_the_binomial_formula_on_larger_graphs():
    rng = np.random.default_rng(0)
    runtime = rng.integers(100, 200, size=40)  # many ties
    r = np.sort(runtime).astype(np.float64)
    n = r.size
    for k in (1, 2, 7, 39, 40):
        # P(min is the i-th smallest position) = C(n - i, k - 1) / C(n, k), i = 1..n.
        direct = sum(r[i - 1] * math.comb(n - i, k - 1) for i in range(1, n + 1)) / math.comb(n, k)
        assert plots.expected_best_of_random(runtime, [k])[0] == pytest.approx(direct, rel=1e-12)


def test_a_perfect_model_finds_the_best_config_first():
    runtime = np.array([30, 10, 20, 50, 40])
    curve = plots.ranking_curve(runtime * 2.0, runtime)  # any increasing map of the runtime
    np.testing.assert_array_equal(curve.k, np.arange(1, 6))
    np.testing.assert_array_equal(curve.model, np.ones(5))
    np.testing.assert_allclose(curve.random, brute_force_random_curve(runtime) / 10, rtol=1e-12)


def test_model_order_curve_follows_the_scores():
    runtime = np.array([30, 10, 20, 50, 40])
    worst_first = -runtime.astype(float)  # predicts the slowest config fastest
    curve = plots.ranking_curve(worst_first, runtime)
    # Tried in order 50, 40, 30, 20, 10: best found so far over the true best (10).
    np.testing.assert_array_equal(curve.model, [5.0, 4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(
        curve.random, plots.expected_best_of_random(runtime, np.arange(1, 6)) / 10
    )


def test_ranking_curve_on_many_configs_uses_a_geometric_grid():
    rng = np.random.default_rng(1)
    runtime = rng.integers(1_000, 5_000, size=5_000)
    curve = plots.ranking_curve(rng.normal(size=5_000), runtime)
    assert curve.k[0] == 1 and curve.k[-1] == 5_000 and (np.diff(curve.k) > 0).all()
    assert 100 < curve.k.size <= 512
    assert curve.model[-1] == 1.0 and curve.random[-1] == pytest.approx(1.0)
    assert (np.diff(curve.random) <= 1e-12).all()  # more tries never find worse


def test_ranking_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="lengths differ"):
        plots.ranking_curve([1.0, 2.0], [3, 4, 5])
    with pytest.raises(ValueError, match="labelled graph"):
        plots.ranking_curve([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match=r"ks must be .* in \[1, 2\]"):
        plots.ranking_curve([1.0, 2.0], [3, 4], ks=[3])


# ------------------------------------------------------------------ figures


def test_predicted_vs_true_draws_the_points_and_the_tau(tmp_path):
    runtime = np.array([100, 300, 200, 400, 150])
    scores = np.array([0.1, 0.5, 0.2, 0.3, 0.4])
    fig = plots.predicted_vs_true_figure(scores, runtime, title="g0")
    ax = fig.axes[0]
    points = ax.collections[0].get_offsets()
    np.testing.assert_allclose(points[:, 0], runtime / 100)
    np.testing.assert_allclose(points[:, 1], scores)
    assert ax.get_title().startswith(f"g0: Kendall tau {kendall_tau(scores, runtime):.3f}")
    path = plots.save_figure(fig, tmp_path / "a" / "pvt.png")
    assert is_png(path)


def test_save_figure_writes_png_only(tmp_path):
    fig = plots.ranking_curve_figure([1.0, 2.0, 3.0], [1, 2, 3])
    with pytest.raises(ValueError, match="expected a .png path"):
        plots.save_figure(fig, tmp_path / "curve.pdf")


def test_per_graph_bars_show_each_metric_in_evaluator_order():
    per_graph = {
        "g0": {"top1_error": 0.1, "num_configs": 5.0, "kendall_tau": 0.5},
        "g1": {"top1_error": 0.3, "num_configs": 9.0, "kendall_tau": float("nan")},
    }
    fig = plots.per_graph_metrics_figure(per_graph)
    assert [ax.get_title() for ax in fig.axes] == ["top1_error", "kendall_tau"]
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert widths == pytest.approx([0.1, 0.3])
    assert [p.get_width() for p in fig.axes[1].patches] == pytest.approx([0.5, 0.0])
    assert "n/a" in [t.get_text().strip() for t in fig.axes[1].texts]
    with pytest.raises(ValueError, match="not in the per-graph metrics"):
        plots.per_graph_metrics_figure(per_graph, metrics=["opa"])
    with pytest.raises(ValueError, match="per_graph is empty"):
        plots.per_graph_metrics_figure({})


def test_many_graphs_are_drawn_as_sorted_values():
    per_graph = {f"g{i}": {"top5_error": float(i % 7)} for i in range(60)}
    fig = plots.per_graph_metrics_figure(per_graph)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == sorted(float(i % 7) for i in range(60))


def test_opcode_histogram_shows_the_most_frequent_opcodes():
    counts = np.zeros(128, dtype=np.int64)
    counts[[26, 5, 9]] = [40, 100, 1]
    fig = plots.opcode_histogram_figure(counts, top=2)
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [100, 40]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["5", "26 convolution"]
    shares = plots.opcode_histogram_figure({"a": counts, "b": counts * 3}, top=3)
    assert [p.get_height() for p in shares.axes[0].patches[:3]] == pytest.approx(
        [100 / 141, 40 / 141, 1 / 141]
    )
    with pytest.raises(ValueError, match="at least one node"):
        plots.opcode_histogram_figure(np.zeros(128))


def test_runtime_distribution_draws_a_cumulative_curve_per_graph():
    fig = plots.runtime_distribution_figure({"a": [10, 10, 20, 40], "b": [5, 6]})
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    x, y = lines[0].get_data()
    assert y[0] == 0.5 and y[-1] == 1.0  # half the configs tie with the best
    assert x[-2] == pytest.approx(3.0)  # the slowest config: 40 / 10 - 1
    with pytest.raises(ValueError, match="'b' must be positive"):
        plots.runtime_distribution_figure({"a": [1, 2], "b": [0, 3]})


def test_neighbourhood_drawing_keeps_the_nearest_nodes():
    record = read_layout(sample_root() / VALID)
    center = int(record.node_config_ids[4])
    nodes, _ = k_hop_nodes(record.edge_index, center, 3)
    fig = plots.neighbourhood_figure(
        record.edge_index, record.node_opcode, center, 3, record.node_config_ids
    )
    drawn = fig.axes[0].collections[0].get_offsets()
    assert len(drawn) == nodes.size
    small = plots.neighbourhood_figure(record.edge_index, record.node_opcode, center, 3, None, 5)
    assert len(small.axes[0].collections[0].get_offsets()) == 5
    assert f"nearest 5 of {nodes.size}" in small.axes[0].get_title()


def test_partition_drawing_reports_the_cut_edges():
    record = read_layout(sample_root() / VALID)
    graph = (record.num_nodes, torch.from_numpy(record.edge_index.T.copy()))
    part = partition(graph, 500, "contiguous")
    counts = segment_edge_counts(part.assignment, record.edge_index)
    cut = int(np.triu(counts, 1).sum())
    fig = plots.partition_figure(part, record.edge_index)
    left, right = fig.axes
    np.testing.assert_array_equal(left.collections[0].get_offsets()[:, 1], part.assignment)
    assert f"{cut:,} of {len(record.edge_index):,} edges cut" in right.get_title()
    assert fig.get_suptitle() == "contiguous partition"


def test_memory_figure_draws_the_measured_values():
    fig = plots.memory_figure([1000, 2000], {"GST": [500.0, 510.0], "whole graph": [600, 900]})
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[500.0, 510.0], [600, 900]]
    with pytest.raises(ValueError, match="'GST' has 1 values for 2 graph sizes"):
        plots.memory_figure([1000, 2000], {"GST": [500.0]})


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install tpulearn\[notebooks\]"):
        plots.memory_figure([1], {"a": [1.0]})


# ------------------------------------------------------------------ evaluation plots


def test_write_evaluation_plots_writes_one_png_per_graph_and_the_bars(tmp_path):
    rng = np.random.default_rng(0)
    graphs = [
        GraphScores(stem, rng.normal(size=20), rng.integers(10, 99, 20), np.arange(20))
        for stem in ("g/0", "g1")
    ]
    _, per_graph = evaluate_scores("layout:xla:random", graphs)
    paths = plots.write_evaluation_plots("layout:xla:random", graphs, per_graph, tmp_path)
    assert [p.name for p in paths] == [
        "layout_xla_random_pred_vs_true_g_0.png",
        "layout_xla_random_pred_vs_true_g1.png",
        "layout_xla_random_per_graph_metrics.png",
    ]
    assert all(is_png(p) and p.parent == tmp_path for p in paths)
    with pytest.raises(ValueError, match="unknown collection"):
        plots.write_evaluation_plots("layout:xla", graphs, per_graph, tmp_path)
    with pytest.raises(ValueError, match="no graphs to plot"):
        plots.write_evaluation_plots("layout:xla:random", [], per_graph, tmp_path)


def test_evaluate_with_plots_writes_and_reports_the_pngs(tmp_path, capsys):
    ckpt = train(compose_config("config", tiny_overrides(tmp_path / "run")))["checkpoints"]["best"]
    out = tmp_path / "eval"
    result = evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out_dir={out}", "plots=true"]))
    paths = [Path(p) for p in result["plots"]]
    assert [p.name for p in paths] == [
        "layout_xla_default_pred_vs_true_unet_3d.4x4.bf16.png",
        "layout_xla_default_per_graph_metrics.png",
    ]
    assert all(is_png(p) and p.parent == out / "plots" / "valid" for p in paths)
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in paths)

    test_split = [f"ckpt={ckpt}", f"out_dir={out}", "plots=true", "split=test"]
    test = evaluate(compose_config("eval", test_split))
    assert test["plots"] == [] and "submission" in test
    default = evaluate(compose_config("eval", [f"ckpt={ckpt}", f"out_dir={tmp_path / 'e2'}"]))
    assert "plots" not in default and not (tmp_path / "e2" / "plots").exists()
