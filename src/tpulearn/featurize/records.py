"""Protobuf messages -> the records :mod:`tpulearn.data` reads, and npz files of them.

Longer than most modules: one idea, the conversion rules of the TpuGraphs tuning-data
iterator (which runs become rows, and how), kept in one place so they can be read whole.

A layout source (an HloModuleProto, an HloProto dump or a ModuleTuningData) becomes one
:class:`~tpulearn.data.LayoutRecord`; a tile source (a TuningData of kernels) becomes one
:class:`~tpulearn.data.TileRecord` per kernel. Records have the fields, dtypes and
invariants of the records :func:`tpulearn.data.read_layout` / :func:`~tpulearn.data.read_tile`
return, so every dataset, model and :mod:`tpulearn.predict` accepts them;
:func:`write_npz` stores one as a file of the released layout (written atomically).

Which runs become config rows follows the TpuGraphs tuning-data iterator:

- layout: a run with a module config, no error flag and a profile; its row holds, per
  configurable node, up to three tensors' minor-to-major (6 entries each, -1 padded), its
  runtime the profile's ``compute_time_ns``. Runs with the error flag carry runtime 0 and
  are dropped. The release shuffles the rows; this keeps the runs' order.
- tile: a run with no error flag and a runtime above 1 ns; its 24 features are the kernel,
  output and input bounds (6 entries, sum, product; an empty list's product is 0), and the
  normaliser is the runtime of the run marked ``is_default``.

A module without runs gets one config row, all -1 ("the compiler's choice"), with runtime
0: an unlabelled graph, like a test file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..data.io import LayoutRecord, TileRecord
from ..data.schema import LAYOUT_CONFIG_FEAT_DIM
from .features import ModuleGraph, featurize_module, sequence_features
from .proto import read_message
from .wire import FeaturizeError

LAYOUT_MAX_TENSORS, LAYOUT_MAX_DIMS = 3, 6
#: Opcodes of the nodes whose layouts a layout config sets (outside fusion computations).
CONFIGURABLE_OPCODES = frozenset({"convolution", "dot", "reshape"})


def fused_computations(module: dict) -> set[int]:
    """Ids of the computations inside fusions: those a ``fusion`` instruction calls, and
    (transitively) every computation those call."""
    calls = {
        c["id"]: [k for inst in c["instructions"] for k in inst["called_computation_ids"]]
        for c in module["computations"]
    }
    todo = [
        k
        for c in module["computations"]
        for inst in c["instructions"]
        if inst["opcode"] == "fusion"
        for k in inst["called_computation_ids"]
    ]
    fused: set[int] = set()
    while todo:
        comp = todo.pop()
        if comp not in fused:
            fused.add(comp)
            todo.extend(calls.get(comp, ()))
    return fused


def configurable_nodes(module: dict, graph: ModuleGraph) -> np.ndarray:
    """Node indices whose layouts a layout config sets, sorted.

    The rule, inferred from the released files: every ``convolution``, ``dot`` and
    ``reshape`` instruction outside fusion computations, in any other computation (entry,
    while bodies, ...). It reproduces ``node_config_ids`` of all eight layout files bundled
    with tpulearn (six distinct graphs; the reshapes left out are exactly those inside
    fused computations) and the ``config_index_to_node`` of the bundled tuning protobuf.
    """
    fused = fused_computations(module)
    ids = [
        graph.node_index[inst["id"]]
        for c in module["computations"]
        if c["id"] not in fused
        for inst in c["instructions"]
        if inst["opcode"] in CONFIGURABLE_OPCODES
    ]
    return np.array(sorted(ids), dtype=np.int64)


def layout_row(layout_config: dict, num_nodes: int, path, where: str) -> np.ndarray:
    """One config row [num_nodes, 18] from a ``LayoutConfig`` message."""
    nodes = layout_config["nodes"]
    if len(nodes) != num_nodes:
        raise FeaturizeError(
            path,
            f"{where}.nodes",
            f"{num_nodes} node layouts (one per configurable node)",
            f"{len(nodes)}",
        )
    row = np.full((num_nodes, LAYOUT_CONFIG_FEAT_DIM), -1, dtype=np.int64)
    for j, node in enumerate(nodes):
        tensors = node["tensors"]
        if len(tensors) > LAYOUT_MAX_TENSORS:
            raise FeaturizeError(
                path,
                f"{where}.nodes[{j}].tensors",
                f"at most {LAYOUT_MAX_TENSORS} tensors",
                f"{len(tensors)}",
            )
        for t, tensor in enumerate(tensors):
            dims = tensor["dims"][:LAYOUT_MAX_DIMS]
            row[j, t * LAYOUT_MAX_DIMS : t * LAYOUT_MAX_DIMS + len(dims)] = dims
    return row.astype(np.float32)


def _record_path(path, name: str) -> Path:
    return Path(path) if path not in (None, "<bytes>") else Path(f"{name}.pb")


def layout_record(
    module: dict,
    node_config_ids: np.ndarray | None = None,
    node_config_feat: np.ndarray | None = None,
    config_runtime: np.ndarray | None = None,
    path: str | Path | None = None,
    graph: ModuleGraph | None = None,
) -> LayoutRecord:
    """A layout record of a decoded module with the given configs.

    Args:
        module: a decoded, checked HloModuleProto.
        node_config_ids: [nc] configurable node indices (default: :func:`configurable_nodes`).
        node_config_feat: [c, nc, 18] config rows (default: one row of -1, the compiler's
            choice).
        config_runtime: [c] runtimes in ns (default: zeros, unlabelled).
        path: the source file (the record's ``path``; its stem names the graph).
        graph: the module's graph arrays, when already computed.
    """
    graph = graph if graph is not None else featurize_module(module, path)
    ids = configurable_nodes(module, graph) if node_config_ids is None else node_config_ids
    ids = np.asarray(ids, dtype=np.int64)
    if node_config_feat is None:
        node_config_feat = np.full((1, ids.shape[0], LAYOUT_CONFIG_FEAT_DIM), -1, np.float32)
    feat = np.asarray(node_config_feat, dtype=np.float32)
    if feat.ndim != 3 or feat.shape[1:] != (ids.shape[0], LAYOUT_CONFIG_FEAT_DIM):
        raise ValueError(
            f"node_config_feat: expected shape (*, {ids.shape[0]}, {LAYOUT_CONFIG_FEAT_DIM}), "
            f"found {feat.shape}"
        )
    if config_runtime is None:
        config_runtime = np.zeros(feat.shape[0], dtype=np.int64)
    runtime = np.asarray(config_runtime, dtype=np.int64)
    if runtime.shape != (feat.shape[0],):
        raise ValueError(
            f"config_runtime: expected shape ({feat.shape[0]},), found {runtime.shape}"
        )
    record_path = _record_path(path, graph.name)
    return LayoutRecord(
        path=record_path,
        stem=record_path.stem,
        node_feat=graph.node_feat,
        node_opcode=graph.node_opcode,
        edge_index=graph.edge_index,
        node_config_ids=ids,
        node_config_feat=feat,
        config_runtime=runtime,
        node_splits=graph.node_splits,
        labelled=bool(runtime.any()),
    )


def _valid_layout_runs(msg: dict) -> list[tuple[int, dict]]:
    return [
        (r, run)
        for r, run in enumerate(msg["runs"])
        if run["module_config"] is not None and not run["error"] and run["profile"] is not None
    ]


def layout_record_from_tuning(msg: dict, path: str | Path | None = None) -> LayoutRecord:
    """The layout record of a decoded ModuleTuningData: its module and its valid runs."""
    module = msg["module"]
    graph = featurize_module(module, path)
    n = graph.num_nodes
    if msg["config_index_to_node"]:
        # Node indices in the order of the encoded graph (not instruction ids).
        if max(msg["config_index_to_node"]) >= n:
            raise FeaturizeError(
                path,
                "config_index_to_node",
                f"node indices below {n}",
                f"{max(msg['config_index_to_node'])}",
            )
        ids = np.array(msg["config_index_to_node"], dtype=np.int64)
    else:
        ids = configurable_nodes(module, graph)
    order = np.argsort(ids, kind="stable")  # the record's ids are sorted
    ids = ids[order]
    if ids.size > 1 and (np.diff(ids) == 0).any():
        raise FeaturizeError(path, "config_index_to_node", "distinct node indices", "repeats")

    rows, runtimes = [], []
    for r, run in _valid_layout_runs(msg):
        where = f"runs[{r}].module_config.layout_config"
        layout = run["module_config"]["layout_config"]
        if layout is None:
            raise FeaturizeError(path, where, "a LayoutConfig", "no such field")
        if run["profile"]["compute_time_ns"] <= 0:
            raise FeaturizeError(
                path, f"runs[{r}].profile.compute_time_ns", "a runtime above 0", "0"
            )
        rows.append(layout_row(layout, ids.shape[0], path, where)[order])
        runtimes.append(run["profile"]["compute_time_ns"])
    if not rows:
        if msg["runs"]:
            warnings.warn(
                f"{path or '<bytes>'}: none of the {len(msg['runs'])} runs is valid (module "
                "config, no error, a profile); the record holds the compiler's default config only",
                stacklevel=2,
            )
        return layout_record(module, ids, path=path, graph=graph)
    return layout_record(module, ids, np.stack(rows), np.array(runtimes), path, graph)


def _signed_hex(value: int) -> str:
    value = value - (1 << 64) if value >= 1 << 63 else value
    return f"-{-value:x}" if value < 0 else f"{value:x}"


def tile_records(msg: dict, path: str | Path | None = None) -> list[TileRecord]:
    """One tile record per kernel of a decoded TuningData.

    Kernels are kept as the TpuGraphs iterator keeps them: a module with more than one run,
    all of them carrying a tile size config; others are skipped with a warning. A record's
    stem is ``<module name>_<fingerprint as signed hex>``, as the released file names.

    Raises:
        FeaturizeError: no kernel to rank (a file that would give no record at all), or a
            kernel without a valid default run.
    """
    records, skipped = [], []
    for m, mod in enumerate(msg["modules"]):
        runs = mod["runs"]
        usable = all(
            run["op_config"] is not None and run["op_config"]["tile_size_config"] is not None
            for run in runs
        )
        if mod["module"] is None or len(runs) <= 1 or not usable:
            skipped.append(m)
            continue
        valid = [
            run
            for run in runs
            if not run["error"]
            and run["profile"] is not None
            and run["profile"]["compute_time_ns"] > 1
        ]
        default = next((run for run in valid if run["is_default"]), None)
        if default is None:
            raise FeaturizeError(
                path,
                f"modules[{m}].runs",
                "a valid run marked is_default (the normaliser)",
                "none",
            )
        feat = [
            sum(
                (
                    sequence_features(run["op_config"]["tile_size_config"][key], 6, empty_product=0)
                    for key in ("kernel_bounds", "output_bounds", "input_bounds")
                ),
                [],
            )
            for run in valid
        ]
        graph = featurize_module(mod["module"], path)
        runtime = np.array([run["profile"]["compute_time_ns"] for run in valid], dtype=np.int64)
        stem = f"{graph.name}_{_signed_hex(mod['fingerprint'])}"
        records.append(
            TileRecord(
                path=_record_path(path, graph.name).with_name(f"{stem}.npz"),
                stem=stem,
                node_feat=graph.node_feat,
                node_opcode=graph.node_opcode,
                edge_index=graph.edge_index,
                config_feat=np.array(feat, dtype=np.int64).astype(np.float32).reshape(-1, 24),
                config_runtime=runtime,
                config_runtime_normalizers=np.full_like(
                    runtime, default["profile"]["compute_time_ns"]
                ),
                labelled=bool(runtime.any()),
            )
        )
    if not records:
        raise FeaturizeError(
            path,
            "modules",
            "at least one kernel to rank: a module with more than one run, each with a tile "
            "size config",
            f"{len(msg['modules'])} module(s), none of them one",
        )
    if skipped:
        warnings.warn(
            f"{path or '<bytes>'}: skipped {len(skipped)} module(s) without tile runs to rank "
            f"(modules {skipped[:10]}): a kernel needs more than one run, each with a tile "
            "size config",
            stacklevel=2,
        )
    return records


def featurize(source: str | Path | bytes, kind: str = "auto") -> LayoutRecord | list[TileRecord]:
    """Featurize a protobuf file (or its bytes).

    Args:
        source: an HloModuleProto, an HloProto (XLA dump), a ModuleTuningData or a
            TuningData, as a path or bytes.
        kind: ``"auto"`` (tell them apart), ``"module"``, ``"hlo"``, ``"tuning"`` or
            ``"tile"``.

    Returns:
        A :class:`~tpulearn.data.LayoutRecord`, or a list of
        :class:`~tpulearn.data.TileRecord` for a TuningData.

    Raises:
        FeaturizeError: the input is damaged or not one of those messages.
    """
    path = None if isinstance(source, (bytes, bytearray, memoryview)) else Path(source)
    kind, msg = read_message(source, kind, path)
    if kind == "tile":
        return tile_records(msg, path)
    if kind == "tuning":
        return layout_record_from_tuning(msg, path)
    return layout_record(msg, path=path)


def record_arrays(record: LayoutRecord | TileRecord) -> dict[str, np.ndarray]:
    """The npz members of a record, with the dtypes of the released files."""
    arrays = {
        "node_feat": np.asarray(record.node_feat, dtype=np.float32),
        "node_opcode": np.asarray(record.node_opcode).astype(np.uint8),
        "edge_index": np.asarray(record.edge_index, dtype=np.int64).reshape(-1, 2),
    }
    if isinstance(record, TileRecord):
        arrays["config_feat"] = np.asarray(record.config_feat, dtype=np.float32)
        arrays["config_runtime"] = np.asarray(record.config_runtime, dtype=np.int64)
        arrays["config_runtime_normalizers"] = np.asarray(
            record.config_runtime_normalizers, dtype=np.int64
        )
    else:
        arrays["node_config_feat"] = np.asarray(record.node_config_feat, dtype=np.float32)
        arrays["node_config_ids"] = np.asarray(record.node_config_ids, dtype=np.int64)
        arrays["config_runtime"] = np.asarray(record.config_runtime, dtype=np.int64)
        arrays["node_splits"] = np.asarray(record.node_splits, dtype=np.int64).reshape(1, -1)
    return arrays


def write_npz(record: LayoutRecord | TileRecord, out: str | Path) -> Path:
    """Write a record as a compressed npz of the released layout, atomically (a temporary
    file in the same folder, then a rename), and return the path."""
    out = Path(out)
    if out.suffix != ".npz":
        raise ValueError(f"{out}: expected a file name ending in .npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **record_arrays(record))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
