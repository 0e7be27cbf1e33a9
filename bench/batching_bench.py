"""Adaptive batching, off and on, side by side in one run.

A model where batching pays: a scikit-learn MLP on 256 features (a call on
64 rows costs little more than one on a single row). The same model is
served by aiart's runtime twice, without ``batching`` and with
``{max_batch_size: 64, max_latency_ms: 5}``, each pinned to one core, wrk
on the other; one row per request (OIP JSON), 1, 16 and 64 connections.
Prints a table with the ratio on/off of throughput and of p50 latency.

Run: .venv/bin/python bench/batching_bench.py [--seconds 10]
(wrk and taskset: ./bench/run.sh installs them.)
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
from runtime_bench import LOAD_CPU, SERVER_CPU, free_port, process
from sklearn.neural_network import MLPClassifier
from wrk_load import wrk

FEATURES = 256
CONNECTIONS = (1, 16, 64)
BATCHING: dict[str, float] = {"max_batch_size": 64, "max_latency_ms": 5}


def model_dir(path: Path, estimator: object, batching: dict[str, float] | None) -> Path:
    path.mkdir(parents=True)
    (path / "model.pkl").write_bytes(pickle.dumps(estimator))
    settings: dict[str, object] = {"name": "mlp", "version": "1", "runtime": "sklearn",
                                   "artifact": "model.pkl", "inputs": None, "outputs": None}
    if batching:
        settings["batching"] = batching
    (path / "model.json").write_text(json.dumps(settings))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, FEATURES))
    y = (x[:, :8].sum(axis=1) > 0).astype(int)
    estimator = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=20, random_state=0)
    estimator.fit(x, y)
    row = x[:1].tolist()
    payload = json.dumps({"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP64",
                                      "data": row}], "outputs": [{"name": "predict"}]})
    results: dict[tuple[str, int], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as work:
        for setup, batching in (("off", None), ("on", BATCHING)):
            path = model_dir(Path(work) / setup, estimator, batching)
            port = free_port()
            server = [sys.executable, "-m", "aiart_runtime", "serve", str(path),
                      "--port", str(port), "--host", "127.0.0.1"]
            with process(server, f"http://127.0.0.1:{port}/v2/health/ready", SERVER_CPU):
                url = f"http://127.0.0.1:{port}/v2/models/mlp/infer"
                wrk(url, payload, 4, 2, cpu=LOAD_CPU)  # warm up
                for c in CONNECTIONS:
                    results[setup, c] = wrk(url, payload, c, args.seconds, cpu=LOAD_CPU)
                    rps, p50, p99 = results[setup, c]
                    print(f"batching {setup:3} c={c:<3} {rps:8.0f} req/s  p50 {p50:7.3f} ms"
                          f"  p99 {p99:7.3f} ms", flush=True)
    print("\n| connections | off req/s | on req/s | on/off throughput | off p50 ms | on p50 ms |")
    print("|---|---|---|---|---|---|")
    for c in CONNECTIONS:
        off, on = results["off", c], results["on", c]
        print(f"| {c} | {off[0]:.0f} | {on[0]:.0f} | {on[0] / off[0]:.2f} | {off[1]:.3f} | "
              f"{on[1]:.3f} |")


if __name__ == "__main__":
    main()
