"""Featurized records go wherever released files go: datasets, every model, the predict API."""

import numpy as np
import pytest
import torch
from featurize_inputs import LAYOUT_NPZ, LAYOUT_PB, TILE_PB

from tpulearn.data import LayoutDataset, TileDataset
from tpulearn.data.sampling import AllConfigsSampler
from tpulearn.featurize import featurize, write_npz
from tpulearn.models import GAT, GCN, GIN, MLP, SAGE, ResGCN


@pytest.fixture(scope="module")
def layout_file(tmp_path_factory):
    return write_npz(featurize(LAYOUT_PB), tmp_path_factory.mktemp("pb") / "unet.npz")


@pytest.mark.parametrize("model_cls", [SAGE, GCN, GAT, GIN, ResGCN, MLP])
def test_every_model_scores_a_featurized_layout_graph(model_cls, layout_file):
    dataset = LayoutDataset(
        layout_file.parent,
        "xla",
        "default",
        "test",
        sampler=AllConfigsSampler(),
        files=[layout_file],
    )
    dataset.node_normalizer = dataset.fit_normalizer()
    data = next(dataset.chunks(0, 16))
    torch.manual_seed(0)
    model = model_cls("layout", hidden_channels=8, num_layers=1, opcode_dim=4).eval()
    with torch.no_grad():
        scores = model(data)
    assert scores.shape == (16,) and torch.isfinite(scores).all()


@pytest.mark.parametrize("model_cls", [SAGE, GAT])
def test_models_score_featurized_tile_kernels(model_cls, tmp_path):
    files = [write_npz(k, tmp_path / f"{k.stem}.npz") for k in featurize(TILE_PB)]
    dataset = TileDataset(tmp_path, "test", sampler=AllConfigsSampler(), files=files)
    model = model_cls("tile", hidden_channels=8, num_layers=1, opcode_dim=4).eval()
    with torch.no_grad():
        for i in range(len(dataset)):
            data = next(dataset.chunks(i, 64))
            assert torch.isfinite(model(data)).all()


def test_predictor_scores_the_featurized_runs_as_the_released_rows(layout_checkpoint):
    """Bit-identical inputs: each run scores as the released row it matches."""
    from tpulearn.predict import Predictor

    predictor = Predictor.from_checkpoint(layout_checkpoint)
    record = featurize(LAYOUT_PB)
    ours = predictor.score_record(record)
    theirs = predictor.score_file(LAYOUT_NPZ)
    released = np.load(LAYOUT_NPZ)
    feat, runtime = released["node_config_feat"], released["config_runtime"]
    rows = [
        int(np.flatnonzero((feat == c).all(axis=(1, 2)) & (runtime == ns))[0])
        for c, ns in zip(record.node_config_feat, record.config_runtime, strict=True)
    ]
    assert ours.shape == (112,)
    assert np.allclose(ours, theirs[rows], rtol=1e-5, atol=1e-6)


def test_a_record_scores_in_memory_exactly_as_its_npz_file(layout_checkpoint, tmp_path):
    """score_file is read + score_record: no file round trip changes a bit."""
    from tpulearn.predict import Predictor

    predictor = Predictor.from_checkpoint(layout_checkpoint, chunk=50)  # several chunks
    record = featurize(LAYOUT_PB)
    on_disk = predictor.score_file(write_npz(record, tmp_path / "unet.npz"))
    assert np.array_equal(predictor.score_record(record), on_disk)
    with pytest.raises(TypeError, match="layout predictor scores LayoutRecords, got TileRecord"):
        predictor.score_record(featurize(TILE_PB)[0])
