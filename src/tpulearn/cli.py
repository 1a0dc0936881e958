"""Command-line entry points: ``train.py`` / ``tpulearn-train`` and ``evaluate.py`` /
``tpulearn-evaluate``. Hydra composes ``tpulearn/configs``; errors a user can fix (a wrong
data root, an unknown option, a checkpoint of another model) end in one clear line."""

from __future__ import annotations

import os
import sys
import warnings

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from .data import TpuGraphsFormatError
from .training.checkpoint import CheckpointMismatchError

# Errors that are the user's input, reported without a traceback.
USER_ERRORS = (FileNotFoundError, TpuGraphsFormatError, CheckpointMismatchError, ValueError)


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


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def train_main(cfg: DictConfig) -> float | None:
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
def evaluate_main(cfg: DictConfig) -> None:
    from .evaluation import MissingExtraError, evaluate

    try:
        _run(evaluate, cfg)
    except MissingExtraError as exc:  # plots=true without matplotlib
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:  # one line, not the scoring loop's traceback
        print("evaluation interrupted; run the command again to evaluate", file=sys.stderr)
        raise SystemExit(130) from None
