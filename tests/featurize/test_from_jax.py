"""A user's jitted JAX function: featurized at each stage and its layouts scored."""

import sys

import numpy as np
import pytest

from tpulearn.data import read_layout
from tpulearn.featurize import OPCODE_IDS, write_npz

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from tpulearn.featurize.from_jax import (  # noqa: E402
    STAGES,
    candidate_configs,
    config_tensor_ranks,
    featurize_jax,
    hlo_module,
    rank_layouts,
)


def block(x, kernel, w):
    y = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    y = jax.nn.relu(y).reshape(y.shape[0], -1)
    return jnp.tanh(y @ w)


ARGS = (
    jnp.ones((2, 8, 8, 3), jnp.bfloat16),
    jnp.ones((3, 3, 3, 4), jnp.bfloat16),
    jnp.ones((256, 10), jnp.bfloat16),
)
CONFIGURABLE = {OPCODE_IDS[name] for name in ("convolution", "dot", "reshape")}


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_gives_a_valid_layout_file(stage, tmp_path):
    record = featurize_jax(jax.jit(block), *ARGS, stage=stage)
    back = read_layout(write_npz(record, tmp_path / "block.npz"))
    assert back.num_nodes == record.num_nodes > 5
    assert set(back.node_opcode[back.node_config_ids].tolist()) <= CONFIGURABLE
    assert OPCODE_IDS["convolution"] in back.node_opcode[back.node_config_ids]
    assert back.config_runtime.tolist() == [0] and not back.labelled
    if stage == "before_optimizations":  # no fusion yet: all three ops are configurable
        kinds = sorted(back.node_opcode[back.node_config_ids].tolist())
        assert kinds == sorted([OPCODE_IDS[n] for n in ("convolution", "reshape", "dot")])
        bf16 = back.node_feat[back.node_config_ids, 2 + 13]  # the bf16 one-hot column
        assert (bf16 == 1).all()


def test_layouts_after_layout_assignment_are_in_the_features():
    module = hlo_module(block, *ARGS, stage="after_layout_assignment")  # a plain function
    conv = next(
        inst
        for comp in module["computations"]
        for inst in comp["instructions"]
        if inst["opcode"] == "convolution"
    )
    rank = len(conv["shape"]["dimensions"])
    assert sorted(conv["shape"]["layout"]["minor_to_major"]) == list(range(rank))


def test_candidate_configs():
    ranks = [[4, 4, 4], [2, 4], [2, 2, 2], [5, 5, 5]]
    configs = candidate_configs(ranks, num_configs=40, seed=1)
    assert configs.shape == (40, 4, 18)
    assert (configs[0] == -1).all()  # the compiler's choice
    assert configs[1, 0, :4].tolist() == [3, 2, 1, 0] and configs[1, 3, :6].tolist() == [
        4,
        3,
        2,
        1,
        0,
        -1,
    ]
    assert len({c.tobytes() for c in configs}) == 40  # distinct
    for config in configs[2:]:
        for node, node_ranks in enumerate(ranks):
            for t, rank in enumerate(node_ranks):
                order = config[node, 6 * t : 6 * t + 6]
                order = order[order >= 0].astype(int).tolist()
                if rank <= 4:
                    assert sorted(order) == list(range(rank))
                else:  # rank 5 and 6: the two minor-most dimensions, or the full default
                    assert len(order) in (2, 5) and len(set(order)) == len(order)
            assert (config[node, 6 * len(node_ranks) :] == -1).all()


def test_rank_layouts_with_a_trained_checkpoint(layout_checkpoint, tmp_path):
    from tpulearn.predict import Predictor

    predictor = Predictor.from_checkpoint(layout_checkpoint)
    ranked = rank_layouts(predictor, jax.jit(block), *ARGS, num_configs=12, seed=0)
    assert ranked.scores.shape == (12,) and np.isfinite(ranked.scores).all()
    assert sorted(ranked.ranking.tolist()) == list(range(12))
    assert ranked.scores[ranked.ranking[0]] == ranked.scores.min()
    assert len(ranked.node_names) == 3 and ranked.node_names[0].startswith("conv")
    module = hlo_module(jax.jit(block), *ARGS)
    assert config_tensor_ranks(module) == [[4, 4, 4], [2, 4], [2, 2, 2]]
    # The same scores as scoring the written file with the predict API.
    path = write_npz(ranked.record, tmp_path / "block.npz")
    assert np.allclose(predictor.score_file(path), ranked.scores, atol=1e-6)
    text = ranked.describe(2)
    assert text.startswith("#1: ") and "conv" in text


def test_missing_jax_names_the_extra(monkeypatch):
    from tpulearn.featurize import from_jax

    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ImportError, match=r"pip install tpulearn\[jax\]"):
        from_jax.hlo_module(block, *ARGS)


def test_a_module_without_configurable_nodes_cannot_be_ranked(layout_checkpoint):
    with pytest.raises(ValueError, match="no configurable node"):
        rank_layouts(layout_checkpoint, jax.jit(lambda x: jnp.sin(x) * 2), jnp.ones(4))
