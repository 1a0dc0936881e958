"""Checkpoints of older versions load: their stored configs are moved to the current keys."""

import warnings

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tiny_runs import compose_config, tiny_overrides

from tpulearn.data import read_layout, sample_root
from tpulearn.data.items import layout_item
from tpulearn.evaluation import load_model
from tpulearn.graph import config_context
from tpulearn.predict import Predictor
from tpulearn.training import save_checkpoint
from tpulearn.training.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    upgrade_config,
)

VALID = sample_root() / "npz/layout/xla/default/valid/unet_3d.4x4.bf16.npz"


def test_model_context_hops_moves_to_the_data_config():
    old = {"model": {"_target_": "tpulearn.models.SAGE", "context_hops": 1}, "data": {"a": 1}}
    new = upgrade_config(old)
    assert new == {
        "model": {"_target_": "tpulearn.models.SAGE"},
        "data": {"a": 1, "context_hops": 1},
    }
    assert old["model"]["context_hops"] == 1  # the stored config is left as it was
    # The default (null) just goes: the data config's default is the same.
    assert upgrade_config({"model": {"context_hops": None}, "data": {}}) == {
        "model": {},
        "data": {},
    }
    current = {"model": {"hidden_channels": 8}, "data": {"context_hops": 2}}
    assert upgrade_config(current) == current


def test_a_segment_models_context_hops_moves_with_a_warning():
    old = {"model": {"max_segment_nodes": 9, "model": {"context_hops": 2}}, "data": {}}
    with pytest.warns(UserWarning, match="model.model.context_hops=2 is now data.context_hops"):
        new = upgrade_config(old)
    assert new == {"model": {"max_segment_nodes": 9, "model": {}}, "data": {"context_hops": 2}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        upgrade_config({"model": {"model": {"context_hops": None}}, "data": {}})


def test_a_model_option_added_since_gets_the_value_that_trains_as_before():
    old = {"model": {"attn_heads": 1, "readout": "sum"}, "data": {}}
    new = upgrade_config(old)
    added = {"attn_gate": "state", "post_layers": 0}
    assert new == {"model": {"attn_heads": 1, "readout": "sum", **added}, "data": {}}
    assert "attn_gate" not in old["model"]  # the stored config is left as it was
    # A segment model's wrapped model; a value the run set stays.
    segment = {"model": {"max_segment_nodes": 9, "model": {"attn_heads": 2}}, "data": {}}
    assert upgrade_config(segment)["model"] == {
        "max_segment_nodes": 9,
        "model": {"attn_heads": 2, **added},
    }
    chosen = {"model": {"attn_heads": 1, "attn_gate": "config_free", "post_layers": 1}, "data": {}}
    assert upgrade_config(chosen) == chosen


def test_a_trainer_option_added_since_gets_the_value_that_trains_as_before():
    old = {"model": {}, "trainer": {"seed": 3}}
    upgraded = {"seed": 3, "union_prob": 0.0, "min_epoch_graphs": None}
    assert upgrade_config(old) == {"model": {}, "trainer": upgraded}
    assert "union_prob" not in old["trainer"]
    chosen = {"model": {}, "trainer": {"seed": 3, "union_prob": 0.5, "min_epoch_graphs": 8}}
    assert upgrade_config(chosen) == chosen


def test_a_checkpoint_from_before_an_added_model_option_loads_for_the_current_config(tmp_path):
    cfg = compose_config(overrides=tiny_overrides(tmp_path))
    config = OmegaConf.to_container(cfg, resolve=True)
    current_model = dict(config["model"])
    assert current_model["attn_gate"] == "state" and current_model["post_layers"] == 0
    del config["model"]["attn_gate"], config["model"]["post_layers"]  # as such a run stored
    torch.manual_seed(0)
    model = instantiate(current_model).eval()
    path = save_checkpoint(
        tmp_path / "old.pt",
        {"model": model.state_dict(), "config": config, "normalizer": None},
    )
    state = load_checkpoint(path, model_config=current_model)
    assert state["config"]["model"]["attn_gate"] == "state"
    assert state["config"]["model"]["post_layers"] == 0
    with pytest.raises(CheckpointMismatchError, match="attn_gate: checkpoint 'state'"):
        load_checkpoint(path, model_config={**current_model, "attn_gate": "config_free"})


def test_an_old_checkpoint_with_model_context_hops_scores_as_it_did(tmp_path):
    cfg = compose_config(overrides=tiny_overrides(tmp_path))
    config = OmegaConf.to_container(cfg, resolve=True)
    del config["data"]["context_hops"]
    torch.manual_seed(0)
    model = instantiate(config["model"]).eval()
    config["model"]["context_hops"] = 1  # the config such a run stored
    path = save_checkpoint(
        tmp_path / "old.pt",
        {"model": model.state_dict(), "config": config, "normalizer": None},
    )

    loaded, stored, _ = load_model(path)
    assert "context_hops" not in stored.model and stored.data.context_hops == 1
    assert instantiate(stored.data).context_hops == 1
    # What the old model did in its forward: cut each item to the context, then score.
    record = read_layout(VALID)
    rows = np.arange(100, dtype=np.int64)
    with torch.no_grad():
        before = model(config_context(layout_item(record, rows, None), 1)).numpy()
        whole = model(layout_item(record, rows, None)).numpy()
    scores = Predictor.from_checkpoint(path, chunk=100).score_file(VALID)[:100]
    np.testing.assert_array_equal(scores, before)
    assert not np.allclose(scores, whole)
