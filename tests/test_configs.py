"""The configs mirror the constructors: every node with a ``_target_`` sets only arguments of
its target, and every argument a user may want (a tpulearn target's, all but those listed
in :data:`LEFT_OUT`).

Each YAML under ``configs/`` (but ``hydra/``) is composed the way a user picks it
(``group=name``, or ``experiment=name``), so files added later are checked too, with what
they inherit through their defaults.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import OmegaConf
from tiny_runs import CONFIG_DIR, compose_config

# Keys Hydra's instantiate reads itself.
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}

# Constructor arguments deliberately absent from the YAML files: (target, argument) -> why.
LEFT_OUT = {
    # Given by CollectionData when it builds the training sampler (data.configs_per_graph).
    ("tpulearn.data.FastBiasedSampler", "num_configs"): "data.configs_per_graph",
    ("tpulearn.data.UniformSampler", "num_configs"): "data.configs_per_graph",
    # A PartitionCache object shared between models, built in code (benchmarks, notebooks).
    ("tpulearn.segments.SegmentModel", "cache"): "an object, not a setting",
    # The gst group's GSTSettings, built by train(cfg) from configs/gst/ and handed over.
    ("tpulearn.training.Trainer", "gst"): "the gst config group",
}


def config_files() -> list[str]:
    """Every YAML under configs/ but hydra/ (launcher settings, no targets), relative."""
    files = [p.relative_to(CONFIG_DIR) for p in sorted(CONFIG_DIR.rglob("*.yaml"))]
    return [p.as_posix() for p in files if p.parts[0] != "hydra"]


def compose_file(rel: str):
    """The top-level config as a user gets it with this file picked."""
    path = Path(rel)
    if path.parent == Path("."):
        return compose_config(path.stem)
    group = path.parent.as_posix()
    try:
        return compose_config(overrides=[f"{group}={path.stem}"])
    except ConfigCompositionException:  # a group the default config does not list
        return compose_config(overrides=[f"+{group}={path.stem}"])


def target_nodes(node, where: str = ""):
    """``(dotted path, dict)`` of every node with a ``_target_``, nested ones included."""
    if isinstance(node, dict):
        if "_target_" in node:
            yield where or "<root>", node
        for key, value in node.items():
            yield from target_nodes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from target_nodes(value, f"{where}[{i}]")


def constructor_arguments(target) -> tuple[set[str], bool]:
    """Argument names of ``target``, and whether it takes any keyword (unfollowed **kwargs).

    A class whose ``__init__`` passes ``**kwargs`` on gets the arguments of the first base
    class without ``**kwargs`` (the documented base, e.g. ``ConfigGNN`` for ``GAT``).
    """
    chain = target.__mro__ if inspect.isclass(target) else (target,)
    names: set[str] = set()
    for obj in chain:
        if obj is object:
            break
        params = inspect.signature(obj).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def required_by_user(target) -> set[str]:
    """Arguments a tpulearn target's YAML must set (third-party targets: none)."""
    if not target.__module__.startswith("tpulearn"):
        return set()  # e.g. torch.optim.Adam: the YAML sets what tpulearn's runs change
    names, _ = constructor_arguments(target)
    return names


@pytest.mark.parametrize("rel", config_files())
def test_config_keys_are_constructor_arguments(rel):
    cfg = OmegaConf.to_container(compose_file(rel), resolve=False)
    problems = []
    for where, node in target_nodes(cfg):
        name = node["_target_"]
        target = get_object(name)
        names, any_keyword = constructor_arguments(target)
        keys = set(node) - HYDRA_KEYS
        if not any_keyword:
            problems += [f"{where}.{k}: not an argument of {name}" for k in sorted(keys - names)]
        missing = required_by_user(target) - keys - {a for t, a in LEFT_OUT if t == name}
        problems += [f"{where}: {name} argument {a!r} is not in the YAML" for a in sorted(missing)]
    assert not problems, "\n".join(problems)


def test_every_config_file_is_checked():
    files = config_files()
    assert "data/sampler/fast_biased.yaml" in files and "model/gst_sage.yaml" in files
    # The left-out arguments exist (a renamed argument must not stay allowed silently).
    for target, argument in LEFT_OUT:
        assert argument in constructor_arguments(get_object(target))[0], (target, argument)


def test_gst_sage_wraps_exactly_sage():
    sage = compose_config(overrides=["model=sage"]).model
    gst = compose_config(overrides=["model=gst_sage"]).model
    assert OmegaConf.to_container(gst.model) == OmegaConf.to_container(sage)
    gat = compose_config(overrides=["model=gst_sage", "model@model.model=gat"]).model
    assert gat.model._target_ == "tpulearn.models.GAT" and gat._target_.endswith("SegmentModel")


def test_sampler_group_and_arguments():
    cfg = compose_config(overrides=["data.sampler.fast_share=0.3"])
    assert cfg.data.sampler._target_ == "tpulearn.data.FastBiasedSampler"
    assert cfg.data.sampler.fast_share == 0.3
    uniform = compose_config(overrides=["data/sampler=uniform"]).data.sampler
    assert uniform._target_ == "tpulearn.data.UniformSampler"
    for experiment in ("tile_xla", "layout_gst", "layout_nlp_random"):
        cfg = compose_config(overrides=[f"experiment={experiment}"])
        assert cfg.data.sampler._target_ == "tpulearn.data.UniformSampler", experiment
