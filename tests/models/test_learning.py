"""A SAGE model learns to rank the configs of a synthetic layout collection."""

import pytest
import torch

from tpulearn.data import AllConfigsSampler, LayoutDataset, UniformSampler
from tpulearn.data.synthetic import write_layout_collection
from tpulearn.losses import PairwiseHingeLoss
from tpulearn.metrics import Evaluator
from tpulearn.models import MLP, SAGE


def mean_tau(model, dataset) -> float:
    evaluator = Evaluator("layout:xla:random")
    model.eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            data = dataset[i]
            evaluator.add(data.stem, model(data), data.config_runtime)
    model.train()
    return evaluator.compute()["kendall_tau"]


class ConfigBlind(torch.nn.Module):
    """Scores every config of a graph the same: what a model that ignores configs does."""

    def forward(self, data):
        return torch.zeros(data.config_runtime.shape[0])


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_layout_collection(
        root,
        "xla",
        "random",
        num_graphs={"train": 64, "valid": 16},
        nodes=(40, 80),
        configs=(64, 128),
        seed=0,
    )
    return root


def train_and_score(layer, collection):
    torch.manual_seed(0)
    train = LayoutDataset(collection, "xla", "random", "train", sampler=UniformSampler(32))
    train.node_normalizer = train.fit_normalizer(log=True)
    every = dict(sampler=AllConfigsSampler(), node_normalizer=train.node_normalizer)
    train_all = LayoutDataset(collection, "xla", "random", "train", **every)
    valid = LayoutDataset(collection, "xla", "random", "valid", **every)

    model = layer("layout", hidden_channels=64, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = PairwiseHingeLoss(margin=0.1)
    for step in range(1200):
        train.set_epoch(step // len(train))
        data = train[step % len(train)]
        loss = loss_fn(model(data)[None], data.config_runtime[None])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # Seen graphs (all their configs, most never in one sampled batch) and unseen graphs.
    return mean_tau(model, train_all), mean_tau(model, valid), (train_all, valid)


@pytest.mark.slow
def test_sage_ranks_configs_well_above_config_blind_and_structure_blind_models(collection):
    sage_train, sage_valid, (train_all, valid) = train_and_score(SAGE, collection)
    _, mlp_valid = train_and_score(MLP, collection)[:2]
    blind = ConfigBlind()
    assert mean_tau(blind, train_all) == 0.0
    assert mean_tau(blind, valid) == 0.0
    assert sage_train > 0.5
    assert sage_valid > 0.3
    # Message passing is what reads the neighbourhood the synthetic cost depends on.
    assert sage_valid > mlp_valid + 0.1
