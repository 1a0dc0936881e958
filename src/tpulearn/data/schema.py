"""The TpuGraphs npz schema: key names, widths, and the error raised when a file breaks it.

Dtypes here are the ones found in the real files (see the project's data notes), not the
ones the official README lists: node opcodes are stored as uint8, everything integral
else as int64, features as float32.
"""

from __future__ import annotations

from pathlib import Path

NODE_FEAT_DIM = 140
TILE_CONFIG_FEAT_DIM = 24
LAYOUT_CONFIG_FEAT_DIM = 18
# Opcode ids run 1..120 in the official vocabulary (0 = unknown); an embedding of 128
# rows covers them with room to spare.
NUM_OPCODES = 128

TILE_KEYS = (
    "node_feat",
    "node_opcode",
    "edge_index",
    "config_feat",
    "config_runtime",
    "config_runtime_normalizers",
)
LAYOUT_KEYS = (
    "node_feat",
    "node_opcode",
    "edge_index",
    "node_config_ids",
    "node_config_feat",
    "config_runtime",
    "node_splits",
)

# Node feature columns (0-based) used by feature transforms.
IS_ROOT = 0  # 1 at the graph's output (root) node
ELEMENT_TYPE = slice(2, 21)  # the element type one-hot (tpulearn.featurize's PRIMITIVE_TYPES)
SHAPE_DIMS = slice(21, 27)  # the six shape dimensions
LAYOUT_MINOR_TO_MAJOR = slice(134, 140)  # layout minor_to_major, zero-padded in the files
# Tile config feature columns: the output tile size along each output dimension.
TILE_OUTPUT_TILE = slice(8, 14)

COLLECTIONS = (
    "tile:xla",
    "layout:xla:default",
    "layout:xla:random",
    "layout:nlp:default",
    "layout:nlp:random",
)
SPLITS = ("train", "valid", "test")


class TpuGraphsFormatError(ValueError):
    """A TpuGraphs file (or folder) does not have the structure the dataset defines.

    The message names the file, the key, what was expected and what was found.
    """

    def __init__(self, path: str | Path, key: str | None, expected: str, found: str):
        self.path = str(path)
        self.key = key
        self.expected = expected
        self.found = found
        where = f"{self.path}: key '{key}'" if key else self.path
        super().__init__(f"{where}: expected {expected}, found {found}")


def parse_collection(name: str) -> tuple[str, str | None, str | None]:
    """Split a collection name into (task, source, search).

    Args:
        name: ``"tile:xla"`` or ``"layout:<xla|nlp>:<default|random>"``.

    Returns:
        ``("tile", "xla", None)`` or ``("layout", source, search)``.
    """
    if name not in COLLECTIONS:
        raise ValueError(f"unknown collection {name!r}; expected one of {', '.join(COLLECTIONS)}")
    parts = name.split(":")
    if parts[0] == "tile":
        return "tile", "xla", None
    return "layout", parts[1], parts[2]


def download_name(collection: str) -> str:
    """The command-line name of a collection in ``scripts/download_tpugraphs.py``:
    ``"tile"`` or ``"layout-<source>-<search>"``."""
    task, source, search = parse_collection(collection)
    return "tile" if task == "tile" else f"layout-{source}-{search}"


def collection_dir(root: str | Path, collection: str, split: str) -> Path:
    """The folder of one split of a collection under a data root laid out as released.

    ``<root>/npz/tile/xla/<split>`` or ``<root>/npz/layout/<source>/<search>/<split>``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    task, source, search = parse_collection(collection)
    if task == "tile":
        return Path(root) / "npz" / "tile" / "xla" / split
    return Path(root) / "npz" / "layout" / source / search / split


def root_above(root: str | Path) -> Path | None:
    """The data root that ``root`` lies inside, when it was given a level too deep.

    A data root is the folder that holds ``npz/``. Given ``<root>/npz`` or a folder below it
    (``<root>/npz/layout/xla``), this returns ``<root>``, so that an error can say which
    folder was meant; None when ``root`` holds ``npz/`` itself or lies in no ``npz`` folder.
    """
    root = Path(root)
    if (root / "npz").is_dir():
        return None
    for folder in (root, *root.parents):
        if folder.name == "npz":
            return folder.parent
    return None
