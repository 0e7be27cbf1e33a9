"""Container health check: exits 0 when the local server says it is ready.

The engine runs this every two seconds in every model container, so it
imports nothing but ``socket``: importing ``urllib.request`` alone took about
120 ms of CPU a probe (``python -X importtime``), ten times the rest of the
probe, and on a node with a few dozen models that is a core's worth of work
spent asking "are you ready?".
"""

from __future__ import annotations

import socket
import sys

REQUEST = b"GET /v2/health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
MAX_ANSWER = 64 * 1024


def ready(port: int = 8080, timeout: float = 5.0) -> bool:
    """Whether the server on this port answers 200 with ``{"ready":true}``."""
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(REQUEST)
            # HTTP/1.0: the server closes the connection after its answer.
            while len(answer) < MAX_ANSWER and (chunk := conn.recv(4096)):
                answer += chunk
    except OSError:
        return False
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return status_line.split(b" ")[1:2] == [b"200"] and b'"ready":true' in body


if __name__ == "__main__":
    sys.exit(0 if ready() else 1)
