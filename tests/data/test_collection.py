"""CollectionData built from arguments and from the data configs."""

import warnings

import pytest
from hydra.utils import instantiate
from tiny_runs import CONFIG_DIR, compose_config

from tpulearn.data import CollectionData, FastBiasedSampler, UniformSampler, sample_root
from tpulearn.data.collection import data_root_folder

LAYOUT = "layout:xla:default"


def test_sampler_partial_from_config_gets_configs_per_graph():
    cfg = compose_config(overrides=["data.sampler.fast_share=0.3", "data.configs_per_graph=7"])
    sampler = instantiate(cfg.data).sampler(cfg.data.configs_per_graph)
    assert isinstance(sampler, FastBiasedSampler)
    assert (sampler.num_configs, sampler.fast_share, sampler.fast_quantile) == (7, 0.3, 0.1)
    cfg = compose_config(overrides=["data/sampler=uniform"])
    assert isinstance(instantiate(cfg.data).sampler(4), UniformSampler)


def test_sampler_class_and_old_names():
    assert CollectionData(LAYOUT, "layout").sampler is FastBiasedSampler
    # Configs stored in checkpoints before samplers were config nodes name them, and
    # CollectionData under tpulearn.training.
    import tpulearn.training

    assert tpulearn.training.CollectionData is CollectionData
    assert CollectionData(LAYOUT, "layout", sampler="uniform").sampler is UniformSampler
    with pytest.raises(ValueError, match="data.sampler must be one of"):
        CollectionData(LAYOUT, "layout", sampler="fast")
    with pytest.raises(TypeError, match="data.sampler must build a ConfigSampler"):
        CollectionData(LAYOUT, "layout", sampler=3)


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="data.valid_indices must be one of"):
        CollectionData(LAYOUT, "layout", valid_indices="some")
    with pytest.raises(ValueError, match="data.normalize must be one of"):
        CollectionData(LAYOUT, "layout", normalize="std")
    with pytest.raises(ValueError, match="does not match collection"):
        CollectionData(LAYOUT, "tile")


def test_ineffective_options_warn_only_when_changed():
    with pytest.warns(UserWarning, match="data.log_features=False has no effect"):
        CollectionData(LAYOUT, "layout", normalize=None, log_features=False)
    with pytest.warns(UserWarning, match="data.cache_dir='/tmp' has no effect"):
        CollectionData("tile:xla", "tile", cache_dir="/tmp")
    with pytest.warns(UserWarning, match="data.tile_layout=True has no effect"):
        CollectionData(LAYOUT, "layout", tile_layout=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CollectionData(LAYOUT, "layout", normalize=None)  # log_features left at its default
        CollectionData("tile:xla", "tile")
        CollectionData(LAYOUT, "layout", cache_dir="/tmp")


@pytest.mark.parametrize(
    "choice",
    [f"data={p.stem}" for p in sorted((CONFIG_DIR / "data").glob("*.yaml"))]
    + [f"experiment={p.stem}" for p in sorted((CONFIG_DIR / "experiment").glob("*.yaml"))],
)
def test_shipped_configs_build_without_warnings(choice):
    cfg = compose_config(overrides=[choice, "data.root=sample"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = instantiate(cfg.data)
    assert data.root == sample_root() and data.sampler(3).num_configs == 3


def test_data_root_folder():
    assert data_root_folder(None) == data_root_folder("sample") == sample_root()
    with pytest.raises(FileNotFoundError, match="no data root given"):
        data_root_folder("")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data_root_folder("/nonexistent/tpugraphs")
