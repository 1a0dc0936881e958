"""Command-line entry points: ``train.py`` / ``tpulearn-train`` and ``evaluate.py`` /
``tpulearn-evaluate``. Hydra composes ``tpulearn/configs``; errors a user can fix (a wrong
data root, an unknown option, a checkpoint of another model) end in one clear line."""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from .data import TpuGraphsFormatError
from .training.checkpoint import CheckpointMismatchError

_CONFIGS = Path(__file__).parent / "configs"

# Errors that are the user's input, reported without a traceback.
# A diverged run (FloatingPointError) is its settings' doing: one line, with what to change.
USER_ERRORS = (
    FileNotFoundError,
    TpuGraphsFormatError,
    CheckpointMismatchError,
    ValueError,
    FloatingPointError,
)


def _warning_line(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, ``warning: ...``: tpulearn's warnings name the setting
    themselves, and the file they are raised from (Hydra's instantiate, for a config
    object's constructor) would only be noise; other kinds keep their origin."""
    if category is UserWarning:
        return f"warning: {message}\n"
    return f"warning: {message} ({category.__name__}, {filename}:{lineno})\n"


def _run(fn, cfg: DictConfig, hint=lambda exc: ""):
    """``fn(cfg)``; a user's error ends in one line (``hint(exc)`` appended to it), and
    each warning is a line."""
    formatwarning, warnings.formatwarning = warnings.formatwarning, _warning_line
    try:
        return fn(cfg)
    except MissingMandatoryValue as exc:
        print(f"error: {exc.full_key} is required: pass {exc.full_key}=...", file=sys.stderr)
        raise SystemExit(2) from None
    except USER_ERRORS as exc:
        print(f"error: {exc}{hint(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:  # instantiate wraps constructor errors; unwrap ours
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, USER_ERRORS):
            cause = cause.__cause__
        if cause is None:
            raise
        print(f"error: {cause}{hint(cause)}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        warnings.formatwarning = formatwarning


def key_hints(config_name: str, args: list[str]) -> list[str]:
    """Lines naming the settings among the command line's ``args`` that the composed
    config ``config_name`` does not have, with the keys they were likely meant for
    (``"trainer.max_step is not a setting of this config; did you mean
    trainer.max_steps?"``; each caller says where to list the keys).

    Called after Hydra refused a command line (it exits 1): an unknown ``key=value`` fails
    composition with a hint to append it as ``+key=value``, which then fails in the
    constructor that does not take it. The config is composed again here with the unknown
    overrides left out, and each is matched against the keys it has. ``[]`` where no
    override is unknown, or the command line does not parse.
    """
    from difflib import get_close_matches

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from .training.folder import flatten_config

    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if "=" in a])
    except HydraException:
        return []
    kept, added = {}, []
    for o in parsed:
        if o.key_or_group.split(".")[0] == "hydra" or o.is_delete():
            continue
        key = o.key_or_group + (f"@{o.package}" if o.package else "")
        value = next(o.sweep_string_iterator()) if o.is_sweep_override() else None
        line = o.input_line if value is None else f"{'+' if o.is_add() else ''}{key}={value}"
        kept[o.input_line] = line
        if o.is_add():
            added.append(o.key_or_group)
    unknown = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(_CONFIGS), version_base="1.3"):
        for _ in range(len(kept) + 1):
            try:
                cfg = compose(config_name, overrides=[v for k, v in kept.items() if k[0] != "+"])
                break
            except HydraException as exc:
                bad = re.search(r"Could not override '([^']+)'", str(exc))
                if bad is None:
                    return []
                unknown.append(bad.group(1))
                kept = {k: v for k, v in kept.items() if not k.startswith(f"{bad.group(1)}=")}
        else:
            return []
    keys = list(flatten_config(OmegaConf.to_container(cfg, resolve=False)))
    # A misspelt group (modl=sage) is meant for a prefix of the keys (model).
    names = sorted({".".join(k.split(".")[:i]) for k in keys for i in range(1, k.count(".") + 2)})
    lines = []
    for key in unknown + [k for k in added if k not in keys]:
        close = get_close_matches(key, names, n=1, cutoff=0.75)
        if key not in unknown and not close:
            continue  # a key added on purpose (+data.context_hops=1 to evaluate.py)
        meant = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"{key} is not a setting of this config{meant}")
    return lines


def _hinted(main, config_name: str):
    """Run a Hydra entry point; where Hydra refused the command line, add
    :func:`key_hints`' lines after its message."""
    try:
        return main()
    except SystemExit as exc:
        if exc.code == 1:
            try:
                lines = key_hints(config_name, sys.argv[1:])
            except Exception:  # a hint only: Hydra has said what failed
                lines = []
            from .training.hydra_run import program

            for line in lines:
                print(f"error: {line} ({program()} --cfg job prints every key)", file=sys.stderr)
        raise


def train_main() -> float | None:
    """``python train.py`` / ``tpulearn-train``."""
    return _hinted(_train_main, "config")


def evaluate_main() -> None:
    """``python evaluate.py`` / ``tpulearn-evaluate``."""
    return _hinted(_evaluate_main, "eval")


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def _train_main(cfg: DictConfig) -> float | None:
    from .training import train
    from .training.hydra_run import RunFolder
    from .training.state import RunDataError

    def resume(exc: Exception) -> str:
        saved = isinstance(exc, RunDataError) and exc.checkpoint is not None
        return f": {folder.resume_command()}" if saved else ""

    # The run's folder gets its config and log only once the run is under way.
    folder = RunFolder(cfg)
    with folder.tee():
        try:
            result = _run(lambda c: train(c, on_start=folder.claim), cfg, resume)
        except KeyboardInterrupt as exc:  # one line, not the model's traceback
            if int(os.environ.get("RANK", "0")) == 0:
                print(folder.interrupted(exc), file=sys.stderr)
            raise SystemExit(130) from None
    # The return value is what a Hydra sweeper optimises: the selection metric.
    result = result or {}
    return (result.get("best") or {}).get(result.get("select_metric"))


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def _evaluate_main(cfg: DictConfig) -> None:
    from .evaluation import MissingExtraError, evaluate

    try:
        _run(evaluate, cfg)
    except MissingExtraError as exc:  # plots=true without matplotlib
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # one line, not the scoring loop's traceback
        print("evaluation interrupted; run the command again to evaluate", file=sys.stderr)
        raise SystemExit(130) from None
