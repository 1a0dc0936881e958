"""``train(cfg)``: build the objects a config names and train.

This is the composition layer of training: it instantiates ``_target_`` entries (Hydra's
``instantiate``) and hands plain objects to the :class:`~tpulearn.training.Trainer`.
Entry points (``train.py``, console scripts) wrap it in ``@hydra.main``; tests compose a
config and call it directly. Evaluating a checkpoint is :func:`tpulearn.evaluation.evaluate`.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from .._checks import check_int
from .budget import time_text


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _outside_hydra_run_folder(cfg: DictConfig) -> None:
    """Give a config composed outside ``train.py`` (a notebook, a script) a run folder.

    ``out_dir`` defaults to Hydra's run folder, which only exists inside a Hydra run; there
    the interpolation cannot resolve. Use a fresh ``outputs/<date>/<time>`` below the
    working folder instead, as Hydra would, and say so.
    """
    if HydraConfig.initialized():
        return
    try:
        cfg.out_dir  # noqa: B018 (resolving the interpolation is the check)
    except InterpolationResolutionError:
        folder = Path("outputs") / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
        cfg.out_dir = str(folder)
        print(f"run folder: {folder} (no Hydra run; pass out_dir=... to choose it)")


def _build(cfg: DictConfig, group: str, **kwargs):
    """``instantiate(cfg[group])``, with a setting its constructor refuses named as on the
    command line: ``model.dropout must be ...`` for a constructor's ``dropout must be
    ...``, ``loss.terms.1.loss.margin`` for a nested one (the only key of that name in the
    group), else the message behind ``<group>: ``."""
    try:
        return instantiate(cfg[group], **kwargs)
    except Exception as exc:  # instantiate wraps the constructor's error
        cause = exc
        while cause is not None and not isinstance(cause, ValueError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise ValueError(_named(str(cause), group, cfg[group])) from exc


def _named(message: str, group: str, node: DictConfig) -> str:
    """``message`` with the setting it starts with given its full key in ``group``."""
    if message.startswith((f"{group}.", f"{group} ", f"{group}:")):
        return message
    first = re.match(r"[A-Za-z_][\w.]*", message)
    name = first.group(0) if first else ""
    paths = [p for p in _keys(OmegaConf.to_container(node)) if p == name or p.endswith(f".{name}")]
    if name and len(paths) == 1:
        return f"{group}.{paths[0][: len(paths[0]) - len(name)]}{message}"
    return f"{group}: {message}"


def _keys(node, prefix: str = "") -> list[str]:
    """Every key path in a nested container of mappings and lists (``terms.1.weight``)."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    paths = []
    for key, value in items:
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, (dict, list)):
            paths += _keys(value, f"{path}.")
    return paths


def _optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ``cfg.optim`` over the model's parameters; a setting the optimiser
    refuses (``optim.lr=-1``, a string where it wants a number) ends in one line naming
    the config group and its values."""
    build = instantiate(cfg.optim)
    try:
        return build(params=model.parameters())
    except (TypeError, ValueError) as exc:
        settings = " ".join(
            f"optim.{key}={value!r}" for key, value in cfg.optim.items() if not key.startswith("_")
        )
        raise ValueError(f"optim ({cfg.optim._target_}; {settings}): {exc}") from exc


def _scheduler(cfg: DictConfig, optimizer):
    """The LR scheduler, or a function of the run's step budget building it: a
    ``T_max: ${trainer.max_steps}`` (configs/scheduler/cosine.yaml) means the steps the run
    takes, known once the trainer has counted the training graphs (``trainer.max_epochs``)
    and the same as ``trainer.max_steps`` when that alone sets the budget."""
    if not cfg.get("scheduler"):
        return None
    build = instantiate(cfg.scheduler)
    node = cfg.scheduler._get_node("T_max") if "T_max" in cfg.scheduler else None
    if node is not None and node._is_interpolation() and node._value() == "${trainer.max_steps}":
        return lambda steps: build(optimizer=optimizer, T_max=steps)
    return build(optimizer=optimizer)


def stop_line(result: dict) -> str:
    """How a run ended: its budget done, or stopped early or on its time limit (where,
    why, the best step)."""
    stop = result.get("stopped")
    if not stop:
        if result["steps"] > result["max_steps"]:
            # A resume under a smaller budget than its checkpoint's step.
            return (
                f"trained nothing: the checkpoint is at step {result['steps']}, past this "
                f"budget of {result['max_steps']} steps"
            )
        return f"trained {result['steps']} of {result['max_steps']} steps"
    value = stop["value"]
    shown = f" {value:.4f}" if isinstance(value, float) else ""
    if stop.get("reason") == "time":
        return (
            f"stopped at step {stop['step']} of {stop['max_steps']}: the time limit "
            f"(trainer.max_time={time_text(stop['max_time'])}) was reached; best step "
            f"{stop['best_step']} ({stop['metric']}{shown}), the best checkpoint"
        )
    return (
        f"stopped early at step {stop['step']} of {stop['max_steps']}: no gain in "
        f"{stop['metric']} for {stop['validations']} validations (trainer.patience="
        f"{stop['patience']}); best step {stop['best_step']} ({stop['metric']}{shown}), "
        "the best checkpoint"
    )


def train(cfg: DictConfig, on_start=None) -> dict:
    """Train the configured model on the configured data; return the run's metrics.

    Args:
        cfg: the composed config.
        on_start: called with the run folder once the run has passed its checks and
            before it writes there (see :meth:`~tpulearn.training.Trainer.fit`).

    Returns:
        ``{"best": {...validation metrics at the best step...}, "history": [...],
        "checkpoints": {"last", "best"}, "tensorboard": dir, "data": description}``.
    """
    seed_everything(check_int("trainer.seed", cfg.trainer.seed, 0))
    _outside_hydra_run_folder(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    data = _build(cfg, "data")
    model = _build(cfg, "model")
    loss_fn = _build(cfg, "loss")
    optimizer = _optimizer(cfg, model)
    scheduler = _scheduler(cfg, optimizer)
    gst = _build(cfg, "gst") if cfg.get("gst") else None
    trainer = _build(cfg, "trainer", gst=gst)
    out_dir = Path(cfg.out_dir)
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if main:
        print(f"data: {data.describe()}")
        note = data.uncached_note()
        if note:
            print(f"data: {note}")
        print(f"model: {model!r}")
    result = trainer.fit(model, loss_fn, optimizer, data, out_dir, scheduler, resolved, on_start)
    result["data"] = data.describe()
    if not main:
        return result
    best = result["best"] or {}
    print(stop_line(result))
    print(
        f"best validation (step {best.get('step')}, selected on {result['select_metric']}): "
        + " ".join(f"{k} {v:.4f}" for k, v in best.items() if k != "step" and isinstance(v, float))
    )
    print(f"peak memory: {result['max_rss_mb']:,.0f} MB resident")
    print(f"checkpoints: {result['checkpoints']['best']} (best), {result['checkpoints']['last']}")
    print(f"tensorboard: tensorboard --logdir {result['tensorboard']}")
    return result
