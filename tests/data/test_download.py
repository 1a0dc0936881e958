"""Tests for tpulearn.data.download against a Range-capable HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tiny_runs import load_script

import tpulearn
from tpulearn.data.download import (
    COLLECTION_NAMES,
    COMPLETE_MARKER,
    Archive,
    ArchiveError,
    CorruptArchiveError,
    DownloadError,
    archives_for,
    base_url_of,
    download_collections,
    resolve_collections,
)
from tpulearn.data.schema import COLLECTIONS

SAMPLE = Path(tpulearn.__file__).parent / "data/_sample/tpugraphs"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts/download_tpugraphs.py"
TILE_TRAIN = Archive("tile:xla", "train")


# --------------------------------------------------------------------------- server


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.files`` by name; honours ``Range: bytes=N-`` when asked to."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        name = self.path.rsplit("/", 1)[-1]
        server.requests.append((name, self.headers.get("Range")))
        if name not in server.files:
            self.send_error(404)
            return
        data = server.files[name]
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        start = int(match.group(1)) if match and server.supports_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        cut = server.cut_after.pop(name, None)
        # Announce the full length but hang up early, as a dropped connection would.
        self.wfile.write(body if cut is None else body[:cut])

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # urllib honours proxy variables; the tests must only ever talk to 127.0.0.1.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.cut_after = {}, [], {}
    httpd.supports_range = True
    httpd.base_url = f"http://127.0.0.1:{httpd.server_port}/tpu_graphs/v0/"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


# --------------------------------------------------------------------------- helpers


def _sample_files(archive: Archive) -> list[Path]:
    return sorted((SAMPLE / archive.relative_dir).glob("*.npz"))


def _make_tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _official_tar(archive: Archive, prefix: str | None = None) -> bytes:
    """The sample files of one split, stored as ``npz/<collection>/<split>/<file>``."""
    prefix = f"{archive.relative_dir.as_posix()}/" if prefix is None else prefix
    return _make_tar({prefix + f.name: f.read_bytes() for f in _sample_files(archive)})


def _serve(server, *archives: Archive) -> None:
    for archive in archives:
        server.files[archive.filename] = _official_tar(archive)


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith((".tpulearn-tmp", "npz_"))]


# --------------------------------------------------------------------------- names


def test_resolve_collections_expands_aliases_without_duplicates():
    assert resolve_collections(["layout-xla", "layout-xla-default", "tile"]) == [
        "layout:xla:default",
        "layout:xla:random",
        "tile:xla",
    ]
    assert resolve_collections(["all"]) == list(COLLECTIONS)
    # The schema's own names work as well, so configs can be passed straight through.
    assert resolve_collections(["layout:nlp:random"]) == ["layout:nlp:random"]


def test_unknown_collection_lists_valid_names():
    with pytest.raises(ValueError, match="unknown collection 'tiles'") as info:
        resolve_collections(["tiles"])
    assert all(name in str(info.value) for name in COLLECTION_NAMES)


def test_archive_names_follow_official_scheme():
    names = [a.filename for a in archives_for(["layout-nlp"], splits=("valid",))]
    assert names == ["npz_layout_nlp_default_valid.tar", "npz_layout_nlp_random_valid.tar"]
    assert TILE_TRAIN.url("http://h/v0") == "http://h/v0/npz_tile_xla_train.tar"


# --------------------------------------------------------------------------- happy path


def test_download_tile_and_layout_places_identical_files(server, tmp_path):
    archives = archives_for(["tile", "layout-xla"])
    _serve(server, *archives)

    folders = download_collections(
        tmp_path, ["tile", "layout-xla"], base_url=server.base_url, progress=False
    )

    assert folders == [tmp_path / a.relative_dir for a in archives]
    for archive in archives:
        sources = _sample_files(archive)
        assert sources, archive
        for source in sources:
            landed = tmp_path / archive.relative_dir / source.name
            assert landed.read_bytes() == source.read_bytes()
        assert (tmp_path / archive.relative_dir / COMPLETE_MARKER).is_file()
    # Archives are deleted after unpacking and no temporary folder survives.
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / ".downloads").exists()


def test_second_run_skips_complete_splits(server, tmp_path):
    _serve(server, *archives_for(["tile"]))
    first = download_collections(tmp_path, ["tile"], base_url=server.base_url, progress=False)
    server.requests.clear()

    second = download_collections(tmp_path, ["tile"], base_url=server.base_url, progress=False)

    assert second == first
    assert server.requests == []


def test_only_requested_splits_are_fetched_and_archives_can_be_kept(server, tmp_path):
    _serve(server, *archives_for(["layout-nlp"], splits=("test",)))

    download_collections(
        tmp_path,
        ["layout-nlp"],
        splits=("test",),
        base_url=server.base_url,
        progress=False,
        keep_archives=True,
    )

    assert sorted(name for name, _ in server.requests) == [
        "npz_layout_nlp_default_test.tar",
        "npz_layout_nlp_random_test.tar",
    ]
    kept = tmp_path / ".downloads/npz_layout_nlp_default_test.tar"
    assert kept.read_bytes() == server.files[kept.name]


def test_progress_bar_is_shown_only_when_asked(server, tmp_path, capsys):
    _serve(server, TILE_TRAIN)
    download_collections(
        tmp_path / "a", ["tile"], splits=("train",), base_url=server.base_url, progress=True
    )
    assert "npz_tile_xla_train.tar" in capsys.readouterr().err

    download_collections(
        tmp_path / "b", ["tile"], splits=("train",), base_url=server.base_url, progress=False
    )
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("prefix", ["", "train/", "./npz/tile/xla/train/", "xla/train/"])
def test_archives_without_official_prefix_land_in_split_folder(server, tmp_path, prefix):
    server.files[TILE_TRAIN.filename] = _official_tar(TILE_TRAIN, prefix=prefix)

    download_collections(
        tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
    )

    (source,) = _sample_files(TILE_TRAIN)
    assert (tmp_path / TILE_TRAIN.relative_dir / source.name).read_bytes() == source.read_bytes()


# --------------------------------------------------------------------------- resume


def test_interrupted_download_resumes_with_range_request(server, tmp_path):
    _serve(server, TILE_TRAIN)
    data = server.files[TILE_TRAIN.filename]
    server.cut_after[TILE_TRAIN.filename] = 1000
    part = tmp_path / ".downloads/npz_tile_xla_train.tar.part"

    with pytest.raises(DownloadError, match="stopped after 1000 of .* Rerun"):
        download_collections(
            tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )
    assert part.read_bytes() == data[:1000]
    assert not (tmp_path / TILE_TRAIN.relative_dir).exists()

    download_collections(
        tmp_path,
        ["tile"],
        splits=("train",),
        base_url=server.base_url,
        progress=False,
        keep_archives=True,
    )

    assert server.requests[-1] == (TILE_TRAIN.filename, "bytes=1000-")
    assert (tmp_path / ".downloads/npz_tile_xla_train.tar").read_bytes() == data
    assert not part.exists()
    (source,) = _sample_files(TILE_TRAIN)
    assert (tmp_path / TILE_TRAIN.relative_dir / source.name).read_bytes() == source.read_bytes()


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    _serve(server, TILE_TRAIN)
    server.supports_range = False
    part = tmp_path / ".downloads/npz_tile_xla_train.tar.part"
    part.parent.mkdir()
    part.write_bytes(b"garbage that must not survive" * 10)

    download_collections(
        tmp_path,
        ["tile"],
        splits=("train",),
        base_url=server.base_url,
        progress=False,
        keep_archives=True,
    )

    assert server.requests == [(TILE_TRAIN.filename, "bytes=290-")]
    assert (tmp_path / ".downloads/npz_tile_xla_train.tar").read_bytes() == server.files[
        TILE_TRAIN.filename
    ]


def test_whole_part_file_is_used_when_server_answers_416(server, tmp_path):
    _serve(server, TILE_TRAIN)
    part = tmp_path / ".downloads/npz_tile_xla_train.tar.part"
    part.parent.mkdir()
    part.write_bytes(server.files[TILE_TRAIN.filename])

    download_collections(
        tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
    )

    assert (tmp_path / TILE_TRAIN.relative_dir / COMPLETE_MARKER).is_file()


# --------------------------------------------------------------------------- failures


def test_http_404_names_the_url_and_leaves_no_split_folder(server, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404 .*/npz_tile_xla_test\.tar"):
        download_collections(
            tmp_path, ["tile"], splits=("test",), base_url=server.base_url, progress=False
        )
    assert not (tmp_path / "npz/tile/xla/test").exists()
    assert not (tmp_path / ".downloads/npz_tile_xla_test.tar.part").exists()


def test_unreachable_server_gives_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"could not fetch http://127\.0\.0\.1:1/"):
        download_collections(
            tmp_path, ["tile"], splits=("test",), base_url="http://127.0.0.1:1/v0/", progress=False
        )


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_tar_leaves_no_split_folder_and_is_deleted(server, tmp_path, kind):
    good = _official_tar(TILE_TRAIN)
    server.files[TILE_TRAIN.filename] = (
        b"this is not a tar file" * 100 if kind == "garbage" else good[:700]
    )

    with pytest.raises(CorruptArchiveError, match="npz_tile_xla_train.tar is not a readable"):
        download_collections(
            tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )

    assert not (tmp_path / TILE_TRAIN.relative_dir).exists()
    assert _leftovers(tmp_path) == []  # no temp folder, and the bad tar is gone for a rerun


@pytest.mark.parametrize(
    "member",
    ["../evil.npz", "/tmp/evil.npz", "npz/tile/xla/train/../../../../../evil.npz", "..\\evil.npz"],
)
def test_path_traversal_member_is_rejected(server, tmp_path, member):
    server.files[TILE_TRAIN.filename] = _make_tar(
        {"npz/tile/xla/train/ok.npz": b"x", member: b"evil"}
    )
    root = tmp_path / "root"

    with pytest.raises(ArchiveError, match="unsafe.*points outside"):
        download_collections(
            root, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )

    assert list(tmp_path.rglob("evil.npz")) == []
    assert not (root / TILE_TRAIN.relative_dir).exists()
    assert [p.name for p in root.rglob(".tpulearn-tmp*")] == []


def test_symlink_member_is_rejected(server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("npz/tile/xla/train/link.npz")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    server.files[TILE_TRAIN.filename] = buffer.getvalue()

    with pytest.raises(ArchiveError, match="link or special file"):
        download_collections(
            tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )
    assert not (tmp_path / TILE_TRAIN.relative_dir).exists()


def test_member_of_another_split_is_rejected(server, tmp_path):
    server.files[TILE_TRAIN.filename] = _make_tar({"npz/tile/xla/valid/a.npz": b"x"})

    with pytest.raises(ArchiveError, match="unexpected member 'npz/tile/xla/valid/a.npz'"):
        download_collections(
            tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )
    assert not (tmp_path / TILE_TRAIN.relative_dir).exists()


def test_unmarked_existing_split_folder_stops_before_downloading(server, tmp_path):
    _serve(server, TILE_TRAIN)
    manual = tmp_path / TILE_TRAIN.relative_dir
    manual.mkdir(parents=True)
    (manual / "mine.npz").write_bytes(b"user data")

    with pytest.raises(DownloadError, match=r"no \.complete marker.*Delete it"):
        download_collections(
            tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
        )

    assert server.requests == []
    assert (manual / "mine.npz").read_bytes() == b"user data"


def test_stale_temp_folders_from_a_crash_are_removed(server, tmp_path):
    _serve(server, TILE_TRAIN)
    stale = tmp_path / "npz/layout/nlp/random/.tpulearn-tmp-valid-abc/valid"
    stale.mkdir(parents=True)
    (stale / "half.npz").write_bytes(b"half")

    download_collections(
        tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
    )

    assert not stale.parent.exists()


# --------------------------------------------------------------------------- CLI


def _load_cli():
    return load_script("download_tpugraphs").main


def test_cli_help_runs_as_a_script():
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--collections" in result.stdout and "layout-nlp-random" in result.stdout


def test_cli_unknown_collection_exits_with_valid_names(tmp_path):
    with pytest.raises(SystemExit) as info:
        _load_cli()(["--collections", "tile", "bogus", "--root", str(tmp_path / "r")])
    message = str(info.value.code)
    assert "unknown collection 'bogus'" in message and "layout-xla-default" in message
    assert not (tmp_path / "r").exists()


def test_cli_root_inside_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "data.tar").write_bytes(b"")
    for root in ("data.tar", "data.tar/sub"):
        with pytest.raises(SystemExit) as info:
            _load_cli()(["--collections", "tile", "--root", str(tmp_path / root)])
        err = capsys.readouterr().err.splitlines()[-1]
        assert info.value.code == 2
        assert err.endswith(
            f"error: --root {tmp_path / root}: {tmp_path / 'data.tar'} is a file; expected a folder"
        )


def test_cli_downloads_and_reports_http_errors(server, tmp_path, capsys):
    _serve(server, TILE_TRAIN)
    main = _load_cli()
    common = ["--root", str(tmp_path), "--base-url", server.base_url, "--no-progress"]

    main(["--collections", "tile", "--splits", "train", *common])
    assert capsys.readouterr().out.strip() == str(tmp_path / TILE_TRAIN.relative_dir)

    with pytest.raises(SystemExit) as info:
        main(["--collections", "tile", "--splits", "valid", *common])
    assert str(info.value.code).startswith("error: HTTP 404")
    assert "npz_tile_xla_valid.tar" in str(info.value.code)


def test_archive_left_by_an_earlier_run_is_unpacked_without_downloading(server, tmp_path):
    tar = tmp_path / ".downloads" / TILE_TRAIN.filename
    tar.parent.mkdir()
    tar.write_bytes(_official_tar(TILE_TRAIN))

    download_collections(
        tmp_path, ["tile"], splits=("train",), base_url=server.base_url, progress=False
    )

    assert server.requests == []
    assert (tmp_path / TILE_TRAIN.relative_dir / COMPLETE_MARKER).is_file()
    assert not tar.exists()


def test_file_url_serves_as_a_local_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / TILE_TRAIN.filename).write_bytes(_official_tar(TILE_TRAIN))

    (folder,) = download_collections(
        tmp_path / "root", ["tile"], splits=("train",), base_url=mirror.as_uri(), progress=False
    )

    (source,) = _sample_files(TILE_TRAIN)
    assert (folder / source.name).read_bytes() == source.read_bytes()


def test_a_plain_local_folder_serves_as_the_base_url(tmp_path, monkeypatch, capsys):
    """``--base-url /local/dir`` once failed with urllib's 'unknown url type'."""
    mirror = tmp_path / "mirror with space"
    mirror.mkdir()
    (mirror / TILE_TRAIN.filename).write_bytes(_official_tar(TILE_TRAIN))
    assert base_url_of(str(mirror)) == mirror.as_uri()
    monkeypatch.chdir(tmp_path)
    assert base_url_of("mirror with space") == mirror.as_uri()
    for url in ("http://example.org/v0/", mirror.as_uri()):
        assert base_url_of(url) == url
    args = ["--collections", "tile", "--splits", "train", "--no-progress"]
    _load_cli()([*args, "--root", str(tmp_path / "root"), "--base-url", str(mirror)])
    (source,) = _sample_files(TILE_TRAIN)
    folder = tmp_path / "root" / TILE_TRAIN.relative_dir
    assert capsys.readouterr().out.strip() == str(folder)
    assert (folder / source.name).read_bytes() == source.read_bytes()
    with pytest.raises(ValueError, match="base URL 'nope': no such folder; expected an http"):
        download_collections(tmp_path / "other", ["tile"], base_url="nope", progress=False)
    assert not (tmp_path / "other").exists()
