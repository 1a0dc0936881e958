"""Training: the loop, checkpoints, scoring a dataset, and the config-driven run.

Evaluating a checkpoint on a split (metrics files, submissions, figures) sits above this
package, in :mod:`tpulearn.evaluation`.
"""

from ..data import CollectionData  # noqa: F401  (old checkpoints' data configs name it here)
from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .scoring import GraphScores, combine_graphs, evaluate_scores, score_dataset
from .step import step_runner, train_step
from .trainer import Trainer


def train(cfg, on_start=None):
    """Train from a composed config (see :func:`tpulearn.training.run.train`)."""
    from .run import train as _train

    return _train(cfg, on_start)


__all__ = [
    "CheckpointMismatchError",
    "GraphScores",
    "Trainer",
    "combine_graphs",
    "evaluate_scores",
    "load_checkpoint",
    "save_checkpoint",
    "score_dataset",
    "step_runner",
    "train",
    "train_step",
]
