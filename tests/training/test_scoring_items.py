"""Scoring in items larger than a chunk: a model whose configs score independently takes
items of up to ``ITEM_BYTES`` of config features and passes them ``chunk`` configs at a
time, which gives the scores of items of ``chunk`` configs exactly, with its config-free
pass once per item; a model with config attention keeps items of ``chunk`` configs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from tpulearn.data import (
    ITEM_BYTES,
    AllConfigsSampler,
    LayoutDataset,
    item_configs,
    read_layout,
    sample_root,
)
from tpulearn.models import SAGE
from tpulearn.predict import Predictor
from tpulearn.segments import SegmentModel
from tpulearn.training import score_dataset

ROOT = sample_root()
VALID = ROOT / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"  # 1,965 configs


def test_item_configs_are_whole_chunks_within_the_budget():
    feat = np.zeros((1000, 10, 18), np.float32)  # 720 bytes a config
    assert item_configs(feat, 64) == 64
    assert item_configs(feat, 64, None) == 64
    assert item_configs(feat, 64, 720 * 64 * 3) == 192
    assert item_configs(feat, 64, 720 * 64 * 3 - 1) == 128
    assert item_configs(feat, 64, 1) == 64  # at least one chunk
    # No config features at all (a graph without configurable nodes): one item.
    assert item_configs(np.zeros((5, 0, 18), np.float32), 2, 100) == 100
    assert ITEM_BYTES >= 1 << 20


class Recorder(torch.nn.Module):
    """``model`` with each call's config count and keyword arguments recorded; with
    ``hide``, it does not say whether its configs score independently."""

    def __init__(self, model, hide: bool = False):
        super().__init__()
        self.model, self.calls = model, []
        if not hide:
            self.configs_independent = model.configs_independent

    def forward(self, data, **kwargs):
        self.calls.append((data.config_index.numel(), kwargs))
        return self.model(data, **kwargs)


def layout_model(**options):
    torch.manual_seed(0)
    return SAGE(
        "layout",
        hidden_channels=8,
        num_layers=2,
        layout_shape=True,
        layout_agreement=True,
        layout_tiling=True,
        **options,
    ).eval()


@pytest.mark.parametrize("wrap", [False, True], ids=["whole graph", "segments"])
def test_score_dataset_gives_the_scores_of_chunk_items_in_fewer_calls(wrap):
    model = layout_model()
    if wrap:
        model = SegmentModel(model, max_segment_nodes=1000).eval()
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    big, small = Recorder(model), Recorder(model, hide=True)
    (fast,) = score_dataset(big, ds, "cpu", 100)
    (slow,) = score_dataset(small, ds, "cpu", 100)
    assert big.configs_independent and not hasattr(small, "configs_independent")
    np.testing.assert_array_equal(fast.scores, slow.scores)
    np.testing.assert_array_equal(fast.config_index, slow.config_index)
    assert fast.config_index.tolist() == list(range(1965))
    # 1,965 configs of this graph's config features fit one item; each call of the
    # other model is one chunk.
    assert big.calls == [(1965, {"config_chunk": 100})]
    assert [n for n, _ in small.calls] == [100] * 19 + [65]
    assert all(kwargs == {} for _, kwargs in small.calls)


def test_items_stay_within_the_byte_budget(monkeypatch):
    import tpulearn.training.scoring as scoring

    feat = read_layout(VALID).node_config_feat
    row = feat[0].nbytes
    monkeypatch.setattr(scoring, "ITEM_BYTES", row * 250)  # two chunks of 100 fit
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    model = Recorder(layout_model())
    (graph,) = score_dataset(model, ds, "cpu", 100)
    assert [n for n, _ in model.calls] == [200] * 9 + [165]
    (alone,) = score_dataset(Recorder(layout_model(), hide=True), ds, "cpu", 100)
    np.testing.assert_array_equal(graph.scores, alone.scores)


def test_config_attention_scores_items_of_one_chunk():
    # Attention mixes the configs of a call: items stay `chunk` configs, as they were.
    model = Recorder(layout_model(config_attention=True, attention_heads=2))
    assert model.configs_independent is False
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    next(score_dataset(model, ds, "cpu", 500))
    assert model.calls == [(500, {}), (500, {}), (500, {}), (465, {})]


def test_predictor_scores_as_items_of_one_chunk():
    model = layout_model()
    items = Predictor(Recorder(model), "layout", None, chunk=300)
    chunks = Predictor(Recorder(model, hide=True), "layout", None, chunk=300)
    scores = items.score_file(VALID)
    np.testing.assert_array_equal(scores, chunks.score_file(VALID))
    assert scores.shape == (1965,)
    assert items.model.calls == [(1965, {"config_chunk": 300})]
    assert len(chunks.model.calls) == 7


@pytest.mark.parametrize("attention", [True, False], ids=["config attention", "plain"])
def test_a_checkpoint_predictor_scores_as_evaluate_py_by_default(tmp_path, attention, monkeypatch):
    # A model with config attention scores each config among those of its chunk: the
    # predictor takes the run's data.eval_chunk, so a test file scores as evaluate.py
    # scores the test split (every config in file order), and another chunk differs.
    from tiny_runs import compose_config, tiny_overrides

    from tpulearn.evaluation import _load_member
    from tpulearn.training import train

    overrides = [*tiny_overrides(tmp_path / "run"), "data.eval_chunk=100"]
    if attention:
        overrides += ["model.config_attention=true", "model.attention_heads=2"]
    ckpt = train(compose_config(overrides=overrides))["checkpoints"]["best"]
    member = _load_member(Path(ckpt), "cpu", {})
    (graph,) = score_dataset(member.model, member.data.eval_set("test"), "cpu", 100)
    test_file = next((ROOT / "npz/layout/xla/default/test").glob("*.npz"))
    assert graph.stem == test_file.stem and graph.config_index.tolist() == list(range(1000))
    predictor = Predictor.from_checkpoint(ckpt)
    assert predictor.chunk == 100
    np.testing.assert_array_equal(predictor.score_file(test_file), graph.scores)
    if attention:
        other = Predictor.from_checkpoint(ckpt, chunk=64).score_file(test_file)
        assert not np.array_equal(other, graph.scores)
        return
    # The cache training and evaluate.py read from TPULEARN_CACHE, the predictor too.
    cache = tmp_path / "cache"
    monkeypatch.setenv("TPULEARN_CACHE", str(cache))
    cached = Predictor.from_checkpoint(ckpt)
    np.testing.assert_array_equal(cached.score_file(test_file), graph.scores)
    assert (cache / f"{test_file.stem}.node_config_feat.npy").is_file()
    assert Predictor.from_checkpoint(ckpt, cache_dir=False).cache_dir is None
    assert compose_config("eval", [f"ckpt={ckpt}"]).data.cache_dir == str(cache)


def test_progress_counts_the_configs_of_each_graph(capsys):
    ds = LayoutDataset(ROOT, "xla", "default", "valid", sampler=AllConfigsSampler())
    (graph,) = score_dataset(layout_model(), ds, "cpu", 500, progress=True)
    err = capsys.readouterr().err
    # The graphs' bar and, under it, one over the 1,965 configs of the graph.
    assert "scoring" in err and "graph" in err
    assert "unet_3d.4x4.bf16" in err and "0/1965" in err and "config" in err
    assert graph.scores.shape == (1965,)
    list(score_dataset(layout_model(), ds, "cpu", 500))
    assert capsys.readouterr().err == ""


def test_predictor_reads_config_features_from_a_cache_dir(tmp_path):
    from tpulearn.predict import Ensemble

    model = layout_model()
    plain = Predictor(model, "layout", None).score_file(VALID)
    cached = Predictor(model, "layout", None, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached.score_file(VALID), plain)
    (copy,) = tmp_path.glob("*.node_config_feat.npy")
    assert copy.name.startswith(VALID.stem)
    np.testing.assert_array_equal(cached.score_file(VALID), plain)  # from the filled cache
    copy.unlink()
    ensemble = Ensemble([cached, cached])  # reads the file once, through the cache
    np.testing.assert_array_equal(ensemble.rank_file(VALID), np.argsort(plain, kind="stable"))
    assert copy.exists()
    with pytest.raises(ValueError, match=r"^cache_dir='.*npz' is a file: expected a folder"):
        Predictor(model, "layout", None, cache_dir=VALID)
