"""A model server told to stop (SIGTERM, as the swarm stops a task) goes on
answering while requests still come, says it is not ready meanwhile, and
stops once they have ceased, or at its limit: a real server process, as a
scalable version's task runs it (AIART_DRAIN_SECONDS)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.test_grpc import ROWS, model_dir

# How the server ends when it stops as told: uvicorn raises the signal again
# once it has finished.
STOPPED = (0, -signal.SIGTERM)
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, path: Path, quiet: float, limit: float) -> None:
        self.port = free_port()
        env = {**os.environ, "AIART_DRAIN_SECONDS": str(quiet),
               "AIART_DRAIN_LIMIT_SECONDS": str(limit)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aiart_runtime", "serve", str(model_dir(path)),
             "--host", "127.0.0.1", "--port", str(self.port), "--grpc-port", str(free_port())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client.get("/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "the server did not start"
            assert time.monotonic() < deadline, "the server was not ready in 60 s"
            time.sleep(0.1)

    def infer(self) -> int:
        return self.client.post("/v2/models/iris/infer", json=BODY).status_code

    def close(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    quiet, limit = request.param
    running = Server(tmp_path, quiet, limit)
    yield running
    running.close()


@pytest.mark.parametrize("server", [(1.0, 20.0)], indirect=True)
def test_answers_while_called_then_stops_once_calls_cease(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    told = time.monotonic()
    assert server.client.get("/v2/health/ready").status_code == 400  # the protocol's "not ready"
    # Called for three times the quiet period: every request answered.
    answered = []
    while time.monotonic() - told < 3.0:
        last_call = time.monotonic()  # the server saw the call after this
        answered.append(server.infer())
        time.sleep(0.3)
    assert answered and set(answered) == {200}
    assert server.process.poll() is None, "stopped while still called"
    assert server.client.get("/v2/health/ready").json() == {"ready": False}
    # Health checks are not calls: with only them it stops after the quiet
    # period, counted from the last call (not from here: the loop above
    # slept after it, and a loaded machine was slow to get here).
    quiet_since = time.monotonic()
    while server.process.poll() is None and time.monotonic() - quiet_since < 10:
        try:
            server.client.get("/v2/health/ready")
        except httpx.TransportError:
            break
        time.sleep(0.2)
    assert server.process.wait(10) in STOPPED
    stopped_after = time.monotonic() - last_call
    assert 0.8 <= stopped_after < 5, stopped_after


@pytest.mark.parametrize("server", [(1.0, 2.0)], indirect=True)
def test_stops_at_its_limit_whatever_comes(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    told = time.monotonic()
    while server.process.poll() is None and time.monotonic() - told < 10:
        try:
            server.infer()
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    assert server.process.wait(10) in STOPPED
    assert 1.8 <= time.monotonic() - told < 6

