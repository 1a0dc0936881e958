"""Group ``gst_memory``: peak memory of one training step against graph size, GST and full
graph, each step probed in a fresh interpreter (:mod:`.step_memory`)."""

from __future__ import annotations

from .step_memory import measure_step_memory
from .timing import result

NAME = "gst_memory"
COLUMNS: list[tuple[str, str, str]] = []

SIZES = (5_000, 10_000, 20_000, 40_000)
SIZES_QUICK = (5_000,)
RSS_CAP_MB = 8_000  # a full-graph probe above this is stopped (the machine has 24 GB)
PROBE_TIMEOUT_S = 900


# (label, step_memory mode, halo hops, max_age)
CASES = (
    ("GST, 1000-node segments", "gst", 0, None),
    (
        "GST, 1000-node segments with a 2-hop halo, other segments recomputed each step",
        "gst",
        2,
        0,
    ),
    ("every segment in the gradient, checkpointed, 1000-node segments", "checkpoint", 0, None),
    ("full graph", "full", 0, None),
)


def _probe(num_nodes: int, mode: str, halo_hops: int = 0, max_age=None) -> dict:
    """One training step's peak RSS in a fresh interpreter, stopped above the cap."""
    return measure_step_memory(num_nodes, mode, RSS_CAP_MB, PROBE_TIMEOUT_S, halo_hops, max_age)


def rows_for(sizes: tuple[int, ...] = SIZES) -> list[dict]:
    """Every case of :data:`CASES` at every graph size: a row per measured step, or one
    row at the cap for a probe that was stopped."""
    rows = []
    for num_nodes in sizes:
        for label, mode, halo_hops, max_age in CASES:
            probe = _probe(num_nodes, mode, halo_hops, max_age)
            what = (
                f"peak RSS of one training step, synthetic {num_nodes:,} nodes (4% configurable),"
                f" 32 configs, SAGE 3x256, {label}"
            )
            if "capped" in probe:
                rows.append(
                    result(
                        f"{what}: stopped ({probe['capped']}), peak above the cap",
                        "MB",
                        lambda v: v,
                        [RSS_CAP_MB],
                        device="cpu",
                        capped=probe["capped"],
                    )
                )
                print(rows[-1], flush=True)
                continue
            for name in ("first", "step"):
                if name not in probe:
                    continue
                stats = probe[name]
                suffix = ", first step (with the no-grad fill pass)" if name == "first" else ""
                rows.append(
                    result(
                        what + suffix,
                        "MB",
                        lambda v: v,
                        [stats["peak_mb"]],
                        device="cpu",
                        rss_before_step_mb=stats["base_mb"],
                        step_increase_mb=stats["peak_mb"] - stats["base_mb"],
                        step_seconds=stats["seconds"],
                        num_segments=probe["num_segments"],
                    )
                )
                print(rows[-1], flush=True)
    return rows


def run(args) -> list[dict]:
    """Graph segment training: peak memory of one step vs graph size, GST and full graph."""
    return rows_for(SIZES_QUICK if args.quick else SIZES)
