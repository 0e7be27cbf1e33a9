"""h2load as the benchmarks' gRPC load generator: unary calls of one
prepared message over HTTP/2 without TLS, requests per second and mean
latency read from its report (h2load gives no percentiles)."""

from __future__ import annotations

import re
import subprocess
import tempfile


def grpc_frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load(url: str, message: bytes, connections: int, seconds: int, *,
           headers: dict[str, str] | None = None,
           cpu: str | None = None) -> tuple[float, float]:
    """requests/s and mean ms of ``connections`` clients, one call in flight
    each, for ``seconds``. Every call must have had an HTTP 2xx; gRPC's own
    status comes in trailers, which h2load does not read, so the caller
    checks one call with a real gRPC client first."""
    with tempfile.NamedTemporaryFile("wb", suffix=".bin") as data:
        data.write(grpc_frame(message))
        data.flush()
        pin = ["taskset", "-c", cpu] if cpu else []
        extra = [arg for k, v in (headers or {}).items() for arg in ("-H", f"{k}: {v}")]
        out = subprocess.run(
            [*pin, "h2load", "-t1", f"-c{connections}", "-m1", f"-D{seconds}",
             "--warm-up-time=1", "-d", data.name, "-H", "content-type: application/grpc",
             "-H", "te: trailers", *extra, url],
            capture_output=True, text=True, check=True).stdout
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not done or not codes or int(codes.group(1)) != int(done.group(1)) or not int(
            done.group(1)):
        raise RuntimeError(f"{url} answered errors:\n{out}")
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    assert mean, out
    value, unit = float(mean.group(1)), mean.group(2)
    return rps, value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
