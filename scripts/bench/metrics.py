"""Group ``metrics``: the evaluator's Kendall tau on 100k configs."""

from __future__ import annotations

import numpy as np

from .timing import result, timed

NAME = "metrics"
COLUMNS: list[tuple[str, str, str]] = []


def run(args) -> list[dict]:
    """``kendall_tau`` of noisy predictions against 100k random runtimes, in ms."""
    from tpulearn.metrics import kendall_tau

    rng = np.random.default_rng(0)
    runtime = rng.integers(1, 10**9, 100_000)
    pred = runtime + rng.normal(0, 1e8, runtime.shape[0])
    times = timed(lambda: kendall_tau(pred, runtime), args.repeats)
    return [
        result("kendall_tau, 100k configs", "ms", lambda t: t * 1e3, times, device="cpu"),
    ]
