"""The real-data downloader against a local HTTP server on 127.0.0.1 (no internet needed)."""

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
from pathlib import Path

import pytest

from src.data.conversion import convert
from src.data.download import DownloadError, Resource, download, extract_archive, fetch
from tests.tiny_data import write_tiny_raw


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_after: dict[str, int] = {}  # path -> bytes to send before dropping the connection (once)
    log: list = []

    def do_GET(self):  # noqa: N802
        name = self.path.lstrip("/")
        self.log.append((name, self.headers.get("Range")))
        if name not in self.files:
            self.send_error(404)
            return
        data = self.files[name]
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.cut_after.pop(name, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.cut_after, _Handler.log = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _tar(folder: Path, arcroot: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=f"{arcroot}/{path.name}")
    return buf.getvalue()


def test_full_real_data_path_from_a_mirror(tmp_path, server):
    """download -> convert, with the real file names served by a local mirror."""
    url, handler = server
    source = write_tiny_raw(tmp_path / "upstream", n=20, size=64)
    handler.files = {
        "gz2_hart16.csv.gz": __import__("gzip").compress((source / "gz2_hart16.csv").read_bytes()),
        "train_via_region_data.json": (source / "original/train/via_region_data.json").read_bytes(),
        "val_via_region_data.json": (source / "original/val/via_region_data.json").read_bytes(),
        "zoo2Main.tar.gz": _tar(source / "original/zoo2Main", "zoo2Main"),
    }
    root = tmp_path / "data"
    manifest = download(root, mirror=url, progress=False)
    assert set(manifest) == {
        "gz2_hart16.csv.gz",
        "original/train/via_region_data.json",
        "original/val/via_region_data.json",
        "original/zoo2Main.tar.gz",
    }
    assert manifest["gz2_hart16.csv.gz"]["sha256"] == hashlib.sha256(handler.files["gz2_hart16.csv.gz"]).hexdigest()
    assert sorted(p.name for p in (root / "original/zoo2Main").iterdir()) == sorted(
        p.name for p in (source / "original/zoo2Main").iterdir()
    )
    report = convert(root, image_size=64, min_area=20, check_images=True)
    assert report["kept"] == 20 and report["catalog"] == "gz2_hart16.csv.gz"

    # a second run verifies what is there and downloads nothing
    requests = len(handler.log)
    download(root, mirror=url, progress=False)
    assert len(handler.log) == requests


def test_interrupted_download_resumes_with_range(tmp_path, server):
    url, handler = server
    payload = bytes(range(256)) * 8000  # ~2 MB: several chunks
    handler.files = {"big.bin": payload}
    handler.cut_after = {"big.bin": 700_000}
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="big.bin: .*run again to resume"):
        fetch(f"{url}/big.bin", dest, progress=False)
    assert not dest.exists()
    partial = (tmp_path / "big.bin.part").stat().st_size
    assert 0 < partial < len(payload)
    info = fetch(f"{url}/big.bin", dest, progress=False, sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload and info["size"] == len(payload)
    assert handler.log[-1] == ("big.bin", f"bytes={partial}-")
    assert not (tmp_path / "big.bin.part").exists()


def test_checksum_and_size_mismatch_leave_nothing(tmp_path, server):
    url, handler = server
    handler.files = {"a.json": b"{}"}
    with pytest.raises(DownloadError, match="a.json: SHA-256 .* does not match"):
        fetch(f"{url}/a.json", tmp_path / "a.json", sha256="0" * 64, progress=False)
    with pytest.raises(DownloadError, match="a.json: size 2 bytes, expected 3"):
        fetch(f"{url}/a.json", tmp_path / "a.json", size=3, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_and_unreachable_server(tmp_path, server):
    url, _ = server
    with pytest.raises(DownloadError, match="nope.json: HTTP 404"):
        fetch(f"{url}/nope.json", tmp_path / "nope.json", progress=False)
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="cannot reach .* --mirror"):
        fetch(f"http://127.0.0.1:{port}/x.json", tmp_path / "x.json", progress=False, timeout=5)


def test_changed_file_is_reported_not_overwritten(tmp_path, server):
    url, handler = server
    handler.files = {"c.csv": b"dr7objid\n1\n"}
    resources = {"catalog": [Resource("c", f"{url}/c.csv", "c.csv")]}
    download(tmp_path, only=["catalog"], resources=resources, progress=False)
    (tmp_path / "c.csv").write_bytes(b"dr7objid\n2\n")  # same size, other content
    with pytest.raises(DownloadError, match="differs from the file recorded"):
        download(tmp_path, only=["catalog"], resources=resources, progress=False)
    assert json.loads((tmp_path / "download_manifest.json").read_text())["c.csv"]["size"] == 11


def test_archive_with_escaping_paths_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="cannot unpack"):
        extract_archive(archive, tmp_path / "out" / "zoo2Main")
    assert not (tmp_path / "out" / "evil.jpg").exists() and not (tmp_path / "evil.jpg").exists()


def test_unknown_group_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown download group"):
        download(tmp_path, only=["weights"])


def test_archive_unpacking_is_recorded_redone_after_interruption_and_survives_delete(tmp_path, server):
    url, handler = server
    images = tmp_path / "upstream"
    images.mkdir()
    for k in range(3):
        (images / f"Dr7_{k}.jpg").write_bytes(b"jpeg%d" % k)
    handler.files = {"zoo2Main.tar.gz": _tar(images, "zoo2Main")}
    resources = {
        "images": [
            Resource("cutouts", f"{url}/zoo2Main.tar.gz", "original/zoo2Main.tar.gz", extract_to="original/zoo2Main")
        ]
    }
    root = tmp_path / "data"
    # an interrupted earlier unpacking: a non-empty folder but nothing recorded -> unpacked again
    (root / "original/zoo2Main").mkdir(parents=True)
    (root / "original/zoo2Main/Dr7_0.jpg").write_bytes(b"partial")
    manifest = download(root, only=["images"], resources=resources, progress=False, delete_archive=True)
    assert manifest["original/zoo2Main.tar.gz"]["unpacked_files"] == 3
    assert (root / "original/zoo2Main/Dr7_0.jpg").read_bytes() == b"jpeg0"
    assert not (root / "original/zoo2Main.tar.gz").exists()
    requests = len(handler.log)
    download(root, only=["images"], resources=resources, progress=False, delete_archive=True)
    assert len(handler.log) == requests  # the archive is not fetched again after --delete-archive


def test_archive_members_with_the_same_name_are_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in ("a/Dr7_1.jpg", "b/Dr7_1.jpg"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match="two members share the name Dr7_1.jpg"):
        extract_archive(archive, tmp_path / "zoo2Main")
