"""Model-server throughput and latency, side by side, in one run.

Serves the same iris model (scikit-learn, and its ONNX conversion) from:
in-process predict, aiart's runtime directly, aiart's runtime through
Traefik, and MLServer with mlserver-sklearn (single process,
parallel_workers 0). Same payload (one row, OIP JSON, output "predict"),
same load generator (wrk), concurrency 1/4/16. The server is pinned to one
core, wrk (and Traefik) to the other. Writes docs/benchmarks.md.

Run: ./bench/run.sh   (it prepares MLServer's venv, wrk and Traefik)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from wrk_load import wrk

ROOT = Path(__file__).resolve().parents[1]
ROW = [5.1, 3.5, 1.4, 0.2]
CONCURRENCY = (1, 4, 16)
SERVER_CPU, LOAD_CPU = "1", "0"


@dataclass
class Result:
    setup: str
    model: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} never became ready")


@contextlib.contextmanager
def process(command: list[str], ready_url: str, cpu: str, **env: str) -> Iterator[None]:
    proc = subprocess.Popen(["taskset", "-c", cpu, *command], env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ready_url)
        yield
    finally:
        proc.terminate()  # only the process this script started, by its pid
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def body(model: str) -> str:
    return json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                                   "data": ROW}], "outputs": [{"name": model}]})


def in_process(estimator: object, seconds: float) -> Result:
    x = np.array([ROW])
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        estimator.predict(x)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - start)
    times.sort()
    return Result("in-process predict", "sklearn", 1, len(times) / sum(times),
                  statistics.median(times) * 1e3, times[int(len(times) * 0.99)] * 1e3)


FLOOR_VIA_TRAEFIK = "HTTP floor via Traefik (no middleware)"


def traefik_in_front(binary: str, work: Path, name: str, port: int, gw: int) -> list[str]:
    """Traefik's command line: one route, no middleware, to 127.0.0.1:port."""
    dynamic = work / f"traefik-{name}.yml"
    dynamic.write_text(
        "http:\n  routers:\n    r:\n      rule: PathPrefix(`/`)\n      service: s\n"
        f"  services:\n    s:\n      loadBalancer:\n        servers:\n"
        f"          - url: http://127.0.0.1:{port}\n")
    return [binary, f"--entrypoints.web.address=127.0.0.1:{gw}",
            f"--providers.file.filename={dynamic}", "--log.level=ERROR"]


OTHER_BENCHMARKS = "<!-- sections below: other benchmarks, kept when this one rewrites -->\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--mlserver", default=str(ROOT / "bench" / ".venv-mlserver"))
    parser.add_argument("--traefik", required=True, help="path of a traefik binary")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aiart-bench-"))
    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500, random_state=0).fit(x, y)
    dirs = {"sklearn": work / "sklearn", "onnx": work / "onnx"}
    for path in dirs.values():
        path.mkdir()
    joblib.dump(estimator, dirs["sklearn"] / "model.joblib")
    (dirs["sklearn"] / "model.pkl").write_bytes(pickle.dumps(estimator))
    onnx = to_onnx(estimator, x[:1].astype(np.float32), options={"zipmap": False},
                   target_opset=17)
    (dirs["onnx"] / "model.onnx").write_bytes(onnx.SerializeToString())
    for runtime, artifact in (("sklearn", "model.pkl"), ("onnx", "model.onnx")):
        (dirs[runtime] / "model.json").write_text(json.dumps(
            {"name": "iris", "version": "1", "runtime": runtime, "artifact": artifact}))
    # MLServer: same joblib file, single process.
    mls = work / "mlserver"
    (mls / "iris").mkdir(parents=True)
    (mls / "iris" / "model.joblib").write_bytes((dirs["sklearn"] / "model.joblib").read_bytes())
    (mls / "iris" / "model-settings.json").write_text(json.dumps({
        "name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"}}))

    results: list[Result] = [in_process(estimator, args.seconds)]
    python = sys.executable
    outputs = {"sklearn": "predict", "onnx": "label"}

    def measure(setup: str, model: str, url: str) -> None:
        payload = body(outputs[model])
        wrk(url, payload, 4, 2, cpu=LOAD_CPU)  # warm-up
        for c in CONCURRENCY:
            rps, p50, p99 = wrk(url, payload, c, args.seconds, cpu=LOAD_CPU)
            results.append(Result(setup, model, c, rps, p50, p99))
            print(f"{setup:24} {model:8} c={c:<3} {rps:9.0f} req/s  p50 {p50:6.3f} ms  "
                  f"p99 {p99:6.3f} ms", flush=True)

    port = free_port()
    floor = [python, "-m", "uvicorn", "floor_app:app", "--app-dir", str(ROOT / "bench"),
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
             "error"]
    with process(floor, f"http://127.0.0.1:{port}/", SERVER_CPU):
        rps, p50, p99 = wrk(f"http://127.0.0.1:{port}/", body("predict"), 1, args.seconds,
                            cpu=LOAD_CPU)
        results.append(Result("HTTP floor (uvicorn, constant answer)", "-", 1, rps, p50, p99))
        print(f"HTTP floor c=1 {rps:9.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms", flush=True)
        # The gateway hop's own floor: Traefik, no middleware, in front of it.
        gw = free_port()
        with process(traefik_in_front(args.traefik, work, "floor", port, gw),
                     f"http://127.0.0.1:{gw}/", LOAD_CPU):
            rps, p50, p99 = wrk(f"http://127.0.0.1:{gw}/", body("predict"), 1, args.seconds,
                                cpu=LOAD_CPU)
        results.append(Result(FLOOR_VIA_TRAEFIK, "-", 1, rps, p50, p99))
        print(f"HTTP floor via Traefik c=1 {rps:9.0f} req/s  p50 {p50:6.3f} ms", flush=True)

    for model, path in dirs.items():
        port = free_port()
        server = [python, "-m", "aiart_runtime", "serve", str(path), "--port", str(port),
                  "--host", "127.0.0.1"]
        with process(server, f"http://127.0.0.1:{port}/v2/health/ready", SERVER_CPU):
            measure("aiart direct", model, f"http://127.0.0.1:{port}/v2/models/iris/infer")
            gw = free_port()
            with process(traefik_in_front(args.traefik, work, model, port, gw),
                         f"http://127.0.0.1:{gw}/v2/health/ready", LOAD_CPU):
                measure("aiart via Traefik", model, f"http://127.0.0.1:{gw}/v2/models/iris/infer")

    port = free_port()
    mlserver = [str(Path(args.mlserver) / "bin" / "mlserver"), "start", str(mls)]
    (mls / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "parallel_workers": 0, "host": "127.0.0.1"}))
    with process(mlserver, f"http://127.0.0.1:{port}/v2/models/iris/ready", SERVER_CPU):
        measure("MLServer (sklearn)", "sklearn", f"http://127.0.0.1:{port}/v2/models/iris/infer")

    write_report(results, args.seconds)


def write_report(results: list[Result], seconds: int) -> None:
    def find(setup: str, model: str, c: int) -> Result | None:
        return next((r for r in results if (r.setup, r.model, r.connections) == (setup, model, c)),
                    None)

    lines = [
        "# Benchmarks: model server throughput and latency",
        "",
        "Made by `./bench/run.sh` in one run on one machine (2 cores): the server on one",
        "core, the load generator (wrk, one thread) and Traefik on the other. Payload: one",
        "row of iris features, Open Inference Protocol JSON, output `predict` (`label` for",
        f"ONNX). {seconds} s per point after a warm-up. Absolute numbers depend on the",
        "machine; the ratios are the result.",
        "",
        "| setup | model | connections | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.setup} | {r.model} | {r.connections} | {r.rps:.0f} | "
                     f"{r.p50_ms:.3f} | {r.p99_ms:.3f} |")
    lines += ["", "## Ratios", "", "| comparison | connections | throughput ratio | p99 ratio |",
              "|---|---|---|---|"]
    for c in CONCURRENCY:
        ours, peer = find("aiart direct", "sklearn", c), find("MLServer (sklearn)", "sklearn", c)
        if ours and peer:
            lines.append(f"| aiart direct / MLServer (sklearn) | {c} | {ours.rps / peer.rps:.2f}"
                         f" | {ours.p99_ms / peer.p99_ms:.2f} |")
        gw = find("aiart via Traefik", "sklearn", c)
        if ours and gw:
            lines.append(f"| aiart via Traefik / aiart direct (sklearn) | {c} | "
                         f"{gw.rps / ours.rps:.2f} | {gw.p99_ms / ours.p99_ms:.2f} |")
    base = find("in-process predict", "sklearn", 1)
    direct = find("aiart direct", "sklearn", 1)
    if base and direct:
        lines += ["", f"Overhead of aiart's runtime over in-process `predict` at p50 with one "
                  f"client: {direct.p50_ms - base.p50_ms:.3f} ms "
                  f"({direct.p50_ms:.3f} ms vs {base.p50_ms:.3f} ms)."]
    floor = find("HTTP floor (uvicorn, constant answer)", "-", 1)
    if floor:
        lines += ["", f"Of that, {floor.p50_ms:.3f} ms at p50 is the HTTP floor: uvicorn with the "
                  "runtime's settings answering a constant over loopback "
                  "(`bench/floor_app.py`), before any protocol or model work."]
    hop = find(FLOOR_VIA_TRAEFIK, "-", 1)
    if floor and hop:
        lines += ["", f"The gateway hop's own floor: Traefik with one route and no middleware "
                  f"in front of that constant answer adds {hop.p50_ms - floor.p50_ms:.3f} ms "
                  f"at p50 with one client ({hop.p50_ms:.3f} ms vs {floor.p50_ms:.3f} ms)."]
    # This run's part only: the sections after the marker come from other
    # benchmarks (bench/batching_bench.py, bench/auth_overhead.py) and stay.
    page = ROOT / "docs" / "benchmarks.md"
    rest = page.read_text().partition(OTHER_BENCHMARKS)[2] if page.exists() else ""
    page.write_text("\n".join(lines) + "\n\n" + OTHER_BENCHMARKS + rest)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
