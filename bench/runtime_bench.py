"""Model-server throughput and latency, side by side, in one run.

Serves the same iris model (scikit-learn, and its ONNX conversion) from:
in-process predict, a bare ASGI + orjson server doing the same predict
(the practical limit), aiart's runtime directly (with tracing off and on),
aiart's runtime through Traefik, and MLServer with mlserver-sklearn in its
best configuration (single process, parallel_workers 0) and its default
one. Same payload (one row, OIP JSON, output "predict"), same load
generator (wrk), concurrency 1/4/16; then the same call over gRPC (h2load)
to aiart's runtime and to MLServer. The server is pinned to one core, the
load generator (and Traefik, and the trace sink) to the other. Writes
docs/benchmarks.md.

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
from h2load_grpc import h2load
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from wrk_load import wrk

ROOT = Path(__file__).resolve().parents[1]
ROW = [5.1, 3.5, 1.4, 0.2]
CONCURRENCY: tuple[int, ...] = (1, 4, 16)
SERVER_CPU, LOAD_CPU = "1", "0"


@dataclass
class Result:
    setup: str
    model: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    # h2load (gRPC) gives a mean, not percentiles.
    mean_ms: float | None = None


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


FLOOR = "HTTP floor (uvicorn, constant answer)"
FLOOR_VIA_TRAEFIK = "HTTP floor via Traefik (no middleware)"
BARE = "bare ASGI + orjson, same predict"
DIRECT, TRACED, VIA_TRAEFIK = "aiart direct", "aiart direct, tracing on", "aiart via Traefik"
VIA_TRAEFIK_TRACED = "aiart via Traefik, tracing on"
MLSERVER, MLSERVER_DEFAULT = "MLServer (sklearn)", "MLServer default settings (sklearn)"
GRPC, MLSERVER_GRPC = "aiart direct, gRPC", "MLServer (sklearn), gRPC"


def grpc_request(output: str) -> bytes:
    """The same call as ``body`` as an OIP gRPC ModelInferRequest."""
    from aiart_runtime.oip import messages as pb

    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    tensor.contents.fp64_contents.extend(ROW)
    request.outputs.add(name=output)
    return bytes(request.SerializeToString())


def check_grpc(port: int, message: bytes) -> None:
    """One call with a real gRPC client: h2load cannot see a gRPC error status."""
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer")
        rpc(message, timeout=10)  # raises on any status but OK


def traefik_in_front(binary: str, work: Path, name: str, port: int, gw: int,
                     traces: str = "") -> list[str]:
    """Traefik's command line: one route, no middleware, to 127.0.0.1:port;
    ``traces``: an OTLP/HTTP endpoint to send a span per request to, as the
    stack's gateway does with tracing on."""
    dynamic = work / f"traefik-{name}.yml"
    dynamic.write_text(
        "http:\n  routers:\n    r:\n      rule: PathPrefix(`/`)\n      service: s\n"
        f"  services:\n    s:\n      loadBalancer:\n        servers:\n"
        f"          - url: http://127.0.0.1:{port}\n")
    tracing = ["--tracing=true", "--tracing.serviceName=aiart-gateway",
               f"--tracing.otlp.http.endpoint={traces}/v1/traces"] if traces else []
    return [binary, f"--entrypoints.web.address=127.0.0.1:{gw}",
            f"--providers.file.filename={dynamic}", "--log.level=ERROR", *tracing]


OTHER_BENCHMARKS = "<!-- sections below: other benchmarks, kept when this one rewrites -->\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--mlserver", default=str(ROOT / "bench" / ".venv-mlserver"))
    parser.add_argument("--traefik", required=True, help="path of a traefik binary")
    parser.add_argument("--smoke", action="store_true",
                        help="one connection count, and MLServer only if its venv exists: "
                             "the CI's check that the benchmark still runs")
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    global CONCURRENCY
    if args.smoke:
        CONCURRENCY = (1,)
    with_mlserver = not args.smoke or (Path(args.mlserver) / "bin" / "mlserver").exists()

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

    def measure(setup: str, model: str, url: str, payload: str | None = None) -> None:
        payload = payload or body(outputs[model])
        wrk(url, payload, 4, 2, cpu=LOAD_CPU)  # warm-up
        for c in CONCURRENCY:
            rps, p50, p99 = wrk(url, payload, c, args.seconds, cpu=LOAD_CPU)
            results.append(Result(setup, model, c, rps, p50, p99))
            print(f"{setup:24} {model:8} c={c:<3} {rps:9.0f} req/s  p50 {p50:6.3f} ms  "
                  f"p99 {p99:6.3f} ms", flush=True)

    def measure_grpc(setup: str, port: int) -> None:
        message = grpc_request("predict")
        check_grpc(port, message)
        url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
        for c in CONCURRENCY:
            rps, mean = h2load(url, message, c, args.seconds, cpu=LOAD_CPU)
            results.append(Result(setup, "sklearn", c, rps, float("nan"), float("nan"), mean))
            print(f"{setup:24} sklearn  c={c:<3} {rps:9.0f} req/s  mean {mean:6.3f} ms",
                  flush=True)

    port = free_port()
    floor = [python, "-m", "uvicorn", "floor_app:app", "--app-dir", str(ROOT / "bench"),
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
             "error"]
    with process(floor, f"http://127.0.0.1:{port}/", SERVER_CPU):
        for c in CONCURRENCY:
            rps, p50, p99 = wrk(f"http://127.0.0.1:{port}/", body("predict"), c, args.seconds,
                                cpu=LOAD_CPU)
            results.append(Result(FLOOR, "-", c, rps, p50, p99))
            print(f"HTTP floor c={c} {rps:9.0f} req/s  p50 {p50:6.3f} ms  p99 {p99:6.3f} ms",
                  flush=True)
        # The gateway hop's own floor: Traefik, no middleware, in front of it.
        gw = free_port()
        with process(traefik_in_front(args.traefik, work, "floor", port, gw),
                     f"http://127.0.0.1:{gw}/", LOAD_CPU):
            rps, p50, p99 = wrk(f"http://127.0.0.1:{gw}/", body("predict"), 1, args.seconds,
                                cpu=LOAD_CPU)
        results.append(Result(FLOOR_VIA_TRAEFIK, "-", 1, rps, p50, p99))
        print(f"HTTP floor via Traefik c=1 {rps:9.0f} req/s  p50 {p50:6.3f} ms", flush=True)

    port = free_port()
    bare = [python, "-m", "uvicorn", "bare_app:app", "--app-dir", str(ROOT / "bench"),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level",
            "error"]
    with process(bare, f"http://127.0.0.1:{port}/", SERVER_CPU,
                 AIART_BARE_MODEL=str(dirs["sklearn"] / "model.pkl")):
        measure(BARE, "sklearn", f"http://127.0.0.1:{port}/")

    for model, path in dirs.items():
        port, grpc_port = free_port(), free_port()
        server = [python, "-m", "aiart_runtime", "serve", str(path), "--port", str(port),
                  "--grpc-port", str(grpc_port), "--host", "127.0.0.1"]
        with process(server, f"http://127.0.0.1:{port}/v2/health/ready", SERVER_CPU):
            measure(DIRECT, model, f"http://127.0.0.1:{port}/v2/models/iris/infer")
            if model == "sklearn":
                measure_grpc(GRPC, grpc_port)
            gw = free_port()
            with process(traefik_in_front(args.traefik, work, model, port, gw),
                         f"http://127.0.0.1:{gw}/v2/health/ready", LOAD_CPU):
                measure(VIA_TRAEFIK, model, f"http://127.0.0.1:{gw}/v2/models/iris/infer")

    # Tracing on: every request a span, exported over OTLP/HTTP to a sink
    # on the load generator's core (the floor app, which takes anything).
    sink, port, grpc_port = free_port(), free_port(), free_port()
    sink_app = [python, "-m", "uvicorn", "floor_app:app", "--app-dir", str(ROOT / "bench"),
                "--host", "127.0.0.1", "--port", str(sink), "--no-access-log", "--log-level",
                "error"]
    server = [python, "-m", "aiart_runtime", "serve", str(dirs["sklearn"]), "--port", str(port),
              "--grpc-port", str(grpc_port), "--host", "127.0.0.1"]
    with process(sink_app, f"http://127.0.0.1:{sink}/", LOAD_CPU), \
            process(server, f"http://127.0.0.1:{port}/v2/health/ready", SERVER_CPU,
                    OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{sink}"):
        measure(TRACED, "sklearn", f"http://127.0.0.1:{port}/v2/models/iris/infer")
        # The path users call with tracing on: the gateway's span, then the model's.
        gw = free_port()
        with process(traefik_in_front(args.traefik, work, "traced", port, gw,
                                      traces=f"http://127.0.0.1:{sink}"),
                     f"http://127.0.0.1:{gw}/v2/health/ready", LOAD_CPU):
            measure(VIA_TRAEFIK_TRACED, "sklearn", f"http://127.0.0.1:{gw}/v2/models/iris/infer")

    mlserver = [str(Path(args.mlserver) / "bin" / "mlserver"), "start", str(mls)]
    for setup, best in ((MLSERVER, True), (MLSERVER_DEFAULT, False)) if with_mlserver else ():
        port, grpc_port = free_port(), free_port()
        # Best: inference in the server's own process, no metrics server, debug off.
        # Default: MLServer's defaults (a worker process for inference,
        # metrics on), as a user who sets nothing gets it.
        tuned = ({"parallel_workers": 0, "metrics_endpoint": None, "debug": False}
                 if best else {})
        (mls / "settings.json").write_text(json.dumps({
            "http_port": port, "grpc_port": grpc_port, "metrics_port": free_port(),
            "host": "127.0.0.1", **tuned}))
        with process(mlserver, f"http://127.0.0.1:{port}/v2/models/iris/ready", SERVER_CPU):
            measure(setup, "sklearn", f"http://127.0.0.1:{port}/v2/models/iris/infer")
            if best:
                measure_grpc(MLSERVER_GRPC, grpc_port)

    write_report(results, args.seconds, args.report)


def write_report(results: list[Result], seconds: int, page: Path) -> None:
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
        "machine; the ratios are the result. MLServer's best configuration is one process",
        "(`parallel_workers: 0`), its metrics server and debug off; its default settings put",
        "inference in a worker process (MLServer 1.7 with uvloop 0.21: under later uvloops",
        "its workers do not start). Tracing on: every request a span (two through Traefik:",
        "the gateway's and the model's), exported over OTLP/HTTP to a sink on the load",
        "generator's core.",
        "",
        "| setup | model | connections | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.mean_ms is None:
            lines.append(f"| {r.setup} | {r.model} | {r.connections} | {r.rps:.0f} | "
                         f"{r.p50_ms:.3f} | {r.p99_ms:.3f} |")
    lines += ["", "Over gRPC (the same call as an OIP `ModelInferRequest`, h2load, one call in "
              "flight per connection; h2load reports a mean, not percentiles):", "",
              "| setup | model | connections | requests/s | mean ms |", "|---|---|---|---|---|"]
    for r in results:
        if r.mean_ms is not None:
            lines.append(f"| {r.setup} | {r.model} | {r.connections} | {r.rps:.0f} | "
                         f"{r.mean_ms:.3f} |")
    lines += ["", "## Ratios", "", "| comparison | connections | throughput ratio | p99 ratio |",
              "|---|---|---|---|"]
    pairs = [
        (DIRECT, MLSERVER, "sklearn"), (DIRECT, MLSERVER_DEFAULT, "sklearn"),
        (DIRECT, BARE, "sklearn"), (TRACED, DIRECT, "sklearn"),
        (VIA_TRAEFIK, DIRECT, "sklearn"), (VIA_TRAEFIK, DIRECT, "onnx"),
        (VIA_TRAEFIK_TRACED, VIA_TRAEFIK, "sklearn"),
        (DIRECT, FLOOR, "onnx"), (GRPC, DIRECT, "sklearn"), (GRPC, MLSERVER_GRPC, "sklearn"),
    ]
    for c in CONCURRENCY:
        for ours_setup, peer_setup, model in pairs:
            ours = find(ours_setup, model, c)
            peer = find(peer_setup, "-" if peer_setup == FLOOR else model, c)
            if ours and peer:
                p99 = ours.p99_ms / peer.p99_ms if ours.mean_ms is peer.mean_ms is None else None
                # The MLServer rows name their model already.
                label = f"{ours_setup} / {peer_setup}" + (
                    "" if f"({model})" in peer_setup else f" ({model})")
                lines.append(f"| {label} | {c} | "
                             f"{ours.rps / peer.rps:.2f} | "
                             f"{'-' if p99 is None else f'{p99:.2f}'} |")
    base = find("in-process predict", "sklearn", 1)
    direct = find(DIRECT, "sklearn", 1)
    if base and direct:
        lines += ["", f"Overhead of aiart's runtime over in-process `predict` at p50 with one "
                  f"client: {direct.p50_ms - base.p50_ms:.3f} ms "
                  f"({direct.p50_ms:.3f} ms vs {base.p50_ms:.3f} ms)."]
    floor = find(FLOOR, "-", 1)
    if floor:
        lines += ["", f"Of that, {floor.p50_ms:.3f} ms at p50 is the HTTP floor: uvicorn with the "
                  "runtime's settings answering a constant over loopback "
                  "(`bench/floor_app.py`), before any protocol or model work."]
    hop = find(FLOOR_VIA_TRAEFIK, "-", 1)
    if floor and hop:
        lines += ["", f"The gateway hop's own floor: Traefik with one route and no middleware "
                  f"in front of that constant answer adds {hop.p50_ms - floor.p50_ms:.3f} ms "
                  f"at p50 with one client ({hop.p50_ms:.3f} ms vs {floor.p50_ms:.3f} ms)."]
    gw = find(VIA_TRAEFIK, "sklearn", 1)
    if direct and gw:
        lines += ["", f"The gateway hop with the sklearn model, one client: "
                  f"+{gw.p50_ms - direct.p50_ms:.3f} ms at p50 ({gw.p50_ms:.3f} ms vs "
                  f"{direct.p50_ms:.3f} ms)."]
    # This run's part only: the sections after the marker come from other
    # benchmarks (bench/batching_bench.py, bench/auth_overhead.py) and stay.
    rest = page.read_text().partition(OTHER_BENCHMARKS)[2] if page.exists() else ""
    page.write_text("\n".join(lines) + "\n\n" + OTHER_BENCHMARKS + rest)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
