"""Best-found runtime against configs tried: the model's order and random orders (numpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import kendall_tau
from ._base import _numpy

# Curves evaluate every k up to this many configs, a geometric grid of k beyond.
_DENSE_CURVE = 2048
_CURVE_POINTS = 512


def _scores_and_runtime(scores: Any, runtime: Any) -> tuple[np.ndarray, np.ndarray]:
    """1-D float scores and positive runtimes of equal length, or a clear ValueError."""
    kendall_tau(scores, runtime)  # checks shapes, lengths and finiteness with clear errors
    scores = _numpy(scores).astype(np.float64)
    runtime = _numpy(runtime).astype(np.float64)
    if (runtime <= 0).any():
        raise ValueError(
            "runtime must be positive true runtimes of a labelled graph, "
            f"found {int((runtime <= 0).sum())} values <= 0"
        )
    return scores, runtime


@dataclass(frozen=True)
class RankingCurve:
    """Best true runtime found after trying the first k configs, relative to the true best.

    Attributes:
        k: ``[P]`` numbers of configs tried (increasing, from 1).
        model: ``[P]`` trying configs in the model's order (lowest score first).
        random: ``[P]`` the exact expectation over uniformly random orders.
    """

    k: np.ndarray
    model: np.ndarray
    random: np.ndarray


def expected_best_of_random(runtime: Any, ks: Any) -> np.ndarray:
    """Exact expected minimum of ``k`` configs drawn without replacement, for each k.

    With runtimes sorted, ``r_1 <= ... <= r_n``, the minimum of a uniformly random k-subset
    exceeds ``r_i`` only when the subset avoids the i smallest, with probability
    ``C(n - i, k) / C(n, k)``; so ``E[min] = r_1 + sum_i (r_{i+1} - r_i) C(n - i, k) / C(n, k)``.
    This equals the best runtime found after k configs averaged over every order of
    trying them. O(n) per k.

    Args:
        runtime: ``[n]`` runtimes (ties allowed).
        ks: numbers of configs, each in [1, n].

    Returns:
        ``[len(ks)]`` float64 expected minima (not normalised).
    """
    r = np.sort(_numpy(runtime).astype(np.float64).reshape(-1))
    n = r.size
    ks = np.asarray(ks, dtype=np.int64).reshape(-1)
    if n == 0:
        raise ValueError("runtime is empty")
    if ks.size and (ks.min() < 1 or ks.max() > n):
        raise ValueError(f"every k must be in [1, {n}] (the number of configs), got {ks}")
    gaps = np.diff(r)  # gaps[i - 1] = r_{i+1} - r_i, i = 1..n-1
    t = np.arange(n - 1, dtype=np.float64)
    out = np.empty(ks.size)
    for j, k in enumerate(ks):
        # C(n - i, k) / C(n, k) = prod_{t < i} (n - k - t) / (n - t); 0 once n - i < k.
        avoid = np.cumprod(np.maximum(n - k - t, 0.0) / (n - t))
        out[j] = r[0] + float(np.dot(gaps, avoid))
    return out


def ranking_curve(scores: Any, runtime: Any, ks: Any = None) -> RankingCurve:
    """Best-found true runtime against the number of configs tried, model vs random order.

    Following the model, configs are tried lowest score first (equal scores in their given
    order); the random curve is the exact expectation over uniformly random orders
    (:func:`expected_best_of_random`), not a sample of permutations. Both are divided by
    the true best runtime, so 1 means the best config has been found.

    Args:
        scores: ``[n]`` predicted scores.
        runtime: ``[n]`` true runtimes (positive).
        ks: numbers of configs to evaluate at; by default every k up to 2048 configs, a
            geometric grid of about 512 points from 1 to n beyond.
    """
    scores, runtime = _scores_and_runtime(scores, runtime)
    n = runtime.size
    if ks is None:
        if n <= _DENSE_CURVE:
            ks = np.arange(1, n + 1)
        else:
            ks = np.unique(np.geomspace(1, n, _CURVE_POINTS).round().astype(np.int64))
    ks = np.asarray(ks, dtype=np.int64).reshape(-1)
    if ks.size == 0 or ks.min() < 1 or ks.max() > n:
        raise ValueError(f"ks must be non-empty numbers of configs in [1, {n}], got {ks}")
    best = runtime.min()
    order = np.argsort(scores, kind="stable")
    found = np.minimum.accumulate(runtime[order])[ks - 1]
    return RankingCurve(ks, found / best, expected_best_of_random(runtime, ks) / best)
