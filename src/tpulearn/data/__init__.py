"""Reading, validating, featurising and streaming TpuGraphs data.

Names are imported lazily, so that ``tpulearn.data.schema`` or the download script do not
pay for importing torch and PyG.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CollectionData": "collection",
    "LayoutDataset": "datasets",
    "TileDataset": "datasets",
    "TpuGraphData": "items",
    "FeatureNormalizer": "features",
    "reencode_minor_to_major": "features",
    "signed_log1p": "features",
    "tensor_rank": "features",
    "tile_config_features": "features",
    "tile_layout_features": "features",
    "LayoutRecord": "io",
    "TileRecord": "io",
    "read_config_runtime": "io",
    "read_graph": "io",
    "read_layout": "io",
    "read_layout_graph": "io",
    "read_tile": "io",
    "ITEM_BYTES": "items",
    "item_configs": "items",
    "layout_item": "items",
    "tile_item": "items",
    "eval_indices_path": "sample",
    "load_eval_indices": "sample",
    "sample_root": "sample",
    "AllConfigsSampler": "sampling",
    "ConfigSampler": "sampling",
    "FastBiasedSampler": "sampling",
    "FixedIndicesSampler": "sampling",
    "UniformSampler": "sampling",
    "copy_of": "sampling",
    "dedup_configs": "sampling",
    "mean_of_copies": "sampling",
    "COLLECTIONS": "schema",
    "SPLITS": "schema",
    "TpuGraphsFormatError": "schema",
    "collection_dir": "schema",
    "parse_collection": "schema",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tpulearn.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
