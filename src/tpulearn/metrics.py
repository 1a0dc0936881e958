"""Ranking metrics for TpuGraphs and the per-collection Evaluator (pure numpy).

Convention used everywhere in tpulearn: **a lower score means the configuration
is predicted to be faster** (a score is a runtime estimate; only its order matters).

Metrics follow the official TpuGraphs evaluation (arXiv 2308.13490, the
``tpu_graphs`` repository's ``layout_evaluate.py`` and ``tiles/metrics.py``):

- ``kendall_tau``: tau-b with ties between scores and true runtimes, the value
  of ``scipy.stats.kendalltau``, in O(c log c).
- ``top_k_error``: slowdown of the best of the k best-predicted configurations
  relative to the true best.
- ``ordered_pair_accuracy`` (OPA): the official trainers' checkpoint metric.

Inputs may be numpy arrays, sequences or torch tensors (converted on the CPU).

One file over 300 lines on purpose: the metrics and the Evaluator share the input checks
and the O(c log c) pair counting, which are the subtle part and read best in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tpulearn.data.schema import COLLECTIONS, parse_collection

# The cut-offs of the official top-K errors.
TILE_KS = (1, 5, 10)
LAYOUT_KS = (1, 10, 100)


def _as_array(values: Any, what: str, graph: str | None) -> np.ndarray:
    """Converts a numpy array, sequence or torch tensor to a checked 1-D array."""
    where = f" for graph {graph!r}" if graph is not None else ""
    if hasattr(values, "detach"):  # torch tensor, without importing torch here
        tensor = values.detach().cpu()
        # bfloat16/half have no numpy dtype; float64 keeps every distinct value distinct.
        values = (tensor.double() if tensor.is_floating_point() else tensor).numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what}{where} must be 1-D [num_configs], got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what}{where} is empty")
    if array.dtype.kind not in "iuf":
        raise ValueError(f"{what}{where} must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{what}{where} contains NaN or inf")
    return array


def _check_inputs(scores: Any, runtime: Any, graph: str | None) -> tuple[np.ndarray, np.ndarray]:
    scores = _as_array(scores, "scores", graph)
    runtime = _as_array(runtime, "runtime", graph)
    if scores.shape != runtime.shape:
        where = f" for graph {graph!r}" if graph is not None else ""
        raise ValueError(
            f"scores and runtime lengths differ{where}: {scores.shape[0]} != {runtime.shape[0]}"
        )
    return scores, runtime


def _tie_pairs(sorted_values: np.ndarray) -> int:
    """Number of tied pairs, sum of t (t - 1) / 2 over runs of equal sorted values."""
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1], True])
    return _pairs_within(np.diff(starts))


def _pairs_within(run_lengths: np.ndarray) -> int:
    return int((run_lengths * (run_lengths - 1) // 2).sum())


def _count_inversions(seq: np.ndarray) -> int:
    """Counts pairs i < j with seq[i] > seq[j] for non-negative integer ``seq``.

    A vectorised binary MSD radix sort: at bit b (high to low) the sequence is
    stably grouped by the bits above b; inside a group, each element whose bit b
    is 0 is inverted with every earlier element whose bit b is 1. Then the group
    is stably partitioned on bit b. O(c log max(seq)) with O(c) numpy work per bit.
    """
    n = seq.size
    if n < 2:
        return 0
    seq = seq.astype(np.int64, copy=True)
    position = np.arange(n)
    total = 0
    for b in range(int(seq.max()).bit_length() - 1, -1, -1):
        prefix = seq >> (b + 1)
        bit = (seq >> b) & 1
        new_group = np.r_[True, prefix[1:] != prefix[:-1]]
        starts = np.flatnonzero(new_group)
        ends = np.r_[starts[1:], n]
        group = np.cumsum(new_group) - 1
        ones_before = np.cumsum(bit) - bit
        ones_at_start = ones_before[starts]
        ones_before_in_group = ones_before - ones_at_start[group]
        total += int(ones_before_in_group[bit == 0].sum())
        ones_in_group = (ones_before[ends - 1] + bit[ends - 1] - ones_at_start)[group]
        zeros_in_group = (ends - starts)[group] - ones_in_group
        start = starts[group]
        zeros_before_in_group = position - start - ones_before_in_group
        dest = np.where(
            bit == 0, start + zeros_before_in_group, start + zeros_in_group + ones_before_in_group
        )
        partitioned = np.empty_like(seq)
        partitioned[dest] = seq
        seq = partitioned
    return total


def _pair_counts(scores: np.ndarray, runtime: np.ndarray) -> tuple[int, int, int, int, int]:
    """Pair statistics behind tau-b and OPA (Knight's algorithm, as in scipy).

    Returns:
        ``(total, score_ties, runtime_ties, joint_ties, discordant)`` pair counts,
        where discordant pairs are strictly ordered oppositely by both inputs.
    """
    _, score_rank = np.unique(scores, return_inverse=True)
    _, runtime_rank = np.unique(runtime, return_inverse=True)
    score_rank, runtime_rank = score_rank.ravel(), runtime_rank.ravel()
    # Sorting by (scores, runtime) puts score-tied runs in ascending runtime, so
    # every inversion of the runtime sequence is a strictly discordant pair.
    order = np.lexsort((runtime_rank, score_rank))
    score_sorted, runtime_seq = score_rank[order], runtime_rank[order]
    joint = score_sorted * (int(runtime_rank.max()) + 1) + runtime_seq
    n = scores.size
    return (
        n * (n - 1) // 2,
        _pairs_within(np.bincount(score_rank)),
        _pairs_within(np.bincount(runtime_rank)),
        _tie_pairs(joint),
        _count_inversions(runtime_seq),
    )


def kendall_tau(scores: Any, runtime: Any) -> float:
    """Kendall tau-b between predicted scores and true runtimes of one graph.

    Equals ``scipy.stats.kendalltau(scores, runtime).statistic`` (tau-b, ties
    corrected) in O(c log c). Lower score = predicted faster, so a perfect
    model scores 1.

    Args:
        scores: ``[num_configs]`` predicted scores.
        runtime: ``[num_configs]`` true runtimes.

    Returns:
        tau in [-1, 1], or NaN where tau-b is undefined: fewer than two configs,
        or all scores (or all runtimes) equal, exactly as scipy does.
        :class:`Evaluator` never averages such a NaN (see its docstring).

    Raises:
        ValueError: on empty, non 1-D, mismatched or non-finite input.
    """
    scores, runtime = _check_inputs(scores, runtime, None)
    return _tau_from_counts(*_pair_counts(scores, runtime))


def _tau_from_counts(total: int, score_ties: int, runtime_ties: int, joint: int, dis: int) -> float:
    if total in (score_ties, runtime_ties):
        return math.nan
    concordant_minus_discordant = total - score_ties - runtime_ties + joint - 2 * dis
    # One sqrt of the exact integer product (scipy divides by two sqrts): a
    # perfect ranking, ties included, then gives exactly 1.0 rather than 1 - 1e-16.
    tau = concordant_minus_discordant / math.sqrt((total - score_ties) * (total - runtime_ties))
    return min(1.0, max(-1.0, tau))


def _opa_from_counts(total: int, score_ties: int, runtime_ties: int, joint: int, dis: int) -> float:
    if total == runtime_ties:
        return math.nan
    concordant = total - score_ties - runtime_ties + joint - dis
    return concordant / (total - runtime_ties)


def ordered_pair_accuracy(scores: Any, runtime: Any) -> float:
    """Fraction of config pairs with different runtimes that ``scores`` order correctly.

    Follows the official trainers (``tfr.keras.metrics.OPAMetric``): a pair
    (i, j) with ``runtime[i] != runtime[j]`` is correct when
    ``sign(scores[i] - scores[j]) == sign(runtime[i] - runtime[j])``. Pairs tied in
    ``scores`` are therefore *incorrect* (no half credit); pairs tied in runtime
    are ignored. Lower score = predicted faster. O(c log c).

    Args:
        scores: ``[num_configs]`` predicted scores.
        runtime: ``[num_configs]`` true runtimes.

    Returns:
        OPA in [0, 1], or NaN when no pair has different runtimes (one config,
        or all runtimes equal).

    Raises:
        ValueError: on empty, non 1-D, mismatched or non-finite input.
    """
    scores, runtime = _check_inputs(scores, runtime, None)
    return _opa_from_counts(*_pair_counts(scores, runtime))


def top_k_error(scores: Any, runtime: Any, k: int) -> float:
    """Slowdown of the best of the ``k`` best-predicted configs over the true best.

    ``(min(runtime[k configs with the lowest scores]) - min(runtime)) / min(runtime)``.
    Lower score = predicted faster. Ties in ``scores`` are broken by a stable
    argsort: the lower config index is taken first. ``k`` larger than the number
    of configs means all configs (error 0).

    Args:
        scores: ``[num_configs]`` predicted scores.
        runtime: ``[num_configs]`` true runtimes, all positive.
        k: number of candidates, at least 1.

    Returns:
        The error, >= 0 (0 when the true best is among the candidates).

    Raises:
        ValueError: on bad input, ``k < 1``, or a runtime <= 0.
    """
    scores, runtime = _check_inputs(scores, runtime, None)
    _check_positive(runtime, None)
    return _top_k_error(scores, runtime, [k])[0]


def _check_positive(runtime: np.ndarray, graph: str | None) -> None:
    where = f" for graph {graph!r}" if graph is not None else ""
    if not runtime.any():
        raise ValueError(f"runtime{where} is all zero: unlabelled (test) data cannot be scored")
    if runtime.min() <= 0:
        raise ValueError(f"runtime{where} must be positive, got min {runtime.min()}")


def _top_k_error(scores: np.ndarray, runtime: np.ndarray, ks: list[int]) -> list[float]:
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
    order = np.argsort(scores, kind="stable")
    # Running minimum of runtimes in predicted order: entry k-1 is the best of the top k.
    best_of_top = np.minimum.accumulate(runtime[order])
    best = float(best_of_top[-1])
    return [(float(best_of_top[min(k, scores.size) - 1]) - best) / best for k in ks]


class Evaluator:
    """Accumulates per-graph metrics for one collection and averages them.

    Tile (``"tile:xla"``): ``top1_error``, ``top5_error``, ``top10_error`` and
    ``score = 1 - top5_error`` (the Kaggle tile score). Layout: ``kendall_tau``,
    ``top1_error``, ``top10_error``, ``top100_error``, ``opa`` and
    ``score = kendall_tau``. Every metric is a plain mean over graphs, as the
    official evaluation does; ``compute()`` also reports ``num_graphs``.

    Scores follow the library convention: lower score = predicted faster.
    Runtimes are used as given; for tile, ranking by ``config_runtime`` equals
    ranking by the official ``config_runtime / config_runtime_normalizers``
    whenever the normalizer is constant within the kernel (it is the default
    config's runtime), and either array may be passed.

    Undefined values never enter an average:

    - A layout graph whose runtimes are all equal (in particular a graph with
      one config) has no defined tau or OPA: it is left out of the
      ``kendall_tau`` and ``opa`` means and counted in ``num_graphs_excluded``;
      its top-K errors (0) are still averaged. If every graph is excluded,
      ``compute()`` raises.
    - A constant prediction on a graph with different runtimes gets tau 0 (scipy
      gives NaN): it carries no ranking information, and scoring it 0 keeps a
      collapsed model visible instead of silently dropping its graphs.

    Example:
        >>> ev = Evaluator("layout:xla:default")
        >>> ev.add("g0", scores=[0.1, 0.5, 0.3], runtime=[10, 30, 20])
        >>> ev.compute()["kendall_tau"]
        1.0

    Args:
        collection: one of :data:`COLLECTIONS`.
    """

    def __init__(self, collection: str) -> None:
        self.task, self.source, self.search = parse_collection(collection)
        self.collection = collection
        self.ks = TILE_KS if self.task == "tile" else LAYOUT_KS
        self._graphs: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    def reset(self) -> None:
        """Forgets every graph added so far."""
        self._graphs.clear()

    def add(
        self,
        name: str | Mapping[str, tuple[Any, Any]],
        scores: Any = None,
        runtime: Any = None,
    ) -> None:
        """Scores one graph, or several given as ``{name: (scores, runtime)}``.

        Args:
            name: graph name (e.g. the npz file stem), unique within the evaluator;
                or a mapping from names to ``(scores, runtime)`` pairs.
            scores: ``[num_configs]`` predicted scores, lower = faster.
            runtime: ``[num_configs]`` true runtimes (int64 ns or normalised floats).

        Raises:
            ValueError: naming the graph, on a repeated name, mismatched lengths,
                empty input, NaN/inf, or unlabelled (all-zero) / non-positive runtimes.
        """
        if isinstance(name, Mapping):
            if scores is not None or runtime is not None:
                raise ValueError("pass either a mapping of graphs or name, scores and runtime")
            for graph, (graph_scores, graph_runtime) in name.items():
                self.add(graph, graph_scores, graph_runtime)
            return
        if not isinstance(name, str):
            raise TypeError(
                f"Evaluator.add takes the graph's name first, then scores and runtime: got a "
                f"{type(name).__name__} as the name"
            )
        if name in self._graphs:
            raise ValueError(f"graph {name!r} was already added to this evaluator")
        scores_arr, runtime_arr = _check_inputs(scores, runtime, name)
        _check_positive(runtime_arr, name)
        self._graphs[name] = self._score_graph(scores_arr, runtime_arr)

    def _score_graph(self, scores: np.ndarray, runtime: np.ndarray) -> dict[str, float]:
        errors = _top_k_error(scores, runtime, list(self.ks))
        metrics = {f"top{k}_error": e for k, e in zip(self.ks, errors, strict=True)}
        metrics["num_configs"] = float(scores.size)
        if self.task == "layout":
            counts = _pair_counts(scores, runtime)
            tau = _tau_from_counts(*counts)
            if math.isnan(tau) and not math.isnan(_opa_from_counts(*counts)):
                tau = 0.0  # constant prediction, see the class docstring
            metrics["kendall_tau"] = tau
            metrics["opa"] = _opa_from_counts(*counts)
        return metrics

    def per_graph(self) -> dict[str, dict[str, float]]:
        """Per-graph metrics in insertion order, for plots and tables.

        Returns:
            ``{graph name: {metric: value}}`` with the top-K errors, ``num_configs``
            and, for layout, ``kendall_tau`` and ``opa`` (NaN for excluded graphs).
        """
        return {name: dict(metrics) for name, metrics in self._graphs.items()}

    def compute(self) -> dict[str, float]:
        """Averages the metrics over every graph added.

        Returns:
            Tile: ``top1_error``, ``top5_error``, ``top10_error``, ``score``,
            ``num_graphs``. Layout: ``kendall_tau``, ``top1_error``,
            ``top10_error``, ``top100_error``, ``opa``, ``score``, ``num_graphs``,
            ``num_graphs_excluded``.

        Raises:
            ValueError: if no graph was added, or no layout graph has a defined tau.
        """
        if not self._graphs:
            raise ValueError(f"no graphs were added to the {self.collection} evaluator")
        graphs = list(self._graphs.values())
        result = {f"top{k}_error": _mean(g[f"top{k}_error"] for g in graphs) for k in self.ks}
        if self.task == "tile":
            result["score"] = 1.0 - result["top5_error"]
        else:
            defined = [g for g in graphs if not math.isnan(g["kendall_tau"])]
            if not defined:
                raise ValueError(
                    f"kendall_tau is undefined for all {len(graphs)} graphs of "
                    f"{self.collection}: every graph has equal runtimes for all configs"
                )
            result["kendall_tau"] = _mean(g["kendall_tau"] for g in defined)
            result["opa"] = _mean(g["opa"] for g in defined)
            result["score"] = result["kendall_tau"]
            result["num_graphs_excluded"] = len(graphs) - len(defined)
        result["num_graphs"] = len(graphs)
        return result


def metric_names(collection: str) -> tuple[str, ...]:
    """The names :meth:`Evaluator.compute` reports for ``collection``, in its order.

    Args:
        collection: one of :data:`COLLECTIONS`.

    Example:
        >>> metric_names("tile:xla")
        ('top1_error', 'top5_error', 'top10_error', 'score', 'num_graphs')
    """
    task = parse_collection(collection)[0]
    ks = TILE_KS if task == "tile" else LAYOUT_KS
    names = [f"top{k}_error" for k in ks]
    if task == "tile":
        names.append("score")
    else:
        names += ["kendall_tau", "opa", "score", "num_graphs_excluded"]
    return (*names, "num_graphs")


def _mean(values: Any) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def kaggle_score(scores: Mapping[str, float]) -> float:
    """Kaggle score: the plain mean of the five collection scores.

    Args:
        scores: ``{collection: score}`` for exactly the five :data:`COLLECTIONS`
            (e.g. each ``Evaluator(collection).compute()["score"]``).

    Returns:
        The mean score.

    Raises:
        ValueError: naming missing or unknown collections, or a non-finite score.
    """
    missing = [c for c in COLLECTIONS if c not in scores]
    unknown = sorted(c for c in scores if c not in COLLECTIONS)
    if missing or unknown:
        raise ValueError(
            f"kaggle_score needs exactly {list(COLLECTIONS)}; missing {missing}, unknown {unknown}"
        )
    bad = [c for c in COLLECTIONS if not math.isfinite(float(scores[c]))]
    if bad:
        raise ValueError(f"non-finite score for {bad}")
    return _mean(float(scores[c]) for c in COLLECTIONS)
