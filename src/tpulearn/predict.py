"""Score the configs of any TpuGraphs file with a trained checkpoint (notebook use).

from tpulearn.predict import Predictor
predictor = Predictor.from_checkpoint("outputs/.../checkpoints/best.pt")
scores = predictor.score_file("graph.npz")        # [num_configs], lower = faster
order = predictor.rank_file("graph.npz")          # config indices, fastest first
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import FeatureNormalizer, read_layout, read_tile
from .data.datasets import LayoutDataset, TileDataset
from .data.sampling import AllConfigsSampler


class Predictor:
    """A trained model with the feature statistics it was trained with.

    Args:
        model: a config-scoring model (``model(data) -> [C]``).
        task: ``"tile"`` or ``"layout"``.
        normalizer: the node-feature normaliser of its training run (or None).
        device: where to run.
        chunk: configs scored per forward pass.
        config_normalizer: the tile config-feature normaliser of its run (or None).
    """

    def __init__(
        self,
        model,
        task: str,
        normalizer: FeatureNormalizer | None,
        device="cpu",
        chunk=256,
        config_normalizer: FeatureNormalizer | None = None,
    ):
        self.model = model.to(device).eval()
        self.task, self.normalizer, self.device, self.chunk = task, normalizer, device, chunk
        self.config_normalizer = config_normalizer

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", chunk: int = 256) -> Predictor:
        from .evaluation import load_model

        model, config, features = load_model(path, device)
        load = FeatureNormalizer.from_state_dict
        normalizer = load(features["normalizer"]) if features["normalizer"] else None
        config_norm = features["config_normalizer"]
        config_normalizer = load(config_norm) if config_norm else None
        return cls(model, config.data.task, normalizer, device, chunk, config_normalizer)

    @torch.no_grad()
    def score_file(self, path: str | Path) -> np.ndarray:
        """Scores [num_configs] of every config in the file, in file order."""
        path = Path(path)
        read = read_tile if self.task == "tile" else read_layout
        read(path)  # validate first: a clear error names the file and key
        dataset = _single_file_dataset(self.task, path, self.normalizer)
        if self.task == "tile":
            dataset.config_normalizer = self.config_normalizer
        parts = [
            self.model(data.to(self.device)).float().cpu().numpy()
            for data in dataset.chunks(0, self.chunk)
        ]
        return np.concatenate(parts)

    def rank_file(self, path: str | Path) -> np.ndarray:
        """Config indices of the file, predicted fastest first."""
        return np.argsort(self.score_file(path), kind="stable")


def _single_file_dataset(task: str, path: Path, normalizer):
    """A dataset over one explicit file (the folder and split names are then unused)."""
    common = dict(sampler=AllConfigsSampler(), normalizer=normalizer, files=[path], min_configs=1)
    if task == "tile":
        return TileDataset(path.parent, "test", **common)
    return LayoutDataset(path.parent, "xla", "default", "test", **common)
