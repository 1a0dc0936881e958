"""Which configs of a graph go into one training or evaluation example.

A sampler is a small callable: given the runtimes of a graph's candidate configs, a random
generator and the graph's name, it returns the config indices (rows of the file) to use.
Its constructor arguments are its configuration. De-duplication (:func:`copy_of`,
:func:`dedup_configs`, :func:`mean_of_copies`) decides which rows are candidates at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._checks import check_choice, check_int, check_number


class ConfigSampler:
    """Base class: ``sampler(candidates, runtime, rng, stem) -> indices``.

    Args of ``__call__``:
        candidates: [k] int64 row indices the sample may draw from (all configs, or those
            left after de-duplication / dropping failed measurements).
        runtime: [num_configs] int64 runtimes of the whole file (indexable by candidates).
        rng: the generator to draw from (seeded per epoch and graph by the dataset).
        stem: the graph's file stem (used by samplers keyed by graph).
    """

    def __call__(
        self, candidates: np.ndarray, runtime: np.ndarray, rng: np.random.Generator, stem: str
    ) -> np.ndarray:
        raise NotImplementedError


class UniformSampler(ConfigSampler):
    """Up to ``num_configs`` configs drawn uniformly without replacement (all if fewer)."""

    def __init__(self, num_configs: int):
        self.num_configs = check_int("num_configs", num_configs, 1)

    def __call__(self, candidates, runtime, rng, stem):
        if candidates.shape[0] <= self.num_configs:
            return rng.permutation(candidates)
        return rng.choice(candidates, size=self.num_configs, replace=False)

    def __repr__(self) -> str:
        return f"UniformSampler(num_configs={self.num_configs})"


class FastBiasedSampler(ConfigSampler):
    """Sample biased toward fast configs, where ranking errors cost most.

    A share ``fast_share`` of the sample is drawn without replacement from the fastest
    ``fast_quantile`` of the candidates, the rest uniformly from the others.

    Args:
        num_configs: sample size (all candidates if fewer).
        fast_share: fraction of the sample taken from the fast group.
        fast_quantile: fraction of candidates (by runtime) that forms the fast group.
    """

    def __init__(self, num_configs: int, fast_share: float = 0.5, fast_quantile: float = 0.1):
        self.num_configs = check_int("num_configs", num_configs, 1)
        self.fast_share = check_number("fast_share", fast_share, 0.0, 1.0)
        self.fast_quantile = check_number("fast_quantile", fast_quantile, 0.0, 1.0, open_low=True)

    def __call__(self, candidates, runtime, rng, stem):
        k = candidates.shape[0]
        if k <= self.num_configs:
            return rng.permutation(candidates)
        order = candidates[np.argsort(runtime[candidates], kind="stable")]
        num_fast_pool = max(1, int(round(k * self.fast_quantile)))
        fast, slow = order[:num_fast_pool], order[num_fast_pool:]
        take_fast = min(int(round(self.num_configs * self.fast_share)), fast.shape[0])
        take_slow = min(self.num_configs - take_fast, slow.shape[0])
        take_fast = self.num_configs - take_slow  # top up from the fast pool if slow is short
        picked = np.concatenate(
            [rng.choice(fast, take_fast, replace=False), rng.choice(slow, take_slow, replace=False)]
        )
        return rng.permutation(picked)

    def __repr__(self) -> str:
        return (
            f"FastBiasedSampler(num_configs={self.num_configs}, fast_share={self.fast_share}, "
            f"fast_quantile={self.fast_quantile})"
        )


class FixedIndicesSampler(ConfigSampler):
    """A fixed list of config indices per graph, e.g. the official validation subsets.

    Args:
        indices: graph stem -> config indices, or a path to a JSON file of that mapping
            (the official ``eval_indices/<source>_<search>.json``).
        unlisted: what a graph absent from ``indices`` gets: ``"error"`` (a KeyError
            naming it) or ``"all"`` (every candidate config).
    """

    def __init__(self, indices: Mapping[str, list[int]] | str | Path, unlisted: str = "error"):
        self.unlisted = check_choice("unlisted", unlisted, ("error", "all"))
        if isinstance(indices, str | Path):
            import json

            with open(indices) as fp:
                indices = json.load(fp)
        self.indices = {str(k): np.asarray(v, dtype=np.int64) for k, v in indices.items()}

    def __call__(self, candidates, runtime, rng, stem):
        if stem not in self.indices:
            if self.unlisted == "all":
                return np.sort(candidates)
            raise KeyError(
                f"no fixed config indices for graph {stem!r} (the official indices list "
                "valid graphs; FixedIndicesSampler(..., unlisted='all') takes every config of "
                "a graph they do not list)"
            )
        idx = self.indices[stem]
        if idx.size and (idx.min() < 0 or idx.max() >= runtime.shape[0]):
            raise ValueError(
                f"fixed config indices for graph {stem!r} must lie in [0, {runtime.shape[0]}), "
                f"found {idx.min()}..{idx.max()}"
            )
        return idx

    def __repr__(self) -> str:
        return f"FixedIndicesSampler({len(self.indices)} graphs)"


class AllConfigsSampler(ConfigSampler):
    """Every candidate config, in file order (for evaluating small graphs in one piece)."""

    def __call__(self, candidates, runtime, rng, stem):
        return np.sort(candidates)

    def __repr__(self) -> str:
        return "AllConfigsSampler()"


# The values of ``dedup`` (datasets, ``data.dedup``): off, the fastest copy ("min", also
# ``True``) or the mean of the copies.
DEDUP_MODES = (False, True, "min", "mean")

# Bytes of one chunk of rows that dedup_configs fingerprints at a time (as float64).
_DEDUP_CHUNK_BYTES = 32 * 2**20


def copy_of(
    config_feat: np.ndarray,
    runtime: np.ndarray,
    chunk_rows: int = 4096,
    normalizers: np.ndarray | None = None,
) -> np.ndarray:
    """For each config row, the row that stands for its config: its fastest measured copy.

    Works on memory maps of any size: rows are fingerprinted a chunk at a time (at most
    ``chunk_rows`` rows and 32 MB), and rows sharing a fingerprint are compared exactly
    before being merged. A fingerprint is a wrapping integer sum of the row's float64 bit
    patterns times fixed random odd multipliers, so equal rows get equal fingerprints
    whatever chunk they are read in (a floating-point projection can round one row two
    ways by where it sits in the chunk, and miss the duplicate).

    Args:
        config_feat: [num_configs, ...] config features (tile [c, 24], layout [c, nc, 18]).
        runtime: [num_configs] runtimes; a row with runtime <= 0 (not measured) stands for
            its config only when no copy is measured. Ties go to the first row.
        chunk_rows: rows read at a time, at most.
        normalizers: [num_configs] tile ``config_runtime_normalizers`` or ``None``. With
            them the fastest copy is the one of least ``runtime / normalizer``, the ratio
            that is ranked.

    Returns:
        [num_configs] int64: ``rep[i]`` is the standing row of row i's config; ``rep[i] ==
        i`` for the rows kept, one per distinct config.
    """
    c = config_feat.shape[0]
    width = int(np.prod(config_feat.shape[1:], dtype=np.int64))
    chunk_rows = max(1, min(chunk_rows, _DEDUP_CHUNK_BYTES // max(8 * width, 1)))
    mult = np.random.default_rng(0).integers(0, 2**63, (2, width), dtype=np.uint64) * 2 + 1
    keys = np.empty((c, 2), dtype=np.uint64)
    for start in range(0, c, chunk_rows):
        # + 0.0 turns -0.0 into 0.0, which compare equal but differ in bits.
        rows = np.asarray(config_feat[start : start + chunk_rows], dtype=np.float64) + 0.0
        bits = rows.reshape(rows.shape[0], width).view(np.uint64)
        for k in range(2):
            keys[start : start + chunk_rows, k] = (bits * mult[k]).sum(axis=1, dtype=np.uint64)
    runtime = np.asarray(runtime)
    speed = _ranked(runtime, normalizers)
    order = np.lexsort((np.arange(c), speed, runtime <= 0, keys[:, 1], keys[:, 0]))
    same_key = np.all(keys[order[1:]] == keys[order[:-1]], axis=1)
    rep = np.arange(c, dtype=np.int64)
    start = 0
    # Walk runs of equal fingerprints; inside a run (fastest measured first) each row joins
    # the first standing row equal to it or stands for a config of its own.
    for end in [*(np.flatnonzero(~same_key) + 1).tolist(), c]:
        if end - start > 1:
            run = order[start:end]
            feats = np.asarray(config_feat[np.sort(run)]).reshape(end - start, width)
            by_row = dict(zip(np.sort(run).tolist(), feats, strict=True))
            standing: list[int] = []
            for row in run.tolist():
                same = (k for k in standing if np.array_equal(by_row[row], by_row[k]))
                rep[row] = next(same, row)
                if rep[row] == row:
                    standing.append(row)
        start = end
    return rep


def _ranked(runtime: np.ndarray, normalizers: np.ndarray | None) -> np.ndarray:
    """What a config's measurements rank by, as float64: the runtime, or (tile) the runtime
    over its normalizer; 0 where not measured (runtime <= 0)."""
    measured = runtime > 0
    if normalizers is None:
        return np.where(measured, runtime, 0).astype(np.float64)
    scale = np.where(measured, np.asarray(normalizers, dtype=np.float64), 1.0)
    return np.where(measured, runtime / scale, 0.0)


def dedup_configs(
    config_feat: np.ndarray,
    runtime: np.ndarray,
    chunk_rows: int = 4096,
    normalizers: np.ndarray | None = None,
) -> np.ndarray:
    """Indices that keep one row per distinct config, its fastest measured copy
    (:func:`copy_of`).

    Args:
        config_feat: [num_configs, ...] config features (tile [c, 24], layout [c, nc, 18]).
        runtime: [num_configs] runtimes.
        chunk_rows: rows read at a time, at most.
        normalizers: tile ``config_runtime_normalizers`` or ``None`` (:func:`copy_of`).

    Returns:
        Sorted int64 row indices of the kept configs.
    """
    return standing_rows(copy_of(config_feat, runtime, chunk_rows, normalizers))


def standing_rows(rep: np.ndarray) -> np.ndarray:
    """Sorted int64 indices of the rows that stand for their config (``rep[i] == i``;
    ``rep`` from :func:`copy_of`)."""
    return np.flatnonzero(rep == np.arange(rep.shape[0])).astype(np.int64)


def mean_of_copies(
    rep: np.ndarray, runtime: np.ndarray, normalizers: np.ndarray | None = None
) -> np.ndarray:
    """Runtimes whose standing rows hold the mean over their config's measured copies.

    Args:
        rep: [num_configs] standing row of each row (:func:`copy_of`).
        runtime: [num_configs] integer runtimes (<= 0: not measured).
        normalizers: [num_configs] tile ``config_runtime_normalizers`` or ``None``. With
            them the mean is of ``runtime / normalizer``, the ratio that is ranked, written
            back as a runtime under the standing row's normalizer.

    Returns:
        A copy of ``runtime`` in which each standing row of a config measured at least
        once holds the rounded mean; every other row is as it was.
    """
    c = runtime.shape[0]
    scale = np.ones(c) if normalizers is None else np.asarray(normalizers, dtype=np.float64)
    measured = runtime > 0
    total = np.bincount(rep, weights=_ranked(runtime, normalizers), minlength=c)
    count = np.bincount(rep, weights=measured, minlength=c)
    out = np.array(runtime, copy=True)
    stand = standing_rows(rep)
    stand = stand[count[stand] > 0]
    out[stand] = np.rint(total[stand] / count[stand] * scale[stand]).astype(out.dtype)
    return out
