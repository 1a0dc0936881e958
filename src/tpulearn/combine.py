"""Combine several models' scores of one graph's configs into one ensemble score (numpy).

Raw scores cannot be averaged: the ranking losses fix neither the shift nor the scale of a
model's scores, so every seed and model has its own scale, and it differs from graph to
graph. Each member's scores are made comparable over the graph's configs first:

- ``rank`` (the default): a member's scores become their ranks among the graph's configs
  (1-based; tied scores share their average rank, as ``scipy.stats.rankdata``), and the
  ensemble score is the mean rank (a Borda count). Ranks are unchanged by any increasing
  transform of a member's scores, the invariance of the metrics themselves (Kendall tau,
  OPA and top-K error read only the order), so a member counts by exactly what it is
  scored on, and no member outweighs the others by an odd scale or one outlying config.
- ``zscore``: a member's scores minus their mean over the graph's configs, over their
  standard deviation (population, ddof 0; a constant member gives zeros: no opinion), and
  the ensemble score is the mean. It keeps a member's margins (a config scored far from
  the rest weighs more), but is invariant to affine transforms only, so a member with
  heavy-tailed scores dominates the configs in its tails.

Lower stays faster either way. The ranks of one member keep its order and its ties, so an
ensemble of one ranks the configs as the member does. Ranks are taken over the configs
combined: on a subset (the official valid subsets) they can order two configs otherwise
than over the whole file, as any Borda count does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COMBINES = ("rank", "zscore")


def check_combine(method: str) -> str:
    """``method`` when it is one of :data:`COMBINES`, else a ValueError naming them."""
    if method not in COMBINES:
        raise ValueError(f"ensemble={method!r}: expected one of {', '.join(COMBINES)}")
    return method


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores`` (lowest first) as float64; ties share their mean rank."""
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts  # 0-based position of each distinct value's run
    return (first + (counts + 1) / 2.0)[inverse.ravel()]


def zscores(scores: np.ndarray) -> np.ndarray:
    """``(scores - mean) / std`` in float64 (ddof 0); zeros for constant scores."""
    scores = np.asarray(scores, dtype=np.float64)
    # Exactly constant: the mean of equal floats can round off them and leave a tiny std.
    if scores.max() == scores.min():
        return np.zeros_like(scores)
    return (scores - scores.mean()) / scores.std()


def combine_scores(members: Sequence[np.ndarray], method: str = "rank") -> np.ndarray:
    """The ensemble's scores of one graph's configs, lower = predicted faster.

    Args:
        members: each member's ``[num_configs]`` scores of the same configs, same order.
        method: ``"rank"`` (mean of average ranks) or ``"zscore"`` (mean of z-scores).

    Returns:
        ``[num_configs]`` float64 scores.

    Raises:
        ValueError: no members, an unknown method, or scores that are not 1-D, differ in
            length from the first member's, or hold NaN or inf.
    """
    check_combine(method)
    if len(members) == 0:
        raise ValueError("an ensemble needs at least one member's scores")
    arrays = [np.asarray(m) for m in members]
    for i, a in enumerate(arrays, start=1):
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"member {i}'s scores must be 1-D and non-empty, got {a.shape}")
        if a.size != arrays[0].size:
            raise ValueError(
                f"member {i} scored {a.size} configs, member 1 {arrays[0].size}: members must "
                "score the same configs"
            )
        if a.dtype.kind not in "iuf" or not np.isfinite(a).all():
            raise ValueError(f"member {i}'s scores must be finite numbers")
    normalise = average_ranks if method == "rank" else zscores
    return np.mean([normalise(a) for a in arrays], axis=0)
