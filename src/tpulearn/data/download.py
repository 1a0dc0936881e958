"""Download the official TpuGraphs npz archives and unpack them into the official layout.

One archive holds one split of one collection, e.g. ``npz_tile_xla_train.tar`` or
``npz_layout_nlp_random_valid.tar``. :func:`download_collections` fetches and unpacks
them so that the files end up where the datasets look for them::

    <root>/npz/tile/xla/{train,valid,test}/*.npz
    <root>/npz/layout/{xla,nlp}/{default,random}/{train,valid,test}/*.npz

The run is safe to interrupt and repeat:

* Archives are downloaded to ``<root>/.downloads/<name>.tar.part``; a rerun asks the
  server for the missing bytes only (HTTP ``Range``) and starts over when the server
  ignores the range. The file is renamed to ``<name>.tar`` only once its size matches
  the size the server announced.
* Each split is unpacked into a hidden temporary folder next to its final place (so the
  final ``os.replace`` is a rename on one filesystem) and moved into place in one step,
  with a ``.complete`` marker written last. A split folder is therefore either absent
  or complete; leftover temporary folders from a crash are removed by the next run.
* A split folder that holds the marker is skipped. A split folder without the marker
  was not made by this module (e.g. a manual ``tar xf``), so it is never overwritten:
  the run stops and says how to proceed.

Only one process should download into a given root at a time.

The module runs past 300 lines because it is one protocol read as a whole: the resumable
fetch and the all-or-nothing unpack share the archive model, the error types and the
marker that says a split is complete, and each step's safety depends on the other's.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import logging
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm.auto import tqdm

from .schema import COLLECTIONS, SPLITS, collection_dir, download_name

__all__ = [
    "COLLECTION_NAMES",
    "COMPLETE_MARKER",
    "OFFICIAL_BASE_URL",
    "Archive",
    "ArchiveError",
    "CorruptArchiveError",
    "DownloadError",
    "archives_for",
    "base_url_of",
    "download_collections",
    "download_file",
    "extract_archive",
    "resolve_collections",
]

logger = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "http://download.tensorflow.org/data/tpu_graphs/v0/"
COMPLETE_MARKER = ".complete"
DOWNLOAD_DIR = ".downloads"
_TMP_PREFIX = ".tpulearn-tmp-"

# Command-line names of the five scored collections (schema.COLLECTIONS) and of groups.
_LEAVES: dict[str, str] = {download_name(c): c for c in COLLECTIONS}
_GROUPS: dict[str, tuple[str, ...]] = {
    "layout-xla": ("layout:xla:default", "layout:xla:random"),
    "layout-nlp": ("layout:nlp:default", "layout:nlp:random"),
    "all": COLLECTIONS,
}
COLLECTION_NAMES: tuple[str, ...] = tuple(_LEAVES) + tuple(_GROUPS)


class DownloadError(RuntimeError):
    """A download could not be completed; the message names the URL or file and the fix."""


class ArchiveError(DownloadError):
    """An archive is unsafe or does not have the expected layout; nothing was unpacked."""


class CorruptArchiveError(ArchiveError):
    """An archive could not be read as a tar file; downloading it again may help."""


@dataclass(frozen=True)
class Archive:
    """One official archive: one split of one collection.

    Args:
        collection: A name from ``schema.COLLECTIONS``, e.g. ``"layout:xla:default"``.
        split: ``"train"``, ``"valid"`` or ``"test"``.
    """

    collection: str
    split: str

    @property
    def relative_dir(self) -> Path:
        """Split folder relative to the root, e.g. ``npz/layout/xla/default/train``."""
        return collection_dir("", self.collection, self.split)

    @property
    def filename(self) -> str:
        """Archive file name, e.g. ``npz_layout_xla_default_train.tar``."""
        return "_".join(self.relative_dir.parts) + ".tar"

    def url(self, base_url: str = OFFICIAL_BASE_URL) -> str:
        """Address of the archive below ``base_url``."""
        return base_url.rstrip("/") + "/" + self.filename


def resolve_collections(names: Iterable[str]) -> list[str]:
    """Turn command-line names (``tile``, ``layout-xla``, ``all`` ...) into collections.

    Args:
        names: Names from :data:`COLLECTION_NAMES`; the schema's own names
            (``"layout:xla:default"``) are accepted too.

    Returns:
        Names from ``schema.COLLECTIONS`` in first-seen order, without duplicates.

    Raises:
        ValueError: A name is unknown or no name was given.
    """
    resolved: list[str] = []
    for name in names:
        if name in _LEAVES:
            expanded: tuple[str, ...] = (_LEAVES[name],)
        elif name in _GROUPS:
            expanded = _GROUPS[name]
        elif name in COLLECTIONS:
            expanded = (name,)
        else:
            raise ValueError(
                f"unknown collection {name!r}; valid collections are: {', '.join(COLLECTION_NAMES)}"
            )
        resolved += [c for c in expanded if c not in resolved]
    if not resolved:
        raise ValueError(f"no collection given; choose from: {', '.join(COLLECTION_NAMES)}")
    return resolved


def base_url_of(base_url: str) -> str:
    """``base_url`` as a URL: a local folder (``/mnt/mirror``, ``mirror``) becomes its
    ``file://`` URL, which urllib needs to read from it; URLs (``http(s)://``,
    ``file://``) are kept as they are.

    Raises:
        ValueError: neither a URL nor an existing folder.
    """
    if len(urllib.parse.urlsplit(base_url).scheme) > 1:  # one letter: a Windows drive
        return base_url
    folder = Path(base_url).expanduser()
    if not folder.is_dir():
        raise ValueError(
            f"base URL {base_url!r}: no such folder; expected an http(s):// or file:// URL "
            "or a local folder holding the .tar archives"
        )
    return folder.resolve().as_uri()


def archives_for(collections: Iterable[str], splits: Sequence[str] = SPLITS) -> list[Archive]:
    """List the archives that make up the given collections and splits.

    Raises:
        ValueError: An unknown collection or split name.
    """
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
    return [
        Archive(collection, split)
        for collection in resolve_collections(collections)
        for split in dict.fromkeys(splits)
    ]


def download_collections(
    root: str | os.PathLike,
    collections: Iterable[str],
    splits: Sequence[str] = SPLITS,
    base_url: str = OFFICIAL_BASE_URL,
    progress: bool = True,
    keep_archives: bool = False,
    timeout: float = 60.0,
) -> list[Path]:
    """Download and unpack collections into ``<root>/npz/...``, skipping finished splits.

    Args:
        root: Dataset root; created if missing.
        collections: Names from :data:`COLLECTION_NAMES` (``tile``, ``layout-xla``, ``all``
            ...) or from ``schema.COLLECTIONS``.
        splits: Which splits to fetch.
        base_url: Folder holding the archives: an ``http(s)://`` or ``file://`` URL, or a
            local folder (:func:`base_url_of`).
        progress: Show a tqdm bar (bytes) per downloaded archive.
        keep_archives: Keep ``<root>/.downloads/*.tar`` after unpacking.
        timeout: Seconds to wait on the network before giving up.

    Returns:
        The split folders, one per (collection, split), in request order.

    Raises:
        ValueError: Unknown collection or split name, or a base URL that is neither a
            URL nor a folder.
        DownloadError: Network or HTTP failure, or an existing split folder without a
            ``.complete`` marker. A partial download is kept and resumed by a rerun.
        ArchiveError: The archive is unreadable, unsafe (absolute paths, ``..``, links)
            or has an unexpected layout. No split folder is left behind.
    """
    root = Path(root)
    archives = archives_for(collections, splits)
    base_url = base_url_of(base_url)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(root)
    # Check every target before fetching anything: failing after gigabytes is worse.
    todo = [archive for archive in archives if not _is_complete(root, archive)]
    downloads = root / DOWNLOAD_DIR
    for archive in todo:
        tar_path = downloads / archive.filename
        if not tar_path.exists():
            download_file(archive.url(base_url), tar_path, progress=progress, timeout=timeout)
        try:
            extract_archive(tar_path, archive, root)
        except CorruptArchiveError as err:
            # A truncated or garbled file would fail the same way forever; fetch it anew.
            tar_path.unlink(missing_ok=True)
            raise CorruptArchiveError(
                f"{err} The archive was deleted; rerun to download it again."
            ) from err
        if not keep_archives:
            tar_path.unlink()
    _remove_if_empty(downloads)
    return [root / archive.relative_dir for archive in archives]


def download_file(
    url: str, dest: str | os.PathLike, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest``, resuming from ``dest + ".part"`` when it exists.

    Args:
        url: Address to fetch.
        dest: Final file; written only once the whole file has arrived.
        progress: Show a tqdm bar (bytes).
        timeout: Seconds to wait on the network before giving up.

    Returns:
        ``dest`` as a Path.

    Raises:
        DownloadError: Network or HTTP failure, or the transfer ended early (the
            partial file is kept so that a rerun resumes it).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    with _open(url, offset, timeout) as response:
        status = response.status or 200  # file:// responses carry no status
        if status == 416:
            if _content_range_total(response.headers.get("Content-Range")) == offset:
                # A crash between the last byte and the rename: the part is already whole.
                os.replace(part, dest)
                return dest
            part.unlink()
            return download_file(url, dest, progress=progress, timeout=timeout)
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                return download_file(url, dest, progress=progress, timeout=timeout)
            total = _content_range_total(response.headers.get("Content-Range"))
        else:
            offset = 0  # the server ignored the range: start over
            total = None
        if total is None and response.headers.get("Content-Length") is not None:
            total = offset + int(response.headers["Content-Length"])
        _stream(response, part, offset, total, url, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"download of {url} stopped after {size} of {total} bytes. "
            f"Rerun the same command to resume from {part}."
        )
    os.replace(part, dest)
    return dest


def extract_archive(tar_path: str | os.PathLike, archive: Archive, root: str | os.PathLike) -> Path:
    """Unpack one archive into ``<root>/<archive.relative_dir>`` all at once.

    Accepted member layouts, all placed directly in the split folder: the official
    ``npz/<collection>/<split>/<file>`` (optionally with a leading ``./``), any trailing
    part of it such as ``<split>/<file>``, and a bare ``<file>``. Folder members are
    ignored; any other member is refused.

    Args:
        tar_path: The archive.
        archive: Which collection and split it holds.
        root: Dataset root.

    Returns:
        The split folder, holding the files and a ``.complete`` marker.

    Raises:
        CorruptArchiveError: The file is not a readable tar archive.
        ArchiveError: A member is unsafe (absolute, ``..``, link, device), lies outside
            the expected split, or the archive holds no file.
    """
    tar_path, target = Path(tar_path), Path(root) / archive.relative_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{archive.split}-", dir=target.parent))
    try:
        staged = tmp / archive.split
        staged.mkdir()
        count = _unpack_files(tar_path, archive, staged)
        if count == 0:
            raise ArchiveError(f"{tar_path} holds no file for {archive.relative_dir}.")
        (staged / COMPLETE_MARKER).write_text(f"{archive.filename}\n{count} files\n")
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty folder holds nothing to protect
        os.replace(staged, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("unpacked %d files into %s", count, target)
    return target


def _is_complete(root: Path, archive: Archive) -> bool:
    target = root / archive.relative_dir
    if (target / COMPLETE_MARKER).is_file():
        logger.info("%s is complete, skipping", target)
        return True
    if target.is_dir() and any(target.iterdir()):
        raise DownloadError(
            f"{target} exists but has no {COMPLETE_MARKER} marker, so it was not written by "
            f"this downloader and may be incomplete. Delete it to download it again, or "
            f"create {target / COMPLETE_MARKER} to keep it as it is."
        )
    return False


def _open(url: str, offset: int, timeout: float):
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return err  # handled by the caller: the part may already be whole
        raise DownloadError(
            f"HTTP {err.code} {err.reason} for {url}. Check the collection, split and "
            f"base URL; if the server is down, try again later."
        ) from err
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"could not fetch {url}: {reason}. Check the network connection and the base "
            f"URL, then rerun; a partial download is resumed."
        ) from err


def _stream(response, part: Path, offset: int, total: int | None, url: str, progress: bool):
    bar = tqdm(
        total=total,
        initial=offset,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=url.rsplit("/", 1)[-1],
        disable=not progress,
    )
    try:
        with bar, open(part, "ab" if offset else "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    # http.client.IncompleteRead and friends are HTTPExceptions, not OSErrors.
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(
            f"download of {url} failed: {err!r}. Rerun the same command to resume from {part}."
        ) from err


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-999/1000" -> 100
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-999/1000" or "bytes */1000" -> 1000; "bytes 100-999/*" -> None
    try:
        return int(value.rsplit("/", 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None


def _unpack_files(tar_path: Path, archive: Archive, staged: Path) -> int:
    count = 0
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            for member in tar:
                name = _member_file_name(member, archive, tar_path)
                if name is None:
                    continue
                if (staged / name).exists():
                    raise ArchiveError(f"{tar_path} holds {name!r} twice.")
                # Copy by hand rather than tar.extract: the destination is our own path.
                with tar.extractfile(member) as source, open(staged / name, "wb") as out:
                    shutil.copyfileobj(source, out)
                count += 1
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as err:
        raise CorruptArchiveError(f"{tar_path} is not a readable tar archive ({err}).") from err
    return count


def _member_file_name(member: tarfile.TarInfo, archive: Archive, tar_path: Path) -> str | None:
    """File name inside the split folder, or None for folder members to skip."""
    name = member.name
    # Backslashes count as separators so that a Windows-style "..\\x" is caught too.
    parts = tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "."))
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or ".." in parts:
        raise ArchiveError(
            f"{tar_path} is unsafe: member {name!r} points outside the target folder. "
            f"Nothing was unpacked; check where the archive came from (--base-url)."
        )
    if member.isdir():
        return None
    if not member.isfile():
        raise ArchiveError(
            f"{tar_path} is unsafe: member {name!r} is a link or special file, "
            f"but only regular files are expected. Nothing was unpacked."
        )
    expected = archive.relative_dir.parts
    rest = parts
    for start in range(len(expected)):
        tail = expected[start:]
        if parts[: len(tail)] == tail:
            rest = parts[len(tail) :]
            break
    if len(rest) != 1:
        raise ArchiveError(
            f"{tar_path}: unexpected member {name!r}; expected files under "
            f"{'/'.join(expected)}/, {archive.split}/ or at the top level. Nothing was unpacked."
        )
    return rest[0]


def _remove_stale_temp_dirs(root: Path) -> None:
    # Left behind only by a crash (the normal path removes its own temp folder).
    for collection in COLLECTIONS:
        parent = collection_dir(root, collection, "train").parent
        if parent.is_dir():
            for stale in parent.glob(_TMP_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)


def _remove_if_empty(folder: Path) -> None:
    # Fails when absent, or when it still holds kept archives or partial downloads.
    with contextlib.suppress(OSError):
        folder.rmdir()
