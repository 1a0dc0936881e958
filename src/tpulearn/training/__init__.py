"""Training and evaluation: the loop, checkpoints, scoring, and the config-driven runs."""

from ..data import CollectionData  # noqa: F401  (old checkpoints' data configs name it here)
from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .scoring import GraphScores, evaluate_scores, score_dataset
from .trainer import Trainer


def train(cfg):
    """Train from a composed config (see :func:`tpulearn.training.run.train`)."""
    from .run import train as _train

    return _train(cfg)


def evaluate(cfg):
    """Evaluate a checkpoint from a composed config (see :func:`tpulearn.training.run.evaluate`)."""
    from .run import evaluate as _evaluate

    return _evaluate(cfg)


def load_model(path, device="cpu"):
    """``(model, config, normalizer)`` from a checkpoint (see
    :func:`tpulearn.training.run.load_model`)."""
    from .run import load_model as _load_model

    return _load_model(path, device)


__all__ = [
    "CheckpointMismatchError",
    "GraphScores",
    "Trainer",
    "evaluate",
    "evaluate_scores",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
    "score_dataset",
    "train",
]
