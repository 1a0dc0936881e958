"""Fixtures of the segment tests: the bundled unet3d layout graph, one thread per test.

The helpers the tests call directly (``tiny_graph``, ``small``) are in
:mod:`segment_inputs`.
"""

import pytest
import torch

from tpulearn.data import LayoutDataset, UniformSampler, sample_root


@pytest.fixture(scope="module")
def unet3d():
    ds = LayoutDataset(sample_root(), "xla", "default", "train", sampler=UniformSampler(8))
    ds.node_normalizer = ds.fit_normalizer(log=True)
    return ds, ds[0]


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and spinning OpenMP workers on a busy 2-core
    # machine slow every small op down by orders of magnitude.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
