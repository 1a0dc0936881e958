"""Test-suite root: its folder is on ``sys.path``, so every test imports ``tiny_runs``.

Tests marked ``gpu`` need a CUDA device: they are skipped, with the reason, where torch
sees none, so ``python -m pytest -m gpu`` runs exactly them on a GPU machine and reports
them as skipped elsewhere.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu:
        return
    # Imported only when gpu tests were collected: a bare collection stays torch-free.
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in gpu:
        item.add_marker(skip)
