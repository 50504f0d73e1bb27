"""Checkpoint download and verification (engine/model/weights.py) against a local HTTP server.

Every case runs against a server on 127.0.0.1 started here, with a fake model entry whose size and
SHA-256 are those of a small random payload. An autouse fixture makes any other host unresolvable,
so nothing here can reach the real internet (and the offline error is tested that way).
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infer_segment_anything_2.engine.model import weights
from infer_segment_anything_2.engine.model.table import MODELS
from infer_segment_anything_2.engine.model.weights import (CheckpointError, download,
                                                      ensure_checkpoint, verify_file)

from child import Child  # noqa: E402  (tests/, on the path from conftest.py)

# The fake model, built the same way by the child processes of the concurrency tests.
from weights_children import OFFICIAL_URL, PAYLOAD, SPEC  # noqa: E402

CHILDREN = Path(__file__).with_name("weights_children.py")
STALL_LIMIT = 5.0  # a stalling handler gives up after this long, or at teardown


# ---------------------------------------------------------------------------------------------
# No internet, a local server
# ---------------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass

    def _head(self, status=200, ctype="application/octet-stream", length=len(PAYLOAD)):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_GET(self):
        server = self.server
        with server.count_lock:
            server.requests[self.path] = server.requests.get(self.path, 0) + 1
        route = self.path.rsplit("/", 1)[0]
        if route == "/good":
            self._head()
            self.wfile.write(PAYLOAD)
        elif route == "/slow":  # the good file in five parts over ~0.75 s
            self._head()
            part = len(PAYLOAD) // 5 + 1
            for i in range(0, len(PAYLOAD), part):
                self.wfile.write(PAYLOAD[i:i + part])
                self.wfile.flush()
                if server.stop.wait(0.15):
                    return
        elif route == "/bad-hash":
            self._head()
            self.wfile.write(bytes(len(PAYLOAD)))
        elif route == "/truncated":  # announces the full size, sends half, closes
            self._head()
            self.wfile.write(PAYLOAD[:len(PAYLOAD) // 2])
            self.close_connection = True
        elif route == "/too-big":
            self._head(length=len(PAYLOAD) + 10)
            self.wfile.write(PAYLOAD + bytes(10))
        elif route == "/html":  # an error page with status 200
            page = b"<!DOCTYPE html><html><body>Please log in</body></html>"
            self._head(ctype="text/html; charset=utf-8", length=len(page))
            self.wfile.write(page)
        elif route == "/html-as-binary":  # same page, but declared as binary, without a length
            page = b"\n  <html><head><title>Error</title></head></html>" * 100
            self._head(length=None)
            self.wfile.write(page)
            self.close_connection = True
        elif route == "/stall-headers":
            server.stop.wait(STALL_LIMIT)
        elif route == "/stall-body":
            self._head()
            self.wfile.write(PAYLOAD[:1000])
            self.wfile.flush()
            server.stop.wait(STALL_LIMIT)
        else:
            self.send_error(404, "Not Found")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        """A client hanging up early is what several tests do: not worth a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@pytest.fixture
def server():
    """A threaded HTTP server on a free port of 127.0.0.1; ``server.url(route)`` gives URLs and
    ``server.requests`` counts requests per path. Stopped (and stalls released) at teardown."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.requests, httpd.count_lock, httpd.stop = {}, threading.Lock(), threading.Event()
    httpd.url = lambda route: f"http://127.0.0.1:{httpd.server_address[1]}/{route}/fake_model.pt"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield httpd
    httpd.stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def closed_port_url() -> str:
    """A URL on a port nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fake_model.pt"


def assert_nothing_left(folder: Path) -> None:
    """No checkpoint at the final path and no temporary .part file in the folder."""
    assert not (folder / SPEC.filename).exists()
    if folder.is_dir():
        leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".part")]
        assert leftovers == []


def assert_helpful(message: str, folder: Path, url: str) -> None:
    """The message names the file, the URL tried, and where a manual copy goes."""
    assert SPEC.filename in message
    assert url in message
    assert str(folder / SPEC.filename) in message
    assert SPEC.url in message and "model_weight_file" in message


# ---------------------------------------------------------------------------------------------
# download()
# ---------------------------------------------------------------------------------------------
def test_good_download_lands_verified_with_progress(server, tmp_path, capsys):
    seen = []
    final = download(SPEC, tmp_path / "w" / SPEC.filename, url=server.url("good"),
                     on_progress=lambda done, total: seen.append((done, total)))
    assert final == tmp_path / "w" / SPEC.filename
    assert final.read_bytes() == PAYLOAD
    assert verify_file(final, SPEC) is None
    assert [p.name for p in final.parent.iterdir()] == [SPEC.filename]
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 3
    err = capsys.readouterr().err  # tqdm's bar
    assert SPEC.filename in err and "100%" in err


def test_file_url_download(tmp_path):
    source = tmp_path / "copy-from-usb-stick.bin"
    source.write_bytes(PAYLOAD)
    final = download(SPEC, tmp_path / "w" / SPEC.filename, url=source.as_uri())
    assert final.read_bytes() == PAYLOAD


def test_file_url_missing_file(tmp_path):
    url = (tmp_path / "nope.pt").as_uri()
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / "w" / SPEC.filename, url=url)
    assert_helpful(str(info.value), tmp_path / "w", url)
    assert "cannot read the file" in str(info.value)
    assert_nothing_left(tmp_path / "w")


@pytest.mark.parametrize("route, what", [
    ("bad-hash", "SHA-256"),
    ("truncated", f"closed after {len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes"),
    ("too-big", f"announces {len(PAYLOAD) + 10} bytes"),
    ("html", "web page instead of the checkpoint"),
    ("html-as-binary", "web page instead of the checkpoint"),
    ("missing", "HTTP 404"),
])
def test_bad_download_leaves_nothing(server, tmp_path, route, what):
    url = server.url(route)
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=url)
    message = str(info.value)
    assert what in message
    assert_helpful(message, tmp_path, url)
    assert_nothing_left(tmp_path)


def test_connection_refused_fails_fast(tmp_path):
    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=url)
    assert time.monotonic() - start < 5
    assert "cannot connect" in str(info.value) and "offline" in str(info.value)
    assert_helpful(str(info.value), tmp_path, url)
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("route", ["stall-headers", "stall-body"])
def test_stalled_server_times_out(server, tmp_path, route):
    url = server.url(route)
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=url, timeout=0.5)
    assert time.monotonic() - start < STALL_LIMIT - 1  # gave up on its own, not at teardown
    assert "0.5 s" in str(info.value)
    assert_helpful(str(info.value), tmp_path, url)
    assert_nothing_left(tmp_path)


def test_offline_error_for_the_official_url(tmp_path):
    """No network (host name does not resolve): an immediate error telling what to do."""
    spec = MODELS["sam2.1_hiera_tiny"]
    start = time.monotonic()
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint(spec, tmp_path)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert spec.filename in message and spec.url in message
    assert str(tmp_path / spec.filename) in message and "model_weight_file" in message
    assert "offline" in message
    assert not (tmp_path / spec.filename).exists()


def test_read_only_folder(server, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    url = server.url("good")
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=url)
    assert "Read-only file system" in str(info.value) and "writable" in str(info.value)
    assert SPEC.filename in str(info.value) and str(tmp_path / SPEC.filename) in str(info.value)
    assert_nothing_left(tmp_path)


def test_rename_into_place_fails(server, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(weights.os, "replace", read_only)
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=server.url("good"))
    assert "writable" in str(info.value)
    assert_nothing_left(tmp_path)


def test_weights_path_under_a_file(server, tmp_path):
    """weights/ cannot be created (a file is in the way): a clear error, nothing written."""
    blocker = tmp_path / "weights"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint(SPEC, blocker, url=server.url("good"))
    assert SPEC.filename in str(info.value) and str(blocker) in str(info.value)
    assert blocker.read_text() == "not a folder"


def test_full_disk(server, tmp_path, monkeypatch):
    """ENOSPC after 1 MB written: the error says so, the partial file is removed."""
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            if self.written + len(data) > 1_000_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(weights.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(CheckpointError) as info:
        download(SPEC, tmp_path / SPEC.filename, url=server.url("good"))
    message = str(info.value)
    assert "No space left on device" in message and "disk space" in message
    assert SPEC.filename in message and str(tmp_path / SPEC.filename) in message
    assert_nothing_left(tmp_path)


# ---------------------------------------------------------------------------------------------
# ensure_checkpoint(): existing files, corruption, concurrency
# ---------------------------------------------------------------------------------------------
def test_existing_good_file_is_used_without_network(server, tmp_path, monkeypatch):
    (tmp_path / SPEC.filename).write_bytes(PAYLOAD)

    def read_only(*args, **kwargs):  # a read-only weights/ must not matter for a valid file
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(weights, "_file_lock", read_only)
    assert ensure_checkpoint(SPEC, tmp_path, url=server.url("good")) == tmp_path / SPEC.filename
    assert server.requests == {}


@pytest.mark.parametrize("corrupt", [PAYLOAD[:1000], bytes(len(PAYLOAD))],
                         ids=["wrong-size", "wrong-hash"])
def test_corrupt_file_is_detected_and_replaced(server, tmp_path, caplog, corrupt):
    final = tmp_path / SPEC.filename
    final.write_bytes(corrupt)
    with caplog.at_level(logging.WARNING, logger=weights.__name__):
        assert ensure_checkpoint(SPEC, tmp_path, url=server.url("good")) == final
    assert final.read_bytes() == PAYLOAD
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "corrupt" in warning and str(final) in warning
    assert ("size 1000 bytes" if len(corrupt) == 1000 else "SHA-256") in warning
    assert sum(server.requests.values()) == 1
    # Verified once per process and file state: a second call neither downloads nor warns.
    caplog.clear()
    assert ensure_checkpoint(SPEC, tmp_path, url=server.url("good")) == final
    assert sum(server.requests.values()) == 1 and not caplog.records


def test_corrupt_file_removed_even_when_offline(tmp_path):
    final = tmp_path / SPEC.filename
    final.write_bytes(b"garbage")
    url = closed_port_url()
    with pytest.raises(CheckpointError) as info:
        ensure_checkpoint(SPEC, tmp_path, url=url)
    assert "corrupt file" in str(info.value) and "was removed" in str(info.value)
    assert_helpful(str(info.value), tmp_path, url)
    assert_nothing_left(tmp_path)


def test_two_processes_download_once(server, tmp_path):
    children = [Child(CHILDREN, "download_when_told", str(tmp_path), server.url("slow"))
                for _ in range(2)]
    try:
        assert [c.result(timeout=60) for c in children] == ["ready", "ready"]
        for c in children:  # both start together
            c.send("go")
        outcomes = [c.result(timeout=60) for c in children]
    finally:
        for c in children:
            c.kill()
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    assert {o[1] for o in outcomes} == {str(tmp_path / SPEC.filename)}
    assert server.requests == {"/slow/fake_model.pt": 1}
    # Both started together; the one that did not download waited for the other's ~0.75 s.
    assert min(o[2] for o in outcomes) >= 0.5
    assert (tmp_path / SPEC.filename).read_bytes() == PAYLOAD
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_corrupt_download_is_caught_before_torch_loads_it(tmp_path, monkeypatch):
    """Through the model session: a corrupt weights/ file never reaches torch.load."""
    import torch

    from infer_segment_anything_2.engine.session import ModelKey, Sam2Session

    spec = MODELS["sam2.1_hiera_tiny"]
    (tmp_path / spec.filename).write_bytes(b"PK\x03\x04 half a checkpoint")

    def must_not_load(*args, **kwargs):
        raise AssertionError("torch.load was called on an unverified checkpoint")

    monkeypatch.setattr(torch, "load", must_not_load)
    with pytest.raises(CheckpointError) as info:
        Sam2Session(tmp_path).load(ModelKey("sam2.1_hiera_tiny"))
    message = str(info.value)
    assert "corrupt" in message and "was removed" in message and "offline" in message
    assert str(tmp_path / spec.filename) in message and spec.url in message
    assert not (tmp_path / spec.filename).exists()


def test_killed_download_leaves_nothing_and_is_cleaned_up(server, tmp_path):
    with Child(CHILDREN, "download_forever", str(tmp_path), server.url("stall-body")) as child:
        assert child.result(timeout=60) == "started"
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline and child.alive(), "the download never started"
            time.sleep(0.05)
    # Leaving the block killed the child (SIGKILL: no cleanup code ran in it).
    assert not (tmp_path / SPEC.filename).exists()
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # the crash's leftover
    assert ensure_checkpoint(SPEC, tmp_path, url=server.url("good")).read_bytes() == PAYLOAD
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
