"""Benchmarks of tpulearn, written to ``benchmarks/results.md`` and ``results.json``.

    python scripts/benchmark.py                    # every benchmark
    python scripts/benchmark.py --only scoring     # one group
    python scripts/benchmark.py --quick            # fewer repeats, smaller sizes: a smoke run
    python scripts/benchmark.py --out /tmp/bench   # write the results elsewhere

Groups: ``metrics``, ``scoring``, ``score_items`` (every config of a real graph scored in
items of one chunk or in budgeted items), ``gst_memory``, ``gst_speed``, ``io`` (npz reading
and validation), ``training`` (full training steps: configs/s and node-states/s), ``recipe``
(the layout_fast recipe's steps in a training run, at the held-out collection's graph
shape) and ``memory`` (peak memory of a training epoch over a synthetic collection, by graph
count). CUDA cases run when a GPU is available. Each group is a module of
``scripts/bench/``.

Each line reports the median of several runs and their spread (min - max), with the device
and the command that reproduces it. Results of different groups are merged into the
existing JSON, so groups can be rerun separately; the markdown table is rewritten from it.

``--quick`` runs one repeat per case (three training steps), skips the naive scoring of the
21,918-node graph, probes ``gst_memory`` at 5,000 nodes only and shrinks the synthetic files.
Its numbers are a smoke run's: without ``--out`` they go to ``tpulearn-benchmark-quick`` in
the temporary folder, not into ``benchmarks/``.
"""

from __future__ import annotations

from bench.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
