"""Checkpoints: written atomically, refused when they belong to another model config, and
their stored configs upgraded to the current config layout when they are loaded."""

from __future__ import annotations

import copy
import os
import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

# Model options added after checkpoints were written, each with the value that builds and
# trains what a config without the option did: a stored model config (that of a ConfigGNN,
# which has ``attn_heads``) lacking one is read as having that value, so older runs resume,
# are reused and load as before. Digests of run configs leave a key out at this value.
ADDED_MODEL_DEFAULTS = {"attn_gate": "state", "post_layers": 0}
# Trainer options added since runs were stored, at the value that trains what a config
# without them did.
ADDED_TRAINER_DEFAULTS = {"union_prob": 0.0, "min_epoch_graphs": None}


class CheckpointMismatchError(ValueError):
    """A checkpoint was made with a different model or task than the one asked for."""


class CheckpointReadError(ValueError):
    """A file is not a readable checkpoint: truncated, damaged or another kind of file."""


def rng_state() -> dict:
    # numpy draws in tpulearn use explicit, seeded Generators, so only these are global.
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, model_config: dict | None = None) -> dict:
    """Load a checkpoint; with ``model_config``, refuse one made for another model.

    The stored config is upgraded to the current layout first (:func:`upgrade_config`), so
    every reader (evaluation, prediction, resuming, the leaderboard) sees current keys.

    Raises:
        FileNotFoundError: no file at ``path`` (or a folder there).
        CheckpointReadError: the file is truncated, damaged or not a checkpoint.
        CheckpointMismatchError: the stored model config differs (the message names the
            differing keys).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"checkpoint {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        # torch's own messages name neither the file nor the likely cause.
        what = (
            "a numpy .npz data file, not a checkpoint"
            if path.suffix == ".npz"
            else "truncated, damaged or not a checkpoint written by training"
        )
        raise CheckpointReadError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): the file is {what}"
        ) from exc
    if "config" in state:
        state["config"] = upgrade_config(state["config"])
    if model_config is not None:
        stored = state.get("config", {}).get("model", {})
        diff = sorted(
            k for k in set(stored) | set(model_config) if stored.get(k) != model_config.get(k)
        )
        if diff:
            details = ", ".join(
                f"{k}: checkpoint {stored.get(k)!r} vs requested {model_config.get(k)!r}"
                for k in diff
            )
            raise CheckpointMismatchError(
                f"checkpoint {path} was made for another model ({details})"
            )
    return state


def upgrade_config(config: Mapping) -> dict:
    """A stored run config with the keys of older versions moved to where they live now.

    ``model.context_hops`` (``model.model.context_hops`` in a segment model) became
    ``data.context_hops``: the configurable nodes' context is a transform of the data, no
    longer a rewrite inside the model's forward. A whole-graph model scores exactly as
    before; a segment model now partitions the transformed graph instead of cutting each
    segment, so its scores change (a warning says so). Options added since
    (:data:`ADDED_MODEL_DEFAULTS`, :data:`ADDED_TRAINER_DEFAULTS`) get the value that
    trains what the config did.

    Args:
        config: the resolved config a checkpoint stores (left unchanged).

    Returns:
        A copy in the current layout.
    """
    config = copy.deepcopy(dict(config))
    _add_model_defaults(config)
    if isinstance(config.get("trainer"), Mapping):
        config["trainer"] = {**ADDED_TRAINER_DEFAULTS, **config["trainer"]}
    node, where = config.get("model"), "model"
    while isinstance(node, Mapping):
        if "context_hops" in node:
            hops = node.pop("context_hops")
            if hops is not None:
                data = config["data"] = dict(config.get("data") or {})
                data["context_hops"] = hops
                if where != "model":
                    warnings.warn(
                        f"checkpoint config {where}.context_hops={hops} is now "
                        "data.context_hops, applied to the whole graph before it is "
                        "partitioned: the segments, and so the scores, differ from the run's",
                        UserWarning,
                        stacklevel=3,
                    )
            break
        node, where = node.get("model"), f"{where}.model"
    return config


def _add_model_defaults(config: dict) -> None:
    """Give each ConfigGNN config in ``config``'s model chain (``model``, a segment model's
    ``model.model``, ...) the options it lacks of :data:`ADDED_MODEL_DEFAULTS`."""
    parent, key = config, "model"
    while isinstance(parent.get(key), Mapping):
        node = parent[key] = dict(parent[key])
        if "attn_heads" in node:
            for option, value in ADDED_MODEL_DEFAULTS.items():
                node.setdefault(option, value)
        parent = node


def at_added_default(key: str, value) -> bool:
    """Whether a dotted config key is an option of :data:`ADDED_MODEL_DEFAULTS` in the
    model chain (``model``, a segment model's ``model.model``), or ``trainer.<option>`` of
    :data:`ADDED_TRAINER_DEFAULTS`, at the value it was added with: a digest of a config
    leaves such a key out, so it matches configs from before."""
    *path, option = key.split(".")
    if path == ["trainer"]:
        return option in ADDED_TRAINER_DEFAULTS and ADDED_TRAINER_DEFAULTS[option] == value
    in_model = bool(path) and set(path) == {"model"}
    return in_model and option in ADDED_MODEL_DEFAULTS and ADDED_MODEL_DEFAULTS[option] == value
