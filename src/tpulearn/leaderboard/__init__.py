"""Leaderboard reproduction: the experiment config of each collection, over several seeds,
next to the paper's numbers, plus a validated Kaggle submission.

    from tpulearn.leaderboard import run_leaderboard
    board = run_leaderboard("sample", "outputs/leaderboard", seeds=[0, 1, 2])
    board.markdown  # outputs/leaderboard/leaderboard.md

For each requested collection and seed, ``configs/experiment/<collection>.yaml`` (e.g.
``layout_xla_default``) is composed with Hydra and trained into ``OUT/<name>/seed<k>/``;
a finished run there whose stored config matches is reused, an interrupted one resumed.
Each best checkpoint is evaluated on valid; the seed with the best valid score scores the
test split, or with ``ensemble="rank" | "zscore"`` (``--ensemble``) the ensemble of all the
seeds' best checkpoints does, its valid metrics shown beside the seeds' mean. A layout
collection without a train split in the root (the bundled sample's nlp collections) is
scored by the model of another layout collection of the root (they share the feature
schema) and marked as such; its valid metrics are those of that transferred model, or n/a
without a valid split.

Modules: :mod:`.reference` (the paper's and Kaggle's numbers, with their sources),
:mod:`.records` (runs, rows, the board), :mod:`.plan` (checked inputs, which model scores
each collection), :mod:`.reuse` (reuse or resume a run folder), :mod:`.runs` (training and
evaluation calls), :mod:`.tables` (``leaderboard.md`` and ``leaderboard.json``) and
:mod:`.reproduce` (:func:`run_leaderboard`).
"""

from .plan import RESERVED, experiment_name, plan_sources, root_folder_and_override, split_counts
from .records import Leaderboard, Row, Run
from .reference import (
    KAGGLE_BEST_PRIVATE,
    KAGGLE_SOURCE,
    KAGGLE_STRONG_SINGLE_MODEL,
    KAGGLE_TF_BASELINE,
    PAPER_SOURCE,
    PAPER_TOP_K_ERROR_PERCENT,
)
from .reproduce import kaggle, run_leaderboard
from .reuse import (
    IGNORED_KEYS,
    config_differences,
    existing_run,
    flatten_config,
    shown_differences,
)
from .runs import CONFIG_DIR, compose, quote
from .tables import fmt, markdown, write_json

__all__ = [
    "CONFIG_DIR",
    "IGNORED_KEYS",
    "KAGGLE_BEST_PRIVATE",
    "KAGGLE_SOURCE",
    "KAGGLE_STRONG_SINGLE_MODEL",
    "KAGGLE_TF_BASELINE",
    "PAPER_SOURCE",
    "PAPER_TOP_K_ERROR_PERCENT",
    "RESERVED",
    "Leaderboard",
    "Row",
    "Run",
    "compose",
    "config_differences",
    "existing_run",
    "experiment_name",
    "flatten_config",
    "fmt",
    "kaggle",
    "markdown",
    "plan_sources",
    "quote",
    "root_folder_and_override",
    "shown_differences",
    "run_leaderboard",
    "split_counts",
    "write_json",
]
