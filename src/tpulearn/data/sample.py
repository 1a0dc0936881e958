"""The real TpuGraphs files bundled with tpulearn (TpuGraphs, Google, CC BY 4.0).

Eleven npz files, one or two per collection and split, in the dataset's own folder
layout, plus the official fixed validation indices. They are the default dataset of
``python train.py`` and of the tests, so that a fresh install works without a download.
See ``_sample/tpugraphs/README.md`` for the file list and the attribution.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .schema import parse_collection

_SAMPLE = Path(__file__).resolve().parent / "_sample" / "tpugraphs"


def sample_root() -> Path:
    """Root of the bundled sample, laid out as the released dataset (``<root>/npz/...``)."""
    return _SAMPLE


def root_path(root: str | os.PathLike | None) -> Path:
    """A data root as given to ``data.root`` or a script's ``--root``: ``None`` or
    ``"sample"`` is the bundled sample, anything else that folder (``~`` expanded)."""
    if root is None or str(root) == "sample":
        return _SAMPLE
    return Path(os.path.expanduser(str(root)))


def is_sample_root(root: str | os.PathLike) -> bool:
    """Whether a data root is the bundled sample's folder, however it is spelt."""
    return Path(os.path.expanduser(str(root))).resolve() == _SAMPLE


def eval_indices_path(collection: str, root: str | Path | None = None) -> Path:
    """Path of the official fixed validation indices of a layout collection.

    Args:
        collection: ``"layout:<xla|nlp>:<default|random>"``.
        root: a data root holding ``eval_indices/``; the bundled sample by default.
    """
    task, source, search = parse_collection(collection)
    if task != "layout":
        raise ValueError(
            f"official validation indices exist for layout collections only, not {collection!r}"
        )
    return Path(root or _SAMPLE) / "eval_indices" / f"{source}_{search}.json"


def load_eval_indices(collection: str, root: str | Path | None = None) -> dict[str, list[int]]:
    """The official fixed 1000-config validation subset of each valid graph.

    Indices repeat when a graph has fewer than 1000 configs, as in the official evaluation.

    Returns:
        Graph name (file stem) -> list of config indices.
    """
    path = eval_indices_path(collection, root)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: official validation indices not found; they ship with tpulearn's "
            f"bundled sample ({_SAMPLE / 'eval_indices'}) and the TpuGraphs repository"
        )
    with open(path) as fp:
        return {str(k): [int(i) for i in v] for k, v in json.load(fp).items()}
