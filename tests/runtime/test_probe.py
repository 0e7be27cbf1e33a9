"""The container health check against a real HTTP server on a real socket:
the runtime's own server (uvicorn, as in the image) and a few that answer
wrongly."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import uvicorn
from aiart_runtime.__main__ import load
from aiart_runtime.probe import ready
from aiart_runtime.server import create_app
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def runtime_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    path = tmp_path_factory.mktemp("model")
    x, y = load_iris(return_X_y=True)
    (path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None}))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(load(path), max_body_bytes=1024), host="127.0.0.1", port=port,
        log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_the_runtime_server_reads_as_ready(runtime_port: int) -> None:
    assert ready(runtime_port)


def test_nothing_listening_is_not_ready() -> None:
    assert not ready(free_port(), timeout=1)


def serve(status: int, body: bytes) -> ThreadingHTTPServer:
    return serve_on(0, status, body)


def serve_on(port: int, status: int, body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize("status,body,expected", [
    (200, b'{"ready":true}', True),
    (200, b'{"ready":false}', False),
    (503, b'{"ready":true}', False),  # a proxy's error page quoting a ready answer
    (200, b"", False),
])
def test_only_a_200_that_says_ready_is_ready(status: int, body: bytes, expected: bool) -> None:
    server = serve(status, body)
    try:
        assert ready(server.server_address[1], timeout=2) is expected
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_never_answers_is_not_ready_after_the_timeout() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        started = time.monotonic()
        assert not ready(listener.getsockname()[1], timeout=0.5)
        assert time.monotonic() - started < 5


@contextmanager
def ready_server_after(seconds: float) -> Iterator[int]:
    """The port of a ready server that listens only after this long, as a
    model's server does once its model is loaded."""
    port = free_port()
    server: list[ThreadingHTTPServer] = []

    def listen_later() -> None:
        time.sleep(seconds)
        server.append(serve_on(port, 200, b'{"ready":true}'))

    threading.Thread(target=listen_later, daemon=True).start()
    try:
        yield port
    finally:
        for running in server:
            running.shutdown()
            running.server_close()


def test_a_server_about_to_listen_is_waited_for_and_one_gone_is_not_ready() -> None:
    with ready_server_after(1.0) as port:
        started = time.monotonic()
        assert not ready(port, timeout=2), "nothing listened yet, and it did not wait"
        assert ready(port, timeout=2, wait=5), "it did not wait for the server to listen"
        assert time.monotonic() - started >= 1.0
    # Nothing comes: not ready once the wait is over, not before.
    started = time.monotonic()
    assert not ready(free_port(), timeout=2, wait=0.5)
    assert 0.5 <= time.monotonic() - started < 3


def test_an_answer_that_came_at_once_is_held_until_the_pace() -> None:
    # The engine times the next check from the end of the last one: holding
    # the answer spaces the checks of a running model out (probe.py).
    for status, body, expected in ((200, b'{"ready":true}', True), (503, b"", False)):
        server = serve(status, body)
        try:
            started = time.monotonic()
            assert ready(server.server_address[1], timeout=2, wait=3, pace=1.0) is expected
            assert time.monotonic() - started >= 1.0, f"a {status} was not held"
        finally:
            server.shutdown()
            server.server_close()


def test_a_server_that_starts_listening_is_reported_at_once_not_at_the_pace() -> None:
    # A new model: found healthy (so routed) as soon as it listens.
    with ready_server_after(0.3) as port:
        started = time.monotonic()
        assert ready(port, timeout=2, wait=3, pace=2.0)
        assert time.monotonic() - started < 1.5, "the first answer waited for the pace"
