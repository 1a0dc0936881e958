"""Test-suite root: its folder is on ``sys.path``, so every test imports ``tiny_runs``.

Every test starts from the same random state (:func:`_seeded`): what a test draws from
torch's, NumPy's or Python's global generator does not depend on which tests ran before it
in its process, so the suite passes or fails alike in any order and under any split
across pytest-xdist workers.

Tests marked ``gpu`` need a CUDA device: they are skipped, with the reason, where torch
sees none, so ``python -m pytest -m gpu`` runs exactly them on a GPU machine and reports
them as skipped elsewhere.
"""

from __future__ import annotations

import os
import random
import sys

import pytest


def pytest_configure(config):
    # Under pytest-xdist (pyproject's addopts run the suite on up to 4 workers), each worker
    # is a process whose torch would start a thread per core: N workers on N cores would
    # run N x N threads that wait on each other (the suite took 200 s on 2 cores so, 114 s
    # with one thread a worker). Each worker gets its share of the cores instead, its
    # subprocesses too; an OMP_NUM_THREADS the user set stays.
    workers = getattr(config, "workerinput", {}).get("workercount")
    if workers is None:
        return
    threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    if "torch" in sys.modules:  # already started its threads: tell it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seeded():
    """Seed the global generators before each test. A model built without a seed takes
    its initial weights from torch's global generator, whose state otherwise depends on
    the tests before it in the worker: a tolerance that holds for most initialisations
    then failed or passed with the order (bf16 autocast against fp32 missed its bound for
    about 1 initialisation in 15)."""
    random.seed(0)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(0)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(0)


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
