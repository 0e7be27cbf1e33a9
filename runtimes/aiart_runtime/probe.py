"""Container health check: exits 0 when the local server says it is ready.

The engine runs this every three seconds in every model container, so it
imports nothing but ``socket``: importing ``urllib.request`` alone took about
120 ms of CPU a probe (``python -X importtime``), ten times the rest of the
probe, and on a node with a few dozen models that is a core's worth of work
spent asking "are you ready?".
"""

from __future__ import annotations

import socket
import sys
import time

REQUEST = b"GET /v2/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
MAX_ANSWER = 64 * 1024
# The server listens only once its model is loaded, so a refused connection
# at start means "not yet": the check waits for the server to listen, this
# long at most: well within the check's 6 s timeout, and short enough that a
# server gone for good is still found unhealthy after a few checks.
WAIT_FOR_LISTENING_SECONDS = 3.0
RETRY_SECONDS = 0.05
# The engine (API 1.41) runs the first check one interval after the
# container starts and each next one an interval after the last one ended;
# a start interval of its own needs API 1.44. So the interval is short (0.5 s,
# core/render.py), and a new server is found healthy (so routed, so Ready)
# as soon as it listens, not at the next whole interval; and a check that
# finds the server up at once holds its answer until this long after its
# start, so that checks then come every 3 s: each one costs the node about
# 80 ms of CPU (the engine's exec and this interpreter's start).
PACE_SECONDS = 2.5


def ready(port: int = 8080, timeout: float = 5.0, wait: float = 0.0, pace: float = 0.0) -> bool:
    """Whether the server on this port answers 200 with ``{"ready":true}``;
    a refused connection is tried again for ``wait`` seconds. Unless it had
    to wait, the answer comes ``pace`` seconds after the call at the soonest."""
    started = time.monotonic()
    waited = False
    answer = b""
    try:
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                break
            except ConnectionRefusedError:
                if time.monotonic() - started >= wait:
                    raise
                waited = True
                time.sleep(RETRY_SECONDS)
        with conn:
            conn.sendall(REQUEST)
            # HTTP/1.0: the server closes the connection after its answer.
            while len(answer) < MAX_ANSWER and (chunk := conn.recv(4096)):
                answer += chunk
    except OSError:
        return False
    finally:
        if not waited:
            time.sleep(max(0.0, started + pace - time.monotonic()))
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return status_line.split(b" ")[1:2] == [b"200"] and b'"ready":true' in body


if __name__ == "__main__":
    sys.exit(0 if ready(wait=WAIT_FOR_LISTENING_SECONDS, pace=PACE_SECONDS) else 1)
