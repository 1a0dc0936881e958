"""A tiny trained layout model, shared by the featurize tests that score."""

from pathlib import Path

import pytest
from tiny_runs import compose_config, tiny_overrides


@pytest.fixture(scope="session")
def layout_checkpoint(tmp_path_factory) -> Path:
    """A layout SAGE checkpoint from a 2-step run on the bundled sample."""
    from tpulearn.training import train

    out = tmp_path_factory.mktemp("layout_run")
    cfg = compose_config(overrides=tiny_overrides(out))
    return Path(train(cfg)["checkpoints"]["best"])
