"""Argument checks shared by every layer (imports nothing from tpulearn).

Constructors are configs (their arguments are the YAML keys), so they validate their
arguments with these helpers: one wording for a bad choice, and one rule for options
that a switch turns off.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any


def check_choice(name: str, value: Any, choices: Collection) -> Any:
    """Raise unless ``value`` is one of ``choices``; return it.

    Args:
        name: the argument's name, as the user writes it (e.g. ``"data.valid_indices"``).
        value: the given value.
        choices: the allowed values.

    Raises:
        ValueError: ``"<name> must be one of (...), got <value>"``.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_int(name: str, value: Any, minimum: int, why: str = "") -> int:
    """Raise unless ``value`` is an integer (not a bool) of at least ``minimum``; return it.

    Args:
        name: the argument's name, as the user writes it (e.g. ``"trainer.log_every"``).
        value: the given value.
        minimum: the smallest allowed value.
        why: an optional reason, appended to the message.

    Raises:
        ValueError: ``"<name> must be an integer >= <minimum>[ (<why>)], got <value>"``.
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{reason}, got {value!r}")
    return int(value)


def warn_if_disabled(
    name: str, value: Any, default: Any, active: bool, reason: str, stacklevel: int = 3
) -> bool:
    """Warn when an option is given a non-default value that has no effect.

    The rule: an option that another argument switches off (``attention_heads`` without
    ``config_attention``, ``log_features`` without ``normalize``) warns only when it was
    changed from its default, since the default is always present in a config and says
    nothing about what the user wanted.

    Args:
        name: the option's name (e.g. ``"data.log_features"``).
        value: its value.
        default: its constructor default.
        active: whether the option takes effect with the other arguments given.
        reason: why it does not, e.g. ``"data.normalize is null"``.
        stacklevel: passed to :func:`warnings.warn` (3: the caller's caller).

    Returns:
        Whether a warning was issued.
    """
    if active or value == default:
        return False
    warnings.warn(f"{name}={value!r} has no effect: {reason}", UserWarning, stacklevel=stacklevel)
    return True


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """Raise unless ``value`` is a finite real number (not a bool) within the bounds.

    Args:
        name: the argument's name, as the user writes it (e.g. ``"model.dropout"``).
        value: the given value.
        low, high: the bounds (None: unbounded on that side).
        open_low, open_high: exclude the bound itself.

    Raises:
        ValueError: ``"<name> must be a number in [low, high), got <value>"`` (or ``>= low``
            / ``<= high`` with one bound).

    Returns:
        ``value`` as a float.
    """
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    if ok and high is not None:
        ok = value < high if open_high else value <= high
    if not ok:
        if low is not None and high is not None:
            where = f"in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        elif low is not None:
            where = f"{'>' if open_low else '>='} {low:g}"
        elif high is not None:
            where = f"{'<' if open_high else '<='} {high:g}"
        else:
            where = "finite"
        raise ValueError(f"{name} must be a number {where}, got {value!r}")
    return float(value)


def check_folder(name: str, path: Any) -> Any:
    """``path`` as given, where it is ``None``, a folder or nothing yet (made when first
    written to).

    Raises:
        ValueError: naming ``name``, where ``path`` is a file.
    """
    from pathlib import Path

    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise ValueError(f"{name}={str(path)!r} is a file: expected a folder (made if missing)")
    return path


def resolve_device(device: Any, name: str = "device"):
    """The ``torch.device`` that ``device`` names; ``"auto"``: CUDA when there is one.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, another torch device
            string, or a ``torch.device``.
        name: the argument's name in messages (``"trainer.device"`` in a training config).

    Raises:
        ValueError: naming ``name``, for a string torch does not read as a device, or a
            CUDA device on a machine without one (or without that index).
    """
    import torch

    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"{name}={device!r} is not a device: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={device!r} but no CUDA device is available; use 'cpu' or 'auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return resolved
