"""A hand-built layout graph shared by tests of models and data transforms."""

import torch

from tpulearn.data import TpuGraphData


def chain_graph(num_configs: int = 4, seed: int = 0) -> TpuGraphData:
    """7 nodes, a chain 0 <- 1 <- ... <- 6 with a branch 6 -> 2; nodes 2 and 5 configurable,
    3 layouts each (configs repeat layouts)."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[1, 0], [2, 1], [3, 2], [4, 3], [5, 4], [6, 5], [6, 2]]).T
    return TpuGraphData(
        node_feat=torch.randn(7, 140, generator=g),
        node_opcode=torch.randint(1, 100, (7,), generator=g),
        edge_index=edges,
        config_runtime=torch.randint(1, 1000, (num_configs,), generator=g),
        config_index=torch.arange(num_configs),
        node_config_ids=torch.tensor([2, 5]),
        node_config_feat=torch.randint(-1, 2, (num_configs, 2, 18), generator=g).float(),
        num_nodes=7,
    )


# Every per-config path of a layout model: distinct states (default), per-config copies,
# the PyG layers on C copies of the edges, no pruning.
PER_CONFIG_PATHS = ({}, {"distinct_states": False}, {"sparse_aggregation": False}, {"prune": False})


def scores_on_every_path(data, **options):
    """A SAGE 16-wide layout model with ``options`` on each per-config path, the same
    weights on all: (models, their eval scores of ``data``)."""
    from tpulearn.models import SAGE

    torch.manual_seed(0)
    reference = SAGE("layout", hidden_channels=16, **options)
    models, outs = [], []
    for kw in PER_CONFIG_PATHS:
        model = SAGE("layout", hidden_channels=16, **options, **kw)
        model.load_state_dict(reference.state_dict())
        models.append(model)
        outs.append(model.eval()(data))
    return models, outs


def check_appended_option(data, option: str, width: int, config_chunk: int, **options):
    """A config-encoder option that appends ``width`` exact columns to the layout rows
    (``option=True`` with ``options``): the same scores of ``data`` on every per-config
    path and in chunks of ``config_chunk`` configs, ``width`` more encoder inputs than
    without it, and its name in the model's repr."""
    from tpulearn.models import SAGE

    (reference, *_), outs = scores_on_every_path(data, **{**options, option: True})
    outs.append(reference.eval()(data, config_chunk=config_chunk))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0])
    plain = SAGE("layout", hidden_channels=16, **{**options, option: False})
    extra = reference.config_encoder.lin.in_features - plain.config_encoder.lin.in_features
    assert extra == width
    assert option in repr(reference) and option not in repr(plain)


def check_missing_field_and_tile(data, option: str, key: str):
    """A layout model with ``option`` on names ``key`` when ``data`` lacks it; a tile
    model warns that the option does nothing and turns it off."""
    import pytest

    from tpulearn.models import SAGE

    del data[key]
    with pytest.raises(ValueError, match=f"{option} needs the data's {key}"):
        SAGE("layout", hidden_channels=8, **{option: True})(data)
    with pytest.warns(UserWarning, match=option):
        model = SAGE("tile", hidden_channels=8, **{option: True})
    assert not getattr(model.config_encoder, option)
