"""Featurize your own XLA programs into TpuGraphs records.

Reads the protobuf messages behind the dataset with a small wire-format decoder of its own
(no protobuf dependency) and encodes them exactly as the released npz files:

    from tpulearn.featurize import featurize, write_npz
    record = featurize("module.pb")      # HloModuleProto, HloProto dump or ModuleTuningData
    write_npz(record, "graph.npz")       # read_layout / LayoutDataset / Predictor accept it
    predictor.score_record(record)       # or score it in memory (tpulearn.predict.Predictor)

``tpulearn-featurize module.pb -o graph.npz`` does the same from a shell, and
:mod:`tpulearn.featurize.from_jax` featurizes and scores a jitted JAX function
(``pip install tpulearn[jax]``).
"""

from .features import NODE_FEATURE_NAMES, ModuleGraph, featurize_module
from .opcodes import OPCODE_IDS, OPCODE_NAMES
from .proto import (
    read_hlo_module,
    read_hlo_proto,
    read_message,
    read_module_tuning_data,
    read_tuning_data,
)
from .records import (
    CONFIGURABLE_OPCODES,
    configurable_nodes,
    featurize,
    layout_record,
    layout_record_from_tuning,
    tile_records,
    write_npz,
)
from .wire import FeaturizeError

__all__ = [
    "CONFIGURABLE_OPCODES",
    "FeaturizeError",
    "ModuleGraph",
    "NODE_FEATURE_NAMES",
    "OPCODE_IDS",
    "OPCODE_NAMES",
    "configurable_nodes",
    "featurize",
    "featurize_module",
    "layout_record",
    "layout_record_from_tuning",
    "read_hlo_module",
    "read_hlo_proto",
    "read_message",
    "read_module_tuning_data",
    "read_tuning_data",
    "tile_records",
    "write_npz",
]
