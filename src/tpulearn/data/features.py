"""Node and config feature transforms: layout re-encoding, tile configs along the output
layout, log scaling, normalisation.

Raw TpuGraphs node features span many orders of magnitude (shape products reach ~1e9),
so models see them normalised per column with statistics from the train split only. The
fitted statistics are plain numbers (:meth:`FeatureNormalizer.state_dict`) that travel in
checkpoints or in a JSON file next to the data, so evaluation reuses exactly them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .schema import ELEMENT_TYPE, IS_ROOT, LAYOUT_MINOR_TO_MAJOR, SHAPE_DIMS, TILE_OUTPUT_TILE

# Columns :func:`tile_layout_features` appends to the 24 tile config features.
TILE_LAYOUT_DIM = 18

# Bytes per element of each element type column (2-20: invalid, pred, s8, s16, s32, s64,
# u8, u16, u32, u64, f16, f32, f64, bf16, c64, c128, tuple, opaque, token); 0: no width.
_ELEMENT_BYTES = np.array([0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 2, 8, 16, 0, 0, 0], np.int8)
DEFAULT_ELEMENT_BYTES = 4  # where a node's type has no width (tuples, tokens) or none is set


def element_bytes(node_feat: np.ndarray) -> np.ndarray:
    """[n] int8 bytes per element of every node's output, from the element type one-hot
    (node features 2-20); :data:`DEFAULT_ELEMENT_BYTES` where the type has no width."""
    onehot = node_feat[:, ELEMENT_TYPE]
    width = _ELEMENT_BYTES[onehot.argmax(axis=1)]
    return np.where(onehot.any(axis=1) & (width > 0), width, DEFAULT_ELEMENT_BYTES).astype(np.int8)


def tensor_rank(node_feat: np.ndarray) -> np.ndarray:
    """Rank of each node's output tensor, read from the shape dimensions (columns 21-26).

    Trailing zero dimensions are padding; a tuple or scalar has rank 0.

    Args:
        node_feat: [num_nodes, 140] raw node features.

    Returns:
        [num_nodes] int64 ranks in 0..6.
    """
    nonzero = node_feat[:, SHAPE_DIMS] != 0
    width = nonzero.shape[1]
    last = width - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 0).astype(np.int64)


def reencode_minor_to_major(node_feat: np.ndarray, pad_value: float = -1.0) -> np.ndarray:
    """Mark the padding of the layout minor_to_major columns (134-139) unambiguously.

    The files pad minor_to_major with 0, which is also a valid dimension index; entries at
    positions >= the tensor rank are padding and become ``pad_value``.

    Args:
        node_feat: [num_nodes, 140] raw node features (not modified).
        pad_value: value written into padding entries.

    Returns:
        A copy of ``node_feat`` with the padding entries replaced.
    """
    out = np.array(node_feat, dtype=np.float32, copy=True)
    rank = tensor_rank(node_feat)
    positions = np.arange(LAYOUT_MINOR_TO_MAJOR.stop - LAYOUT_MINOR_TO_MAJOR.start)
    padding = positions[None, :] >= rank[:, None]
    block = out[:, LAYOUT_MINOR_TO_MAJOR]
    block[padding] = pad_value
    out[:, LAYOUT_MINOR_TO_MAJOR] = block
    return out


def tile_layout_features(node_feat: np.ndarray, config_feat: np.ndarray) -> np.ndarray:
    """Each config's output tile read along the kernel output's minor-to-major order.

    The config features give the tile size per output dimension (columns 8-13) in the
    dimensions' order; which of them are minor (lanes, sublanes: what padding and the
    memory layout act on) is in the root node's layout (node features 134-139). For
    each position p of that order (p = 0: the most minor dimension) below the root's
    rank: the tile size along the dimension it names, that dimension's size, and the
    tiles along it (``ceil(size / tile)``); 0 past the rank. A model would otherwise
    have to gather the tile of the minor dimension through an index it reads as a
    number.

    The root is the last node flagged ``is_root`` (node feature 0), else the last node.

    Args:
        node_feat: [num_nodes, 140] raw node features (zero-padded layouts, as in files).
        config_feat: [num_configs, 24] raw tile config features.

    Returns:
        [num_configs, 18] float32: the tile sizes, dimension sizes and tile counts of
        positions 0-5, in that order.
    """
    config_feat = np.asarray(config_feat, dtype=np.float64)
    flagged = np.flatnonzero(node_feat[:, IS_ROOT] != 0)
    root = node_feat[flagged[-1] if flagged.size else -1]
    rank = int(tensor_rank(root[None])[0])
    dims = root[SHAPE_DIMS].astype(np.float64)
    order = np.clip(root[LAYOUT_MINOR_TO_MAJOR][:rank].astype(np.int64), 0, rank - 1)
    width = LAYOUT_MINOR_TO_MAJOR.stop - LAYOUT_MINOR_TO_MAJOR.start
    out = np.zeros((config_feat.shape[0], 3, width))
    tiles = config_feat[:, TILE_OUTPUT_TILE][:, order]
    out[:, 0, :rank] = tiles
    out[:, 1, :rank] = dims[order]
    out[:, 2, :rank] = np.ceil(dims[order] / np.maximum(tiles, 1.0))
    return out.reshape(config_feat.shape[0], TILE_LAYOUT_DIM).astype(np.float32)


def tile_config_features(
    node_feat: np.ndarray, config_feat: np.ndarray, tile_layout: bool = False
) -> np.ndarray:
    """The raw config features a tile model reads: the 24 of the file, followed by
    :func:`tile_layout_features` with ``tile_layout`` ([num_configs, 42]); unchanged
    (the same array) without."""
    if not tile_layout:
        return config_feat
    extra = tile_layout_features(node_feat, config_feat)
    return np.concatenate([np.asarray(config_feat, dtype=np.float32), extra], axis=1)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): compresses heavy tails, keeps 0 and the sign."""
    return np.sign(x) * np.log1p(np.abs(x))


class FeatureNormalizer:
    """Per-column normalisation with statistics streamed from the train split.

    Args:
        mode: ``"zscore"`` ((x - mean) / std) or ``"minmax"`` ((x - min) / (max - min)).
        log: apply :func:`signed_log1p` before computing and applying the statistics.

    Constant columns (zero spread) are centred and left unscaled, so they become 0
    instead of dividing by zero.
    """

    MODES = ("zscore", "minmax")

    def __init__(self, mode: str = "zscore", log: bool = False):
        if mode not in self.MODES:
            raise ValueError(f"unknown normalisation mode {mode!r}; expected one of {self.MODES}")
        self.mode = mode
        self.log = log
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self._sum = self._sumsq = self.min = self.max = None
        self.shift: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.shift is not None

    def partial_fit(self, x: np.ndarray) -> FeatureNormalizer:
        """Accumulate statistics of one array of rows ([rows, features])."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a [rows, features] array, got shape {x.shape}")
        if self.log:
            x = signed_log1p(x)
        if self._sum is None:
            width = x.shape[1]
            self._sum, self._sumsq = np.zeros(width), np.zeros(width)
            self.min, self.max = np.full(width, np.inf), np.full(width, -np.inf)
        elif x.shape[1] != self._sum.shape[0]:
            raise ValueError(f"expected {self._sum.shape[0]} features, got {x.shape[1]}")
        self.count += x.shape[0]
        self._sum += x.sum(axis=0)
        self._sumsq += np.square(x).sum(axis=0)
        self.min = np.minimum(self.min, x.min(axis=0, initial=np.inf))
        self.max = np.maximum(self.max, x.max(axis=0, initial=-np.inf))
        self._finalise()
        return self

    def fit(self, arrays: Iterable[np.ndarray]) -> FeatureNormalizer:
        """Fit on an iterable of [rows, features] arrays (e.g. one per train graph)."""
        self._reset()
        for x in arrays:
            self.partial_fit(x)
        if self.count == 0:
            raise ValueError("cannot fit a normaliser on no rows")
        return self

    def _finalise(self) -> None:
        if self.mode == "zscore":
            mean = self._sum / max(self.count, 1)
            var = np.maximum(self._sumsq / max(self.count, 1) - mean**2, 0.0)
            shift, spread = mean, np.sqrt(var)
        else:
            shift, spread = self.min, self.max - self.min
        # Spread below float32 resolution of the column's magnitude counts as constant.
        tiny = spread <= 1e-6 * np.maximum(np.abs(shift), 1.0)
        self.shift = shift.astype(np.float32)
        self.scale = np.where(tiny, 1.0, spread).astype(np.float32)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Normalise [rows, features] with the fitted statistics (float32 result)."""
        if not self.fitted:
            raise RuntimeError("FeatureNormalizer.transform called before fit")
        x = np.asarray(x, dtype=np.float32)
        if x.shape[-1] != self.shift.shape[0]:
            raise ValueError(f"expected {self.shift.shape[0]} features, got {x.shape[-1]}")
        if self.log:
            x = signed_log1p(x)
        return ((x - self.shift) / self.scale).astype(np.float32)

    __call__ = transform

    def state_dict(self) -> dict:
        """Plain, JSON-serialisable state (goes into checkpoints)."""
        if not self.fitted:
            raise RuntimeError("FeatureNormalizer has not been fitted")
        return {
            "mode": self.mode,
            "log": self.log,
            "count": int(self.count),
            "shift": self.shift.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> FeatureNormalizer:
        norm = cls(mode=state["mode"], log=bool(state["log"]))
        norm.count = int(state.get("count", 0))
        norm.shift = np.asarray(state["shift"], dtype=np.float32)
        norm.scale = np.asarray(state["scale"], dtype=np.float32)
        return norm

    def save(self, path: str | Path) -> None:
        """Write the state as JSON atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.state_dict()))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureNormalizer:
        return cls.from_state_dict(json.loads(Path(path).read_text()))

    def __repr__(self) -> str:
        state = f"fitted on {self.count} rows" if self.fitted else "not fitted"
        return f"FeatureNormalizer(mode={self.mode!r}, log={self.log}, {state})"
