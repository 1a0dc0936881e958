"""A tiny trained layout model, shared by the featurize tests that score."""

from pathlib import Path

import pytest

import tpulearn

CONFIG_DIR = Path(tpulearn.__file__).parent / "configs"


@pytest.fixture(scope="session")
def layout_checkpoint(tmp_path_factory) -> Path:
    """A layout SAGE checkpoint from a 2-step run on the bundled sample."""
    from hydra import compose, initialize_config_dir

    from tpulearn.training import train

    out = tmp_path_factory.mktemp("layout_run")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"out_dir={out}",
                "trainer.max_steps=2",
                "trainer.val_every=2",
                "trainer.configs_per_graph=8",
                "trainer.progress=false",
                "data.eval_chunk=512",
                "model.hidden_channels=8",
                "model.num_layers=1",
                "model.opcode_dim=4",
            ],
        )
    return Path(train(cfg)["checkpoints"]["best"])
