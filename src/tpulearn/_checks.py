"""Argument checks shared by every layer (imports nothing from tpulearn).

Constructors are configs (their arguments are the YAML keys), so they validate their
arguments with these helpers: one wording for a bad choice, and one rule for options
that a switch turns off.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from numbers import Integral
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
