"""How long a run trains and when it validates: ``trainer.max_steps``, ``trainer.max_epochs``
and ``trainer.val_every`` turned into steps once the training graphs are known.

An epoch is every training graph once. Graphs are split into shards (see
:mod:`.schedule`): graph ``i`` belongs to shard ``i % shards`` and each step takes
``graphs_per_batch / shards`` graphs of every shard, so an epoch is the steps the largest
shard (``ceil(graphs / shards)`` graphs) needs to visit each of its graphs once. With one
shard (or graphs divisible by the shards) that is ``graphs / graphs_per_batch`` steps, and
``E`` epochs are ``ceil(E x graphs / graphs_per_batch)`` steps.

``trainer.min_epoch_graphs`` sets a floor under an epoch: a collection of fewer graphs
visits its graphs that many times an epoch between them (one graph and a floor of 8: an
epoch is 8 visits of it). An epoch budget sized for tens of graphs (150 epochs, validated
every 5) would otherwise give a collection of one graph 150 steps, validated every 5, too
few to fit even that graph; with enough graphs the floor does not bind.

``max_steps`` and ``max_epochs`` are both limits and the run stops at whichever comes first
(as PyTorch Lightning's trainer does): a per-collection default of ``max_epochs`` stays in
force when a smoke run adds ``trainer.max_steps=20``, and ``trainer.max_steps=null`` lets
``max_epochs`` alone decide. At least one must be set.

``trainer.max_time`` caps the wall time of a run on top of its steps: a run on a slower
machine or a larger collection than its budget was sized for stops in time, with its best
checkpoint as it stands (:class:`Deadline`).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from fractions import Fraction


def _count(key: str, value, integer: bool) -> Fraction | None:
    """``value`` as an exact positive number, None for null; one clear line otherwise."""
    if value is None:
        return None
    kind = "a positive integer" if integer else "a positive number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"trainer.{key}={value!r} must be {kind} or null")
    # str() keeps a decimal such as 0.1 exact (Fraction(0.1) is its binary approximation).
    return Fraction(str(value)) if isinstance(value, float) else Fraction(value)


def check_budget(max_steps, max_epochs, min_epoch_graphs=None) -> None:
    """Refuse bad budget values before any data is read."""
    _count("min_epoch_graphs", min_epoch_graphs, True)
    steps, epochs = _count("max_steps", max_steps, True), _count("max_epochs", max_epochs, False)
    if steps is None and epochs is None:
        raise ValueError(
            "no training budget: trainer.max_steps and trainer.max_epochs are both null; "
            "set one (e.g. trainer.max_epochs=100)"
        )


def _epochs_text(value: Fraction) -> str:
    text = str(int(value)) if value.denominator == 1 else f"{float(value):g}"
    return f"{text} epoch" + ("" if value == 1 else "s")


@dataclass(frozen=True)
class Budget:
    """The steps of a run, and how steps relate to epochs.

    Attributes:
        steps: optimizer steps of the run.
        epoch_graphs: graphs of the largest shard (all graphs with one shard), or the
            visits ``min_epoch_graphs`` asks of an epoch where that is more.
        step_graphs: graphs one step takes from each shard.
        text: what decided ``steps``, for the run's first line.
    """

    steps: int
    epoch_graphs: int
    step_graphs: int
    text: str

    @property
    def steps_per_epoch(self) -> Fraction:
        return Fraction(self.epoch_graphs, self.step_graphs)

    def epochs(self, step: int) -> float:
        """Epochs done after ``step`` steps (of the largest shard)."""
        return float(step / self.steps_per_epoch)


def step_budget(
    max_steps: int | None,
    max_epochs: float | None,
    num_graphs: int,
    graphs_per_batch: int,
    shards: int = 1,
    min_epoch_graphs: int | None = None,
) -> Budget:
    """The steps of a run: ``max_steps``, the steps of ``max_epochs``, or the smaller.

    Args:
        max_steps: ``trainer.max_steps`` (None: no step limit).
        max_epochs: ``trainer.max_epochs`` (None: no epoch limit); fractions allowed.
        num_graphs: training graphs.
        graphs_per_batch: graphs per step over all shards (a multiple of ``shards``).
        shards: graph ownership groups (:func:`~.schedule.num_shards`).
        min_epoch_graphs: ``trainer.min_epoch_graphs``: graph visits an epoch makes at
            least, when there are fewer graphs (None: every graph once, however few).

    Raises:
        ValueError: a value that is not positive, or both limits null.
    """
    check_budget(max_steps, max_epochs, min_epoch_graphs)
    epochs = _count("max_epochs", max_epochs, False)
    epoch_graphs, step_graphs = -(-num_graphs // shards), graphs_per_batch // shards
    graphs = f"{num_graphs} train graph" + ("" if num_graphs == 1 else "s")
    floor = -(-(min_epoch_graphs or 0) // shards)
    if floor > epoch_graphs:
        epoch_graphs = floor
        graphs += f" (an epoch: {min_epoch_graphs} visits, trainer.min_epoch_graphs)"
    derivation = f"{graphs} / {graphs_per_batch} per step"
    if shards > 1:
        derivation += f" ({shards} shards: {epoch_graphs} graphs / {step_graphs} per step each)"
    from_epochs = None
    if epochs is not None:
        from_epochs = math.ceil(epochs * epoch_graphs / step_graphs)
        epoch_text = f"{_epochs_text(epochs)} x {derivation} = {from_epochs} steps"
    if from_epochs is not None and (max_steps is None or from_epochs <= max_steps):
        text = epoch_text
        if max_steps is not None:
            text += f" (trainer.max_steps={max_steps} allows more)"
        return Budget(from_epochs, epoch_graphs, step_graphs, text)
    seen = Fraction(max_steps * step_graphs, epoch_graphs)
    text = f"{max_steps} steps (trainer.max_steps) = {_epochs_text(seen)} of {derivation}"
    if from_epochs is not None:
        text += f"; fewer than {epoch_text} (trainer.max_epochs)"
    return Budget(max_steps, epoch_graphs, step_graphs, text)


_EPOCHS = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*epochs?\s*$")


def check_val_every(val_every) -> None:
    """Refuse a ``trainer.val_every`` that is neither steps nor epochs."""
    _val_every(val_every)


def _val_every(val_every) -> tuple[str, Fraction]:
    if isinstance(val_every, int) and not isinstance(val_every, bool) and val_every > 0:
        return "steps", Fraction(val_every)
    match = _EPOCHS.match(val_every) if isinstance(val_every, str) else None
    if match and Fraction(match.group(1) or "1") > 0:
        return "epochs", Fraction(match.group(1) or "1")
    raise ValueError(
        f"trainer.val_every={val_every!r} must be a positive number of steps, 'epoch' or "
        "'<N> epochs'"
    )


@dataclass(frozen=True)
class Cadence:
    """When a run validates: after every step that completes another ``period`` steps.

    ``period`` is a whole number of steps for ``val_every: N``, and a fraction of steps for
    ``val_every: epoch`` (the step that finishes an epoch of the largest shard, or passes
    its end, validates). The last step always validates too.
    """

    period: Fraction
    text: str = ""

    @classmethod
    def of(cls, val_every, budget: Budget | None = None) -> Cadence:
        """The cadence of ``trainer.val_every`` (epochs need the run's ``budget``)."""
        unit, n = _val_every(val_every)
        if unit == "steps":
            return cls(n, "every step" if n == 1 else f"every {n} steps")
        period = n * budget.steps_per_epoch
        what = "epoch" if n == 1 else _epochs_text(n)
        steps = f"{float(period):g} step" + ("" if period == 1 else "s")
        return cls(period, f"every {what} ({steps})")

    def due(self, step: int) -> bool:
        """Whether the validation period ends within ``step`` (1-based)."""
        return math.floor(step / self.period) > math.floor((step - 1) / self.period)

    def count(self, after: int, until: int) -> int:
        """Periods ending within steps ``after + 1 .. until``."""
        return math.floor(until / self.period) - math.floor(after / self.period)


_TIME_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_max_time(value) -> float | None:
    """``trainer.max_time`` in seconds: a positive number of seconds, or a string of
    numbers with units ``h``, ``m``, ``s`` (``"90s"``, ``"9m"``, ``"1h30m"``); None for
    null. Anything else is one clear line."""
    if value is None:
        return None
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            text += "s"
        parts = _TIME_PART.findall(text)
        if parts and "".join(f"{n}{u}" for n, u in parts) == text:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(
            f"trainer.max_time={value!r} must be a positive number of seconds, a duration "
            "such as '90s', '9m' or '1h30m', or null"
        )
    return seconds


def time_text(seconds: float) -> str:
    """``seconds`` for a log line: ``9m``, ``1h30m``, ``2m30s``, ``90.5s``."""
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    parts = zip((hours, minutes, secs), "hms", strict=True)
    return "".join(f"{n}{unit}" for n, unit in parts if n)


def clock() -> float:
    """Seconds of a monotonic clock (a function of its own, so tests can replace it)."""
    return time.monotonic()


class Deadline:
    """The wall-time cap of a run (``trainer.max_time``), counted from its creation.

    Args:
        seconds: the cap, or None: no cap (:meth:`passed` is then always False).
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = clock()

    def elapsed(self) -> float:
        return clock() - self.start

    def passed(self) -> bool:
        return self.seconds is not None and self.elapsed() >= self.seconds
