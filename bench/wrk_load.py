"""wrk as the benchmarks' load generator: one POST body, optional headers,
requests per second and p50/p99 latency read from its report."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping


def wrk(url: str, payload: str, connections: int, seconds: int, *,
        headers: Mapping[str, str] | None = None,
        cpu: str | None = None) -> tuple[float, float, float]:
    """requests/s, p50 ms and p99 ms; ``cpu`` pins wrk with taskset."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(payload)}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
              for k, v in (headers or {}).items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    pin = ["taskset", "-c", cpu] if cpu else []
    try:
        out = subprocess.run([*pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                              "--latency", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors:\n{out}")

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, millis("50"), millis("99")
