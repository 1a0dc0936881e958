"""An uncompressed, memory-mapped cache of a layout file's ``node_config_feat``.

That one array of an nlp train graph with 90k configs is several GB once decompressed:
:func:`~.io.read_layout` with ``cache_dir`` streams it, chunk by chunk, into an
uncompressed ``.npy`` file once and memory-maps it from then on, so sampling a few configs
reads only their rows.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ._npz import _READ_ERRORS, _Checker
from .schema import TpuGraphsFormatError

# Rows of node_config_feat decompressed at a time while filling the cache (~64 MB chunks).
_CHUNK_BYTES = 64 << 20


def _cached_config_feat(
    path: Path, cache_dir: Path, check: _Checker, expected: tuple[int, int, int]
) -> np.ndarray:
    """Memory-map ``node_config_feat`` from an uncompressed cache, filling it if stale."""
    key = "node_config_feat"
    cache = cache_dir / f"{path.stem}.{key}.npy"
    stat = path.stat()
    # The cache is tied to the source file by size and modification time (in the name of a
    # stamp file written last), so an edited or replaced source is never served stale.
    stamp = cache.with_suffix(f".{stat.st_size}-{stat.st_mtime_ns}.ok")
    if not (cache.exists() and stamp.exists()):
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob(f"{path.stem}.{key}.*.ok"):
            old.unlink()
        _stream_member_to_npy(path, key, cache, check)
        stamp.touch()
    feat = np.load(cache, mmap_mode="r")
    check.shape(key, feat, expected)
    return feat


def _read_header(fp, key: str, check: _Checker) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the .npy header at the start of an open member (the array
    itself is not read); a C-ordered floating-point array is required."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    if fortran or len(shape) == 0 or dtype.hasobject:
        check.fail(key, "a C-ordered numeric array", f"shape {shape}, dtype {dtype}")
    if not np.issubdtype(dtype, np.floating):
        check.fail(key, "a floating-point array", f"dtype {dtype}")
    return shape, dtype


def config_feat_nbytes(path: str | Path) -> int:
    """Bytes of a layout file's ``node_config_feat`` once read (float32), from the member's
    header alone: what an item decompresses without a cache, and the cache's file size.

    Raises:
        TpuGraphsFormatError: the file or its member cannot be read, or is not a C-ordered
            floating-point array.
    """
    path, key = Path(path), "node_config_feat"
    check = _Checker(path)
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fp:
            shape, _ = _read_header(fp, key, check)
    except TpuGraphsFormatError:
        raise
    except _READ_ERRORS as exc:
        raise TpuGraphsFormatError(path, key, "a readable array", f"{exc}") from exc
    return int(np.prod(shape, dtype=np.int64)) * 4


def _stream_member_to_npy(path: Path, key: str, out: Path, check: _Checker) -> None:
    """Decompress one npz member into a standalone .npy file, a chunk of rows at a time."""
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fp:
            shape, dtype = _read_header(fp, key, check)
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            row_items = int(np.prod(shape[1:], dtype=np.int64))
            rows_per_chunk = max(1, _CHUNK_BYTES // max(1, row_items * dtype.itemsize))
            for start in range(0, shape[0], rows_per_chunk):
                rows = min(rows_per_chunk, shape[0] - start)
                nbytes = rows * row_items * dtype.itemsize
                buf = fp.read(nbytes)
                if len(buf) != nbytes:
                    check.fail(key, f"{shape[0]} rows", f"a truncated member at row {start}")
                chunk = np.frombuffer(buf, dtype=dtype).reshape((rows, *shape[1:]))
                check.finite(key, chunk)
                dst[start : start + rows] = chunk
            dst.flush()
            del dst
        os.replace(tmp, out)
    except TpuGraphsFormatError:
        raise
    except _READ_ERRORS as exc:
        raise TpuGraphsFormatError(
            path, key, "a readable array", f"a damaged member ({exc})"
        ) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
