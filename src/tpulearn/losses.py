"""Ranking losses over the sampled configs of each graph.

Longer than most modules: one idea, the losses, which share the padded-batch preparation
and masking below; the module classes are thin wrappers over the functions.

Every loss takes a padded batch: ``scores`` ``[num_graphs, num_configs]`` (one
score per config, **lower score = predicted faster**, as everywhere in
tpulearn), ``runtime`` of the same shape (int64 nanoseconds or float), an
optional bool ``mask`` (True = real config, False = padding) and an optional
``runtime_normalizer`` (the tile ``config_runtime_normalizers``). When it is given, every
loss works on ``runtime / runtime_normalizer``, as the official tile baseline does. A 1-D
input is read as a single graph.

Each graph gives one value; the loss is the mean over the graphs that carry
information (at least 2 real configs; for the pairwise hinge, at least one
pair of different runtimes). If no graph qualifies the loss is a zero still
connected to ``scores``, so ``backward()`` and DDP keep working. Padded entries
may hold any value (even NaN or inf): they never reach the value or the
gradient.

``pad_by_graph`` turns the flat per-config tensors of a PyG batch into this
padded layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from ._checks import check_choice, check_number

__all__ = [
    "CombinedLoss",
    "ListMLELoss",
    "MSELoss",
    "PairwiseHingeLoss",
    "listmle_loss",
    "mse_loss",
    "pad_by_graph",
    "pairwise_hinge_loss",
]

MSE_TARGETS = ("log", "normalized", "zscore")


def pad_by_graph(
    values: Tensor,
    batch: Tensor | None = None,
    *,
    counts: Tensor | Sequence[int] | None = None,
    fill_value: float = 0.0,
    batch_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Pads flat per-config values into one row per graph.

    Args:
        values: Per-config values (scores, runtimes, ...), ``[sum_configs, ...]``.
        batch: Graph index of every config, sorted, ``[sum_configs]`` (PyG's
            ``batch`` vector). Give either ``batch`` or ``counts``.
        counts: Number of configs of each graph, ``[num_graphs]``; configs are
            laid out graph after graph.
        fill_value: Value written into the padding.
        batch_size: Number of graphs, needed with ``batch`` when trailing graphs
            have no configs (``counts`` implies it).

    Returns:
        ``(dense, mask)``: ``dense`` is ``[num_graphs, max_configs, ...]`` with the
        dtype of ``values``; ``mask`` is bool ``[num_graphs, max_configs]``, True
        at real configs.
    """
    if (batch is None) == (counts is None):
        raise ValueError("pad_by_graph: pass exactly one of `batch` or `counts`")
    if counts is not None:
        counts = torch.as_tensor(counts, dtype=torch.long, device=values.device)
        batch_size = counts.numel()
        batch = torch.repeat_interleave(torch.arange(batch_size, device=values.device), counts)
    if batch.numel() != values.size(0):
        raise ValueError(f"pad_by_graph: {values.size(0)} values but {batch.numel()} graph indices")
    return to_dense_batch(values, batch, fill_value=fill_value, batch_size=batch_size)


def _prepare(
    scores: Tensor, runtime: Tensor, mask: Tensor | None, runtime_normalizer: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Checks shapes and returns ``(scores, runtime, mask)``, all ``[B, C]``.

    Padded scores become 0 and padded runtimes 1, so that garbage in the padding
    can produce neither NaN in the value nor NaN in the gradient (a ``where``
    after the arithmetic would still back-propagate ``0 * nan``). Runtimes stay
    int64 when they are integers and no runtime_normalizer is given (exact comparisons
    up to 2**63 ns); otherwise they become float64.
    """
    if scores.dim() == 1:
        scores, runtime = scores.unsqueeze(0), runtime.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
        runtime_normalizer = None if runtime_normalizer is None else runtime_normalizer.unsqueeze(0)
    if scores.dim() != 2:
        raise ValueError(f"scores must be [num_graphs, num_configs], got {tuple(scores.shape)}")
    for name, other in (
        ("runtime", runtime),
        ("mask", mask),
        ("runtime_normalizer", runtime_normalizer),
    ):
        if other is not None and other.shape != scores.shape:
            raise ValueError(f"{name} has shape {tuple(other.shape)}, scores {tuple(scores.shape)}")
    if mask is None:
        mask = torch.ones_like(scores, dtype=torch.bool)
    elif mask.dtype != torch.bool:
        raise TypeError(f"mask must be bool, got {mask.dtype}")
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # logsumexp and squares need more than 8-11 mantissa bits
    if runtime_normalizer is not None:
        runtime = runtime.double() / runtime_normalizer.double()
    elif runtime.is_floating_point():
        runtime = runtime.double()
    scores = torch.where(mask, scores, torch.zeros_like(scores))
    runtime = torch.where(mask, runtime, torch.ones_like(runtime))
    return scores, runtime, mask


def _mean_over_graphs(per_graph: Tensor, qualifies: Tensor) -> Tensor:
    """Mean of ``per_graph`` ``[B]`` over graphs where ``qualifies`` ``[B]`` is True.

    Without a host sync: with no qualifying graph this is ``0 / 1``, a zero
    that keeps its grad_fn.
    """
    total = torch.where(qualifies, per_graph, torch.zeros_like(per_graph)).sum()
    return total / qualifies.sum().clamp_min(1).to(per_graph.dtype)


def listmle_loss(
    scores: Tensor,
    runtime: Tensor,
    mask: Tensor | None = None,
    runtime_normalizer: Tensor | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """ListMLE: Plackett-Luce negative log-likelihood of the true order, fastest first.

    With logits ``l = -scores / temperature`` and the real configs sorted by
    runtime (fastest first), each graph contributes
    ``sum_k [logsumexp(l_j for j at or after k) - l_k]``; the loss is the mean of
    that sum over graphs with at least 2 real configs (Xia et al., 2008,
    https://dl.acm.org/doi/10.1145/1390156.1390306).

    Temperature: logits are scores divided by ``temperature`` as in TF-Ranking
    (``logits / temperature``), so a larger temperature gives a flatter
    distribution and smaller gradients; the official tile baseline uses 10.
    The sign is flipped because a low score means fast here. Note that
    TF-Ranking, fed runtimes as labels, scores the likelihood of the slowest
    first order instead; Plackett-Luce is not symmetric under reversal, and the
    fastest-first order puts the most weight on the top of the ranking, which
    is what the top-K metrics measure.

    Ties: configs with equal runtime (duplicate configs are real in TpuGraphs)
    are handled as in Breslow's partial likelihood: each competes against every
    config not strictly faster than it, its whole tie group included. This is
    deterministic and does not depend on the order of the configs, and its
    gradient pulls tied scores together instead of ranking them by position.
    Without ties it is exactly ListMLE.

    Numerics: the per-graph max is subtracted before a log-cumsum-exp from the
    slowest end, so scores of 1e4 and runtimes from 1e3 to 1e12 stay finite.

    Args:
        scores: Predicted scores, lower = faster, ``[num_graphs, num_configs]``.
        runtime: True runtimes (int64 ns or float), ``[num_graphs, num_configs]``.
        mask: True at real configs, ``[num_graphs, num_configs]``; None = all real.
        runtime_normalizer: Optional per-config runtime normalizers, same shape; ranks
            ``runtime / runtime_normalizer`` instead of ``runtime``.
        temperature: Positive divisor of the scores.

    Returns:
        Scalar loss tensor.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scores, runtime, mask = _prepare(scores, runtime, mask, runtime_normalizer)
    # Padding sorts last and its logit is the most negative finite number, so
    # it adds exactly exp(-huge) = 0 to every tail sum without inf - inf in
    # the backward pass.
    pad_key = float("inf") if runtime.is_floating_point() else torch.iinfo(runtime.dtype).max
    key, order = torch.sort(runtime.masked_fill(~mask, pad_key), dim=-1, stable=True)
    valid = mask.gather(-1, order)
    logits = (-scores / temperature).gather(-1, order)
    floor = torch.finfo(logits.dtype).min
    top = torch.where(valid, logits, floor).amax(dim=-1, keepdim=True).detach()
    shifted = torch.where(valid, logits - top, torch.full_like(logits, floor))
    tail = torch.logcumsumexp(shifted.flip(-1), dim=-1).flip(-1)
    # Breslow ties: a config's tail starts at the first config of its tie group.
    tail = tail.gather(-1, torch.searchsorted(key, key, side="left"))
    nll = torch.where(valid, tail - shifted, torch.zeros_like(shifted)).sum(dim=-1)
    return _mean_over_graphs(nll, valid.sum(dim=-1) >= 2)


def pairwise_hinge_loss(
    scores: Tensor,
    runtime: Tensor,
    mask: Tensor | None = None,
    runtime_normalizer: Tensor | None = None,
    margin: float = 0.1,
) -> Tensor:
    """Pairwise hinge: every faster config should score at least ``margin`` lower.

    For all pairs ``(i, j)`` of real configs with ``runtime_i < runtime_j``, the
    pair loss is ``max(0, margin - (score_j - score_i))``. Each graph gives the
    mean over its pairs (as TF-Ranking's pairwise hinge and the GST reference);
    pairs of equal runtime are excluded, and a graph without any pair of
    different runtimes is left out of the mean over graphs. The loss is exactly
    zero when every pair is ordered with the margin.

    Memory is ``O(num_graphs * num_configs**2)``: fine for a few hundred
    configs per graph, chunk the configs beyond that.

    Args:
        scores: Predicted scores, lower = faster, ``[num_graphs, num_configs]``.
        runtime: True runtimes (int64 ns or float), ``[num_graphs, num_configs]``.
        mask: True at real configs, ``[num_graphs, num_configs]``; None = all real.
        runtime_normalizer: Optional per-config runtime normalizers, same shape; compares
            ``runtime / runtime_normalizer`` instead of ``runtime``.
        margin: Required score gap between a faster and a slower config.

    Returns:
        Scalar loss tensor.
    """
    scores, runtime, mask = _prepare(scores, runtime, mask, runtime_normalizer)
    # Index [b, i, j]: i is the faster config of the pair, j the slower one.
    pairs = (runtime.unsqueeze(-1) < runtime.unsqueeze(-2)) & mask.unsqueeze(-1)
    pairs &= mask.unsqueeze(-2)
    gap = scores.unsqueeze(-2) - scores.unsqueeze(-1)  # score_j - score_i
    hinge = torch.clamp_min(margin - gap, 0.0)
    num_pairs = pairs.sum(dim=(-2, -1))
    per_graph = torch.where(pairs, hinge, torch.zeros_like(hinge)).sum(dim=(-2, -1))
    per_graph = per_graph / num_pairs.clamp_min(1).to(per_graph.dtype)
    return _mean_over_graphs(per_graph, num_pairs > 0)


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of each row over its real entries, [B, 1] (0 for a row without any)."""
    total = torch.where(mask, x, torch.zeros_like(x)).sum(-1, keepdim=True)
    return total / mask.sum(-1, keepdim=True).clamp_min(1).to(x.dtype)


def _regression_target(runtime: Tensor, mask: Tensor, target: str, normalized: bool) -> Tensor:
    """Float64 target ``[B, C]`` of ``mse_loss`` (padding holds harmless values)."""
    runtime = runtime.double()
    if target == "log":
        return torch.log(runtime)
    if target == "zscore":
        y = torch.log(runtime)
        y = y - _masked_mean(y, mask)
        std = _masked_mean(y * y, mask).sqrt()
        return torch.where(std > 0, y / std.clamp_min(torch.finfo(y.dtype).tiny), 0.0)
    if normalized:
        return runtime
    best = runtime.masked_fill(~mask, float("inf")).amin(dim=-1, keepdim=True)
    return runtime / torch.where(torch.isinf(best), torch.ones_like(best), best)


def mse_loss(
    scores: Tensor,
    runtime: Tensor,
    mask: Tensor | None = None,
    runtime_normalizer: Tensor | None = None,
    target: str = "log",
) -> Tensor:
    """Mean squared error of the scores against a runtime target.

    With ``r = runtime / runtime_normalizer`` when a runtime_normalizer is given, else
    ``r = runtime``, the target is

    - ``"log"``: ``log(r)`` (natural log; r in ns without a runtime_normalizer);
    - ``"normalized"``: ``r`` when a runtime_normalizer is given (the official tile
      baseline's MSE term), else ``r / min(r)`` over the graph's real configs
      (1.0 for the fastest config);
    - ``"zscore"``: ``log(r)`` standardised per graph (minus its mean over the graph's
      real configs, over their standard deviation; 0 where they all tie), against the
      scores minus their mean per graph. Neither a graph's offset nor its runtimes'
      scale matters, as for a ranking loss, but how much faster one config is than
      another does: under multiplicative (log-normal) measurement noise the maximum-
      likelihood fit of the differences, which a ranking loss reduces to orders.

    Each graph gives the mean over its real configs; the loss is the mean over
    graphs with at least 2 real configs, like the ranking losses, so that the
    terms of a ``CombinedLoss`` see the same graphs. Runtimes must be positive.

    Args:
        scores: Predicted scores, ``[num_graphs, num_configs]``.
        runtime: True runtimes (int64 ns or float), ``[num_graphs, num_configs]``.
        mask: True at real configs, ``[num_graphs, num_configs]``; None = all real.
        runtime_normalizer: Optional per-config runtime normalizers, same shape.
        target: ``"log"``, ``"normalized"`` or ``"zscore"``.

    Returns:
        Scalar loss tensor.
    """
    check_choice("target", target, MSE_TARGETS)
    scores, runtime, mask = _prepare(scores, runtime, mask, runtime_normalizer)
    y = _regression_target(runtime, mask, target, runtime_normalizer is not None).to(scores.dtype)
    if target == "zscore":
        scores = scores - _masked_mean(scores, mask)
    per_graph = _masked_mean((scores - y) ** 2, mask).squeeze(-1)
    return _mean_over_graphs(per_graph, mask.sum(dim=-1) >= 2)


class ListMLELoss(nn.Module):
    """Module form of :func:`listmle_loss` (logits = -scores / temperature).

    Args:
        temperature: Positive divisor of the scores (10 in the official tile baseline).
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, scores, runtime, mask=None, runtime_normalizer=None) -> Tensor:
        """See :func:`listmle_loss`; shapes ``[num_graphs, num_configs]``."""
        return listmle_loss(scores, runtime, mask, runtime_normalizer, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class PairwiseHingeLoss(nn.Module):
    """Module form of :func:`pairwise_hinge_loss` (mean over ordered pairs).

    Args:
        margin: Required score gap between a faster and a slower config
            (0.1 in the GST layout baseline).
    """

    def __init__(self, margin: float = 0.1):
        super().__init__()
        # A negative margin would leave pairs ordered the wrong way by less than it unpenalised.
        self.margin = check_number("margin", margin, 0.0)

    def forward(self, scores, runtime, mask=None, runtime_normalizer=None) -> Tensor:
        """See :func:`pairwise_hinge_loss`; shapes ``[num_graphs, num_configs]``."""
        return pairwise_hinge_loss(scores, runtime, mask, runtime_normalizer, margin=self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class MSELoss(nn.Module):
    """Module form of :func:`mse_loss`.

    Args:
        target: ``"log"`` (log runtime), ``"normalized"`` (runtime / runtime_normalizer,
            or / the graph's best runtime without a runtime_normalizer) or ``"zscore"``
            (log runtime standardised per graph, against centred scores).
    """

    def __init__(self, target: str = "log"):
        super().__init__()
        check_choice("target", target, MSE_TARGETS)
        self.target = target

    def forward(self, scores, runtime, mask=None, runtime_normalizer=None) -> Tensor:
        """See :func:`mse_loss`; shapes ``[num_graphs, num_configs]``."""
        return mse_loss(scores, runtime, mask, runtime_normalizer, target=self.target)

    def extra_repr(self) -> str:
        return f"target={self.target!r}"


class CombinedLoss(nn.Module):
    """Weighted sum of losses: ``sum_k weight_k * loss_k``.

    The weights are used as given (the official tile baseline divides them by
    their sum; ListMLE 1 + MSE 0.02 there equals weights 0.98 and 0.0196 here).
    ``forward`` returns the total; ``last_terms`` keeps the detached value of
    each term from the latest call, for logging. In Hydra::

        _target_: tpulearn.losses.CombinedLoss
        terms:
          - {weight: 1.0, loss: {_target_: tpulearn.losses.ListMLELoss, temperature: 10}}
          - {weight: 0.02, loss: {_target_: tpulearn.losses.MSELoss, target: normalized}}

    Args:
        terms: One mapping per term with keys ``loss`` (an ``nn.Module`` taking
            ``(scores, runtime, mask, runtime_normalizer)``), ``weight`` (float, default
            1.0) and optionally ``name`` (key in ``last_terms``; default the
            class name, suffixed ``_1``, ``_2`` ... when repeated).
    """

    def __init__(self, terms: Sequence[Mapping[str, Any]]):
        super().__init__()
        if len(terms) == 0:
            raise ValueError("CombinedLoss needs at least one term")
        losses, self.weights, self.names = [], [], []
        for i, term in enumerate(terms):
            unknown = set(term.keys()) - {"loss", "weight", "name"}
            if unknown or "loss" not in term:
                raise ValueError(
                    f"term {i} must have the key loss, and may have weight (default 1) and "
                    f"name; got {sorted(term.keys())}"
                )
            if not isinstance(term["loss"], nn.Module):
                raise TypeError(f"term {i}: loss must be an nn.Module, got {type(term['loss'])}")
            losses.append(term["loss"])
            # A negative weight would train the model to do worse on its term.
            self.weights.append(check_number(f"terms.{i}.weight", term.get("weight", 1.0), 0.0))
            self.names.append(self._unique_name(term.get("name") or type(term["loss"]).__name__))
        if not any(self.weights):
            raise ValueError("CombinedLoss needs a term of positive weight; every weight is 0")
        self.losses = nn.ModuleList(losses)
        self.last_terms: dict[str, Tensor] = {}

    def _unique_name(self, name: str) -> str:
        candidate, k = name, 0
        while candidate in self.names:
            k += 1
            candidate = f"{name}_{k}"
        return candidate

    def terms_values(
        self, scores, runtime, mask=None, runtime_normalizer=None
    ) -> dict[str, Tensor]:
        """Unweighted value of every term, keyed by name (shapes as in the losses)."""
        return {
            name: loss(scores, runtime, mask, runtime_normalizer)
            for name, loss in zip(self.names, self.losses, strict=True)
        }

    def forward(self, scores, runtime, mask=None, runtime_normalizer=None) -> Tensor:
        """Weighted sum of the terms; shapes ``[num_graphs, num_configs]``."""
        values = self.terms_values(scores, runtime, mask, runtime_normalizer)
        self.last_terms = {name: value.detach() for name, value in values.items()}
        return sum(w * v for w, v in zip(self.weights, values.values(), strict=True))

    def extra_repr(self) -> str:
        return "weights=" + ", ".join(
            f"{n}: {w}" for n, w in zip(self.names, self.weights, strict=True)
        )
