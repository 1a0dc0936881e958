"""Schemas and readers of the messages tpulearn featurizes.

Longer than most modules: one idea, the messages read, whose schema declarations (one
per message, field numbers from upstream) are data that must sit next to their readers.

Field numbers come from XLA's public ``xla/service/hlo.proto`` and ``xla/xla_data.proto``
and from the TpuGraphs repository's ``tpu_graphs/proto/tuning.proto``. Only the fields the
featurizer reads are declared; everything else (metadata, literals, backend configs,
shardings, schedules) is skipped without being parsed.

Readers:

- :func:`read_hlo_module`: an ``xla.HloModuleProto`` (what ``jax`` and XLA serialise).
- :func:`read_hlo_proto`: an ``xla.HloProto`` (XLA's ``--xla_dump_hlo_as_proto`` files),
  which wraps the module in its field ``hlo_module``.
- :func:`read_module_tuning_data`: a ``tpu_graphs.ModuleTuningData`` (one module and its
  layout runs: the layout collections' source).
- :func:`read_tuning_data`: a ``tpu_graphs.TuningData`` (many modules with tile runs: the
  tile collection's source).
- :func:`read_message`: any of these, told apart by trying them in turn.
"""

from __future__ import annotations

from pathlib import Path

from .wire import FeaturizeError, Field, Schema, decode

# --- xla_data.proto ---------------------------------------------------------------------

LAYOUT = Schema("LayoutProto", {1: Field("minor_to_major", "int64", repeated=True)})
SHAPE = Schema(
    "ShapeProto",
    {
        2: Field("element_type", "enum"),
        3: Field("dimensions", "int64", repeated=True),
        # Only the number of tuple elements is featurized; nested shapes stay unparsed.
        4: Field("tuple_shapes", "count", repeated=True),
        5: Field("layout", "message", message=LAYOUT),
        6: Field("is_dynamic_dimension", "bool", repeated=True),
    },
)
WINDOW_DIMENSION = Schema(
    "WindowDimension",
    {
        1: Field("size", "int64"),
        2: Field("stride", "int64"),
        3: Field("padding_low", "int64"),
        4: Field("padding_high", "int64"),
        5: Field("window_dilation", "int64"),
        6: Field("base_dilation", "int64"),
        7: Field("window_reversal", "bool"),
    },
)
WINDOW = Schema(
    "Window", {1: Field("dimensions", "message", repeated=True, message=WINDOW_DIMENSION)}
)
CONVOLUTION_DIMENSION_NUMBERS = Schema(
    "ConvolutionDimensionNumbers",
    {
        7: Field("input_batch_dimension", "int64"),
        8: Field("input_feature_dimension", "int64"),
        11: Field("input_spatial_dimensions", "int64", repeated=True),
        3: Field("kernel_input_feature_dimension", "int64"),
        4: Field("kernel_output_feature_dimension", "int64"),
        6: Field("kernel_spatial_dimensions", "int64", repeated=True),
        9: Field("output_batch_dimension", "int64"),
        10: Field("output_feature_dimension", "int64"),
        12: Field("output_spatial_dimensions", "int64", repeated=True),
    },
)
PADDING_DIMENSION = Schema(
    "PaddingConfigDimension",
    {
        1: Field("edge_padding_low", "int64"),
        2: Field("edge_padding_high", "int64"),
        3: Field("interior_padding", "int64"),
    },
)
PADDING_CONFIG = Schema(
    "PaddingConfig",
    {1: Field("dimensions", "message", repeated=True, message=PADDING_DIMENSION)},
)
EXECUTION_PROFILE = Schema("ExecutionProfile", {4: Field("compute_time_ns", "int64")})

# --- hlo.proto --------------------------------------------------------------------------

SLICE_DIMENSIONS = Schema(
    "SliceDimensions",
    {1: Field("start", "int64"), 2: Field("limit", "int64"), 3: Field("stride", "int64")},
)
INSTRUCTION = Schema(
    "HloInstructionProto",
    {
        1: Field("name", "string"),
        2: Field("opcode", "string"),
        3: Field("shape", "message", message=SHAPE),
        9: Field("parameter_number", "int64"),
        14: Field("dimensions", "int64", repeated=True),
        15: Field("window", "message", message=WINDOW),
        16: Field(
            "convolution_dimension_numbers", "message", message=CONVOLUTION_DIMENSION_NUMBERS
        ),
        50: Field("feature_group_count", "int64"),
        58: Field("batch_group_count", "int64"),
        17: Field("slice_dimensions", "message", repeated=True, message=SLICE_DIMENSIONS),
        20: Field("dynamic_slice_sizes", "int64", repeated=True),
        21: Field("padding_config", "message", message=PADDING_CONFIG),
        35: Field("id", "int64"),
        36: Field("operand_ids", "int64", repeated=True),
        38: Field("called_computation_ids", "int64", repeated=True),
        60: Field("is_stable", "bool"),
    },
)
COMPUTATION = Schema(
    "HloComputationProto",
    {
        1: Field("name", "string"),
        2: Field("instructions", "message", repeated=True, message=INSTRUCTION),
        5: Field("id", "int64"),
        6: Field("root_id", "int64"),
    },
)
MODULE = Schema(
    "HloModuleProto",
    {
        1: Field("name", "string"),
        2: Field("entry_computation_name", "string"),
        6: Field("entry_computation_id", "int64"),
        3: Field("computations", "message", repeated=True, message=COMPUTATION),
        5: Field("id", "int64"),
    },
)
HLO_PROTO = Schema("HloProto", {1: Field("hlo_module", "message", message=MODULE, presence=True)})

# --- tpu_graphs tuning.proto ------------------------------------------------------------

TILE_SIZE_CONFIG = Schema(
    "TileSizeConfig",
    {
        1: Field("kernel_bounds", "int64", repeated=True),
        2: Field("output_bounds", "int64", repeated=True),
        3: Field("input_bounds", "int64", repeated=True),
        4: Field("iteration_bounds", "int64", repeated=True),
    },
)
OP_CONFIG = Schema(
    "HloOpConfig",
    {1: Field("tile_size_config", "message", message=TILE_SIZE_CONFIG, presence=True)},
)
TENSOR_LAYOUT = Schema("TensorLayoutConfig", {1: Field("dims", "int32", repeated=True)})
NODE_LAYOUT = Schema(
    "NodeLayoutConfig", {1: Field("tensors", "message", repeated=True, message=TENSOR_LAYOUT)}
)
LAYOUT_CONFIG = Schema(
    "LayoutConfig", {1: Field("nodes", "message", repeated=True, message=NODE_LAYOUT)}
)
MODULE_CONFIG = Schema(
    "HloModuleConfig",
    {1: Field("layout_config", "message", message=LAYOUT_CONFIG, presence=True)},
)
CONFIG_PROFILE = Schema(
    "ConfigProfile",
    {
        1: Field("op_config", "message", message=OP_CONFIG, presence=True),
        2: Field("module_config", "message", message=MODULE_CONFIG, presence=True),
        3: Field("error", "bool"),
        4: Field("profile", "message", message=EXECUTION_PROFILE, presence=True),
        5: Field("is_default", "bool"),
    },
)
MODULE_TUNING_DATA = Schema(
    "ModuleTuningData",
    {
        1: Field("module", "message", message=MODULE, presence=True),
        2: Field("fingerprint", "uint64"),
        3: Field("runs", "message", repeated=True, message=CONFIG_PROFILE),
        4: Field("config_index_to_node", "uint64", repeated=True),
    },
)
TUNING_DATA = Schema(
    "TuningData", {1: Field("modules", "message", repeated=True, message=MODULE_TUNING_DATA)}
)

KINDS = ("module", "hlo", "tuning", "tile")
_KIND_NAMES = {
    "module": "an xla.HloModuleProto",
    "hlo": "an xla.HloProto",
    "tuning": "a tpu_graphs.ModuleTuningData",
    "tile": "a tpu_graphs.TuningData",
}


def _read_bytes(source: str | Path | bytes, path: str | Path | None) -> tuple[bytes, str | Path]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), path if path is not None else "<bytes>"
    path = Path(source)
    if not path.exists():
        raise FeaturizeError(path, None, "an existing protobuf file", "no such file")
    if path.is_dir():
        raise FeaturizeError(path, None, "a protobuf file", "a directory")
    return path.read_bytes(), path


def check_module(module: dict, path: str | Path | None, where: str = "module") -> dict:
    """The structural facts the featurizer relies on, checked with file-naming errors.

    A module needs at least one computation with instructions; instruction ids are unique;
    every operand, callee and root refers to something that exists.
    """
    comps = module["computations"]
    if not comps:
        raise FeaturizeError(path, f"{where}.computations", "at least one computation", "none")
    comp_ids: set[int] = set()
    inst_ids: set[int] = set()
    for c, comp in enumerate(comps):
        here = f"{where}.computations[{c}]"
        if comp["id"] in comp_ids:
            raise FeaturizeError(
                path, f"{here}.id", "unique computation ids", f"{comp['id']} twice"
            )
        comp_ids.add(comp["id"])
        if not comp["instructions"]:
            raise FeaturizeError(path, f"{here}.instructions", "at least one instruction", "none")
        local = set()
        for i, inst in enumerate(comp["instructions"]):
            if inst["id"] in inst_ids:
                raise FeaturizeError(
                    path,
                    f"{here}.instructions[{i}].id",
                    "unique instruction ids",
                    f"{inst['id']} twice",
                )
            inst_ids.add(inst["id"])
            local.add(inst["id"])
            if not inst["opcode"]:
                raise FeaturizeError(path, f"{here}.instructions[{i}].opcode", "an opcode", "none")
        if comp["root_id"] not in local:
            raise FeaturizeError(
                path,
                f"{here}.root_id",
                "the id of one of the computation's instructions",
                f"{comp['root_id']}",
            )
    for c, comp in enumerate(comps):
        for i, inst in enumerate(comp["instructions"]):
            here = f"{where}.computations[{c}].instructions[{i}]"
            for op in inst["operand_ids"]:
                if op not in inst_ids:
                    raise FeaturizeError(
                        path, f"{here}.operand_ids", "ids of instructions of the module", f"{op}"
                    )
            for callee in inst["called_computation_ids"]:
                if callee not in comp_ids:
                    raise FeaturizeError(
                        path,
                        f"{here}.called_computation_ids",
                        "ids of computations of the module",
                        f"{callee}",
                    )
    return module


def read_hlo_module(source: str | Path | bytes, path: str | Path | None = None) -> dict:
    """An ``xla.HloModuleProto`` from a file or bytes, decoded and checked."""
    data, path = _read_bytes(source, path)
    if not data:
        raise FeaturizeError(path, None, f"{_KIND_NAMES['module']} message", "an empty file")
    return check_module(decode(data, MODULE, path, "module"), path)


def read_hlo_proto(source: str | Path | bytes, path: str | Path | None = None) -> dict:
    """The module of an ``xla.HloProto`` (XLA's ``*.hlo.pb`` dumps), decoded and checked."""
    data, path = _read_bytes(source, path)
    msg = decode(data, HLO_PROTO, path)
    if msg["hlo_module"] is None:
        raise FeaturizeError(path, "hlo_module", "an HloModuleProto", "no such field")
    return check_module(msg["hlo_module"], path, "hlo_module")


def read_module_tuning_data(source: str | Path | bytes, path: str | Path | None = None) -> dict:
    """A ``tpu_graphs.ModuleTuningData``: ``module``, ``runs``, ``config_index_to_node``."""
    data, path = _read_bytes(source, path)
    msg = decode(data, MODULE_TUNING_DATA, path)
    if msg["module"] is None:
        raise FeaturizeError(path, "module", "an HloModuleProto", "no such field")
    check_module(msg["module"], path)
    return msg


def read_tuning_data(source: str | Path | bytes, path: str | Path | None = None) -> dict:
    """A ``tpu_graphs.TuningData``: ``modules``, a list of ModuleTuningData."""
    data, path = _read_bytes(source, path)
    msg = decode(data, TUNING_DATA, path)
    if not msg["modules"]:
        raise FeaturizeError(path, "modules", "at least one ModuleTuningData", "none")
    for m, mod in enumerate(msg["modules"]):
        if mod["module"] is not None:
            check_module(mod["module"], path, f"modules[{m}].module")
    return msg


_READERS = {
    "module": read_hlo_module,
    "hlo": read_hlo_proto,
    "tuning": read_module_tuning_data,
    "tile": read_tuning_data,
}


def read_message(
    source: str | Path | bytes, kind: str = "auto", path: str | Path | None = None
) -> tuple[str, dict]:
    """Read one of the supported messages; ``kind="auto"`` tries each in turn.

    Returns:
        ``(kind, message)`` with ``kind`` one of ``"module"``, ``"hlo"``, ``"tuning"``,
        ``"tile"``.

    Raises:
        FeaturizeError: the input is none of them (with ``auto``, the message lists why each
            reading failed).
    """
    data, path = _read_bytes(source, path)
    if kind != "auto":
        if kind not in _READERS:
            raise ValueError(f"unknown message kind {kind!r}; expected auto or one of {KINDS}")
        return kind, _READERS[kind](data, path)
    if not data:
        raise FeaturizeError(path, None, "a protobuf message", "an empty file")
    reasons = []
    # The wire types of the top-level fields tell most kinds apart; strict decoding and the
    # module checks reject the rest.
    for candidate in ("tuning", "module", "hlo", "tile"):
        try:
            msg = _READERS[candidate](data, path)
        except FeaturizeError as exc:
            field = f"field '{exc.field}': " if exc.field else ""
            reasons.append(
                f"as {_KIND_NAMES[candidate]}: {field}expected {exc.expected}, found {exc.found}"
            )
            continue
        # An HloProto holding only its module is, byte for byte, a ModuleTuningData holding
        # only its module: without tuning fields it is read as the plainer message.
        if candidate == "tuning" and not (
            msg["runs"] or msg["config_index_to_node"] or msg["fingerprint"]
        ):
            return "hlo", msg["module"]
        return candidate, msg
    expected = "an HloModuleProto, HloProto, ModuleTuningData or TuningData message"
    if _looks_like_text(data):
        # An HLO text dump (HloModule ...) instead of the binary protobuf.
        raise FeaturizeError(
            path,
            None,
            f"{expected} (binary protobuf: XLA_FLAGS='--xla_dump_to=DIR "
            "--xla_dump_hlo_as_proto' writes *.hlo.pb)",
            f"text starting {data[:40].decode('ascii', 'replace').splitlines()[0]!r}",
        )
    raise FeaturizeError(
        path, None, expected, "a message none of them reads (" + "; ".join(reasons) + ")"
    )


def _looks_like_text(data: bytes) -> bool:
    """Whether the head of ``data`` is printable ASCII (a binary protobuf's length
    varints and field tags put other bytes there)."""
    head = data[:512]
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)
