"""The benchmark groups behind ``scripts/benchmark.py``, one module per group.

Shared code: :mod:`.runner` (command line, group registry, merging results),
:mod:`.report` (``results.md`` / ``results.json``), :mod:`.timing` (repeated timing and
result rows), :mod:`.probe` (one call in a fresh interpreter, its peak memory read from
``/proc``) and :mod:`.layout` (the paper's layout model, synthetic layout graphs).

Groups: :mod:`.metrics`, :mod:`.scoring`, :mod:`.score_items`, :mod:`.gst_memory`,
:mod:`.gst_speed`, :mod:`.npz_io` (group ``io``), :mod:`.training` (its cases in
:mod:`.training_cases`), :mod:`.recipe` and :mod:`.memory`, registered in
:data:`.runner.MODULES`. Each group module has ``NAME``, ``COLUMNS`` (its extra markdown
columns) and ``run(args) -> list[dict]``.

The package is imported with ``scripts/`` on ``sys.path``: ``python scripts/benchmark.py``
puts it there; tests and notebooks prepend it themselves.
"""
