"""The benchmarks of the paths users call, run for a second per point so that
they cannot rot between the runs that make docs/benchmarks.md (their
figures are not looked at here). wrk stops a benchmark on any answer that
is not a 2xx, so each run also says that every request it sent succeeded:
through the gateway public, closed by the key plugin and by forwardAuth;
to a model server with batching off and on; the model-server
benchmark's setups (but MLServer's), over HTTP and gRPC; and a model
package written and read back (no stack)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Alone: the load would skew the timings of tests running beside it.
pytestmark = [pytest.mark.e2e, pytest.mark.alone]


def bench(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("operator", "runtimes", "bench"))}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_the_closed_model_benchmark_runs_through_the_gateway() -> None:
    out = bench("auth_overhead.py", "--seconds", "1")
    for closed_by in ("gateway plugin (apikey)", "forwardAuth (oidc)"):
        for connections in (1, 16):
            assert f"| {closed_by} | {connections} | " in out, out


def test_the_batching_benchmark_runs() -> None:
    out = bench("batching_bench.py", "--seconds", "1")
    assert "| 64 |" in out, out


def test_the_model_server_benchmark_runs(tmp_path: Path) -> None:
    # Every setup but MLServer (its venv is bench/run.sh's), one connection.
    report = tmp_path / "benchmarks.md"
    bench("runtime_bench.py", "--seconds", "1", "--smoke", "--report", str(report),
          "--traefik", os.environ["AIART_TRAEFIK_BIN"])
    text = report.read_text()
    for setup in ("bare ASGI + orjson, same predict", "aiart direct, tracing on",
                  "aiart via Traefik", "aiart via Traefik, tracing on", "aiart direct, gRPC"):
        assert f"| {setup} | sklearn | 1 | " in text, text


def test_the_package_benchmark_writes_and_reads_back_a_package() -> None:
    # No stack: a 4 MB layer, in a process of its own as each size is.
    out = bench("package_io.py", "--megabytes", "4")
    (row,) = [line for line in out.splitlines() if line.startswith("| 4 MB |")]
    written = int(row.split("|")[2].replace(",", ""))
    assert written > 4 << 20, row
