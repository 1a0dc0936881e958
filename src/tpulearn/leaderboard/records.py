"""What a leaderboard reproduction records: its runs, its rows (one per collection) and
the finished :class:`Leaderboard`."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """One (collection, seed): a trained or reused model, or a transferred one."""

    collection: str
    seed: int
    status: str  # trained | resumed | reused | transfer
    run_dir: Path
    checkpoint: Path
    model_from: str  # the collection whose train split the model learned from
    best_step: int | None = None
    valid: dict | None = None  # evaluate() metrics on valid; None without a valid split


@dataclass
class Row:
    """One collection of the leaderboard: its runs and the test submission part."""

    collection: str
    runs: list[Run]
    graphs: dict[str, int]  # npz files per split in the root
    note: str = ""
    submission_seed: int | None = None
    submission_part: Path | None = None
    submission_why: str = ""
    # --ensemble: the valid metrics of the ensemble of the row's runs (None without a
    # valid split or without --ensemble); the test part is then the ensemble's.
    ensemble_valid: dict | None = None

    @property
    def transfer_from(self) -> str | None:
        source = self.runs[0].model_from
        return source if source != self.collection else None

    def values(self, metric: str) -> list[float]:
        return [r.valid[metric] for r in self.runs if r.valid and metric in r.valid]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        """Sample standard deviation over seeds (ddof 1); None for fewer than 2 seeds."""
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Leaderboard:
    """What :func:`run_leaderboard` made: rows, runs, the Kaggle-style score (None and
    ``kaggle_note`` saying why when absent), the merged submission and the tables."""

    rows: list[Row]
    runs: list[Run]  # every trained run, transfer sources included
    kaggle_score: float | None
    kaggle_note: str
    submission: Path | None
    submission_note: str
    markdown: Path
    json: Path
    settings: dict = field(default_factory=dict)
