"""Opening npz archives and checking their arrays, with errors naming the file and key.

The pieces :mod:`.io` reads and validates with, shared with :mod:`.config_cache`.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from .schema import LAYOUT_KEYS, TILE_KEYS, TpuGraphsFormatError

# Exceptions that numpy / zipfile / zlib raise on damaged archives.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def _unreadable(path: Path, exc: Exception) -> str:
    """What a file that ``np.load`` could not open is: one that is neither a zip archive
    nor an .npy array (a text file, an error page saved by a failed download) by its first
    bytes, as numpy then calls it pickled data; a damaged archive by numpy's reason."""
    with path.open("rb") as f:
        head = f.read(32)
    if not head.startswith((b"PK", b"\x93NUMPY")):
        return f"a file that starts with {head!r}"
    return f"an unreadable file ({exc})"


class _NpzReader:
    """Opens an npz archive and loads its members with file-naming errors."""

    def __init__(self, path: Path, required: tuple[str, ...]):
        self.path = path
        if not path.exists():
            raise TpuGraphsFormatError(path, None, "an existing .npz file", "no such file")
        if path.is_dir():
            raise TpuGraphsFormatError(path, None, "an .npz file", "a directory")
        if path.suffix != ".npz":
            raise TpuGraphsFormatError(
                path, None, "a file with the .npz extension", f"extension {path.suffix!r}"
            )
        if path.stat().st_size == 0:
            raise TpuGraphsFormatError(path, None, "an npz (zip) archive", "an empty file")
        try:
            self.npz = np.load(path, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise TpuGraphsFormatError(
                path, None, "an npz (zip) archive", _unreadable(path, exc)
            ) from exc
        if not isinstance(self.npz, np.lib.npyio.NpzFile):
            raise TpuGraphsFormatError(path, None, "an npz (zip) archive", "a single .npy array")
        missing = [k for k in required if k not in self.npz.files]
        if missing:
            self.npz.close()
            found = f"keys {', '.join(self.npz.files)}"
            for task, keys in (("tile", TILE_KEYS), ("layout", LAYOUT_KEYS)):
                if keys != required and all(k in self.npz.files for k in keys):
                    found += f": a {task} file, which read_{task} reads"
            raise TpuGraphsFormatError(path, missing[0], f"keys {', '.join(required)}", found)

    def load(self, key: str) -> np.ndarray:
        try:
            return self.npz[key]
        except _READ_ERRORS as exc:
            raise TpuGraphsFormatError(
                self.path, key, "a readable array", f"a damaged member ({exc})"
            ) from exc

    def close(self) -> None:
        self.npz.close()

    def __enter__(self) -> _NpzReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Checker:
    """Shape, dtype and value checks that raise errors naming the file and key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, expected: str, found: str) -> None:
        raise TpuGraphsFormatError(self.path, key, expected, found)

    def shape(self, key: str, arr: np.ndarray, expected: tuple[int | None, ...]) -> None:
        ok = arr.ndim == len(expected) and all(
            e is None or e == s for e, s in zip(expected, arr.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
            self.fail(key, f"shape {want}", f"shape {arr.shape}")

    def integer(self, key: str, arr: np.ndarray) -> np.ndarray:
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            self.fail(key, "an integer array", f"dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)

    def floating(self, key: str, arr: np.ndarray) -> np.ndarray:
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            self.fail(key, "a numeric array", f"dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        self.finite(key, arr)
        return arr

    def finite(self, key: str, arr: np.ndarray) -> None:
        if not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            self.fail(key, "finite values", f"{arr[tuple(bad)]} at index {bad}")

    def in_range(self, key: str, arr: np.ndarray, low: int, high: int) -> None:
        """All values in [low, high)."""
        if arr.size and (arr.min() < low or arr.max() >= high):
            bad = arr.min() if arr.min() < low else arr.max()
            self.fail(key, f"values in [{low}, {high})", f"value {bad}")

    def count(self, key: str, got: int, want: int, what: str) -> None:
        if got != want:
            self.fail(key, f"{want} {what}", f"{got}")
