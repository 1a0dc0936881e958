"""Reading, validating, featurising and streaming TpuGraphs data."""

from .datasets import LayoutDataset, TileDataset, TpuGraphData
from .features import FeatureNormalizer, reencode_minor_to_major, signed_log1p, tensor_rank
from .io import (
    LayoutRecord,
    TileRecord,
    read_config_runtime,
    read_graph,
    read_layout,
    read_tile,
)
from .sample import eval_indices_path, load_eval_indices, sample_root
from .sampling import (
    AllConfigsSampler,
    ConfigSampler,
    FastBiasedSampler,
    FixedIndicesSampler,
    UniformSampler,
    dedup_configs,
)
from .schema import COLLECTIONS, SPLITS, TpuGraphsFormatError, collection_dir, parse_collection

__all__ = [
    "COLLECTIONS",
    "SPLITS",
    "AllConfigsSampler",
    "ConfigSampler",
    "FastBiasedSampler",
    "FeatureNormalizer",
    "FixedIndicesSampler",
    "LayoutDataset",
    "LayoutRecord",
    "TileDataset",
    "TileRecord",
    "TpuGraphData",
    "TpuGraphsFormatError",
    "UniformSampler",
    "collection_dir",
    "dedup_configs",
    "eval_indices_path",
    "load_eval_indices",
    "parse_collection",
    "read_config_runtime",
    "read_graph",
    "read_layout",
    "read_tile",
    "reencode_minor_to_major",
    "sample_root",
    "signed_log1p",
    "tensor_rank",
]
