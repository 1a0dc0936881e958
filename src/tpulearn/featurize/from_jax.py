"""Featurize a jitted JAX function and rank candidate layouts with a trained model.

    from tpulearn.featurize.from_jax import featurize_jax, rank_layouts
    record = featurize_jax(jax.jit(f), x, w)                # the HLO module, as a record
    ranked = rank_layouts("best.pt", jax.jit(f), x, w)      # candidate layouts, scored
    print(ranked.describe(3))

Needs JAX (``pip install tpulearn[jax]``); JAX is imported only when a function here runs.

Which module is featurized (``stage``):

- ``"before_optimizations"`` (default): the module JAX lowers to, before any XLA pass
  (``Lowered.compiler_ir("hlo")``). Backend-independent; no fusions, default layouts.
- ``"after_layout_assignment"``: the module right after XLA's ``layout-assignment`` pass on
  the local backend, taken from XLA's own dump (``xla_dump_to`` with
  ``xla_dump_hlo_pass_re=layout-assignment`` passed as compiler options) and read as an
  ``HloProto``: layouts chosen, most later passes (fusion) not yet run.
- ``"after_optimizations"``: the optimised module of the compiled executable
  (``Compiled.runtime_executable().hlo_modules()``), with the local backend's fusions.

Configurable nodes follow the rule inferred from the released files
(:func:`tpulearn.featurize.configurable_nodes`): every ``convolution``, ``dot`` and
``reshape`` outside fusion computations. A layout config gives each of them up to three
tensors' minor-to-major orders: the output, then the operands in order (for convolution
and dot: input and kernel; for reshape: its input). :func:`candidate_configs` proposes
configs; :func:`rank_layouts` scores them with a checkpoint.

Distribution shift, plainly: TpuGraphs models learned from HLO that XLA compiled *for TPUs*
(TPU fusion decisions, mostly bf16, TPU tiling) and from runtimes measured on TPUs. A module
lowered on your CPU or GPU is a different population: before optimisation it has no fusions
at all, after optimisation it carries another backend's fusions and layouts, and it may use
opcodes newer than the dataset's vocabulary (they become the unknown opcode 0, with a
warning). The scores are the model's preference among candidate layouts *as if the program
ran on a TPU like the dataset's*; they are not runtimes, they say nothing about CPU or GPU
speed, and nothing here applies a layout to a compilation. Use them to explore the model,
or on programs close to the dataset's (XLA-compiled TPU workloads); measure before trusting.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.io import LayoutRecord
from ..data.schema import LAYOUT_CONFIG_FEAT_DIM
from .features import ModuleGraph, featurize_module
from .proto import read_hlo_module, read_hlo_proto
from .records import (
    LAYOUT_MAX_DIMS,
    LAYOUT_MAX_TENSORS,
    configurable_nodes,
    layout_record,
)
from .wire import FeaturizeError

STAGES = ("before_optimizations", "after_layout_assignment", "after_optimizations")
_INSTALL_HINT = "tpulearn.featurize.from_jax needs JAX: pip install tpulearn[jax]"
# The collection's layout searches set full orders up to rank 4, and the two minor-most
# dimensions only for rank-5 and rank-6 tensors.
_FULL_ORDER_MAX_RANK = 4


def _import_jax():
    try:
        import jax
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return jax


def _lowered(fn: Callable, args: tuple, kwargs: dict):
    jax = _import_jax()
    if not hasattr(fn, "lower"):
        fn = jax.jit(fn)
    return fn.lower(*args, **kwargs)


def _dump_after_layout_assignment(lowered) -> bytes:
    """The HloProto XLA dumps right after its layout-assignment pass."""
    with tempfile.TemporaryDirectory() as tmp:
        lowered.compile(
            compiler_options={
                "xla_dump_to": tmp,
                "xla_dump_hlo_as_proto": True,
                "xla_dump_hlo_pass_re": "layout-assignment",
            }
        )
        dumps = sorted(Path(tmp).glob("*after_layout-assignment*.hlo.pb"))
        if not dumps:
            found = ", ".join(p.name for p in sorted(Path(tmp).iterdir())[:5]) or "no files"
            raise FeaturizeError(
                tmp,
                None,
                "an XLA dump after the layout-assignment pass (*after_layout-assignment*.hlo.pb)",
                found,
            )
        return dumps[0].read_bytes()


def hlo_module(fn: Callable, *args, stage: str = "before_optimizations", **kwargs) -> dict:
    """The decoded HLO module of ``fn`` applied to example arguments.

    Args:
        fn: a jitted function (``jax.jit(f)``; a plain function is jitted here).
        *args, **kwargs: example arguments (arrays or ``jax.ShapeDtypeStruct``).
        stage: ``"before_optimizations"``, ``"after_layout_assignment"`` or
            ``"after_optimizations"`` (see the module docstring).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    lowered = _lowered(fn, args, kwargs)
    if stage == "before_optimizations":
        data = lowered.compiler_ir("hlo").as_serialized_hlo_module_proto()
        return read_hlo_module(data, "<jax before_optimizations>")
    if stage == "after_layout_assignment":
        return read_hlo_proto(_dump_after_layout_assignment(lowered), f"<jax {stage}>")
    modules = lowered.compile().runtime_executable().hlo_modules()
    return read_hlo_module(modules[0].as_serialized_hlo_module_proto(), f"<jax {stage}>")


def featurize_jax(
    fn: Callable, *args, stage: str = "before_optimizations", **kwargs
) -> LayoutRecord:
    """The layout record of ``fn``'s HLO module: one config row, all -1 (the compiler's
    choice), unlabelled. See :func:`hlo_module` for the arguments."""
    module = hlo_module(fn, *args, stage=stage, **kwargs)
    return layout_record(module, path=f"{module['name']}.pb")


def config_tensor_ranks(module: dict, graph: ModuleGraph | None = None) -> list[list[int]]:
    """Per configurable node (sorted), the ranks of its config tensors: the output, then
    the operands in order, at most three.

    Args:
        module: a decoded HloModuleProto.
        graph: its graph arrays, when already computed.
    """
    graph = graph if graph is not None else featurize_module(module)
    by_id = {inst["id"]: inst for inst in graph.instructions}
    ranks = []
    for node in configurable_nodes(module, graph):
        inst = graph.instructions[node]
        tensors = [inst] + [by_id[op] for op in inst["operand_ids"]]
        ranks.append([len(t["shape"]["dimensions"]) for t in tensors[:LAYOUT_MAX_TENSORS]])
    return ranks


def _order(rank: int, rng: np.random.Generator | None) -> list[int]:
    """A minor-to-major order: XLA's default (``rng`` None) or a random one."""
    if rng is None:
        return list(range(rank - 1, -1, -1))[:LAYOUT_MAX_DIMS]
    order = rng.permutation(rank).tolist()
    return order if rank <= _FULL_ORDER_MAX_RANK else order[:2]


def candidate_configs(
    tensor_ranks: list[list[int]], num_configs: int = 64, seed: int = 0, keep_prob: float = 0.5
) -> np.ndarray:
    """Distinct candidate layout configs [c, nc, 18] (c <= ``num_configs``), -1 padded.

    Row 0 is all -1 (the compiler's choice), row 1 XLA's default layouts (minor-to-major
    ``rank-1, ..., 0`` everywhere); the others give each tensor, with probability
    ``1 - keep_prob``, a random order (a full permutation up to rank 4, the two minor-most
    dimensions above, as the collection's searches do) and the default otherwise.

    Args:
        tensor_ranks: per configurable node, its tensors' ranks
            (:func:`config_tensor_ranks`).
        num_configs: how many configs at most (at least 1).
        seed: random seed of the proposals.
        keep_prob: probability that a tensor keeps the default order.
    """
    if num_configs < 1:
        raise ValueError(f"num_configs must be at least 1, got {num_configs}")
    rng = np.random.default_rng(seed)
    nc = len(tensor_ranks)

    def row(random: bool) -> np.ndarray:
        out = np.full((nc, LAYOUT_CONFIG_FEAT_DIM), -1, dtype=np.float32)
        for j, ranks in enumerate(tensor_ranks):
            for t, rank in enumerate(ranks[:LAYOUT_MAX_TENSORS]):
                pick = rng if random and rng.random() >= keep_prob else None
                order = _order(rank, pick)
                out[j, t * LAYOUT_MAX_DIMS : t * LAYOUT_MAX_DIMS + len(order)] = order
        return out

    rows = [np.full((nc, LAYOUT_CONFIG_FEAT_DIM), -1, dtype=np.float32), row(False)]
    seen = {rows[0].tobytes(), rows[1].tobytes()}
    attempts = 0
    while len(rows) < num_configs and attempts < 20 * num_configs:
        attempts += 1
        candidate = row(True)
        if candidate.tobytes() not in seen:
            seen.add(candidate.tobytes())
            rows.append(candidate)
    return np.stack(rows[:num_configs])


@dataclass(frozen=True)
class RankedLayouts:
    """Candidate layout configs of one module, scored by a model (lower = predicted faster).

    ``record`` holds the candidates as its ``node_config_feat`` (runtimes 0: unmeasured);
    ``scores`` [c]; ``ranking`` the config indices, predicted fastest first; ``node_names``
    the instruction name of each configurable node.
    """

    record: LayoutRecord
    scores: np.ndarray
    ranking: np.ndarray
    node_names: list[str]

    def describe(self, top: int = 3) -> str:
        """The ``top`` best-scored configs, node by node (minor-to-major per tensor)."""
        lines = []
        for rank, c in enumerate(self.ranking[:top]):
            config = self.record.node_config_feat[c]
            label = "compiler's choice" if (config == -1).all() else f"config {c}"
            lines.append(f"#{rank + 1}: {label}, score {self.scores[c]:.4f}")
            if (config == -1).all():
                continue
            for name, node in zip(self.node_names, config, strict=True):
                tensors = [node[t * LAYOUT_MAX_DIMS : (t + 1) * LAYOUT_MAX_DIMS] for t in range(3)]
                text = " ".join(
                    "{" + ",".join(str(int(d)) for d in tensor if d >= 0) + "}"
                    for tensor in tensors
                    if (tensor >= 0).any()
                )
                lines.append(f"    {name}: {text or '(default)'}")
        return "\n".join(lines)


def rank_layouts(
    predictor,
    fn: Callable,
    *args,
    stage: str = "before_optimizations",
    num_configs: int = 64,
    seed: int = 0,
    **kwargs,
) -> RankedLayouts:
    """Featurize ``fn``, propose candidate layouts and score them with a trained model.

    Args:
        predictor: a :class:`tpulearn.predict.Predictor` of a layout model, or the path of
            its checkpoint.
        fn, *args, **kwargs, stage: as :func:`hlo_module`.
        num_configs, seed: as :func:`candidate_configs`.

    Raises:
        ValueError: the module has no configurable node (nothing to rank), or the
            checkpoint is not a layout model.
    """
    from ..predict import Predictor

    if not isinstance(predictor, Predictor):
        predictor = Predictor.from_checkpoint(predictor)
    if predictor.task != "layout":
        raise ValueError(
            f"rank_layouts needs a layout model; the checkpoint is a {predictor.task} model"
        )
    module = hlo_module(fn, *args, stage=stage, **kwargs)
    graph = featurize_module(module)
    base = layout_record(module, path=f"{module['name']}.pb", graph=graph)
    if base.node_config_ids.size == 0:
        raise ValueError(
            f"module {module['name']} ({stage}) has no configurable node (convolution, dot "
            "or reshape outside fusions): there is no layout to rank"
        )
    candidates = candidate_configs(config_tensor_ranks(module, graph), num_configs, seed)
    record = layout_record(module, base.node_config_ids, candidates, path=base.path, graph=graph)
    scores = np.asarray(predictor.score_record(record), dtype=np.float64)
    names = [graph.instructions[i]["name"] for i in record.node_config_ids]
    return RankedLayouts(record, scores, np.argsort(scores, kind="stable"), names)
