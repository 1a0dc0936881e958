"""Stale embedding dropout and the rescaling of a GST prediction (one step's arithmetic).

A GST step (:mod:`.training`) scores one segment t fresh, ``f_t`` [C], and reads the
other segments' stored scores ``h_s`` from the history table. Stale embedding dropout
keeps each stored score with probability ``p`` (per config and segment, or per segment
with ``dropout_unit="segment"``); a dropped one contributes 0. The prediction is
``y = m * f_t + sum_{s != t} keep_s * h_s``, where the trained segment is rescaled to
stand in for the dropped ones (``rescale="trained"``, the reference, Cao et al., arXiv
2305.12322, and kaidic/GST ``graphgps/train/custom_tpu_train.py``):

    m = 1 + (S - 1) * (1 - p)

i.e. the trained segment also counts for the expected number ``(S - 1)(1 - p)`` of
dropped segments. The reference hard-codes p = 0.5 and writes ``(S - 1) / 2 + 1``, the
same value. ``rescale="stale"`` instead divides the kept stale scores by ``p`` (inverted
dropout; m = 1), and ``rescale="none"`` does neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_choice

RESCALES = ("trained", "stale", "none")
DROPOUT_UNITS = ("entry", "segment")


def stale_keep_mask(
    shape: Sequence[int], keep_prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """Bernoulli(keep_prob) keep decisions, bool of ``shape`` (CPU)."""
    if not 0.0 <= keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob}")
    return torch.rand(tuple(shape), generator=generator) < keep_prob


def trained_multiplier(num_segments: int, keep_prob: float, rescale: str = "trained") -> float:
    """Factor on the trained segment's score: ``1 + (S - 1)(1 - p)`` for ``"trained"``."""
    check_choice("rescale", rescale, RESCALES)
    if rescale != "trained":
        return 1.0
    return 1.0 + (num_segments - 1) * (1.0 - keep_prob)


def combine(
    trained: Tensor, stale: Tensor, keep: Tensor, keep_prob: float, rescale: str = "trained"
) -> Tensor:
    """A graph's prediction from its trained segment and stored scores.

    Args:
        trained: fresh scores of the trained segment ``[C]`` (with gradient).
        stale: stored scores of the other S - 1 segments ``[C, S - 1]``.
        keep: stale embedding dropout decisions ``[C, S - 1]`` (bool).
        keep_prob: p, the keep probability the decisions were drawn with.
        rescale: ``"trained"`` (reference), ``"stale"`` or ``"none"``.

    Returns:
        ``[C]``: ``m * trained + sum(keep * stale) [/ p for "stale"]``.
    """
    mult = trained_multiplier(stale.shape[1] + 1, keep_prob, rescale)
    kept = (stale * keep.to(stale.device, stale.dtype)).sum(1)
    if rescale == "stale" and keep_prob > 0:
        kept = kept / keep_prob
    return trained * mult + kept.to(trained.dtype)
