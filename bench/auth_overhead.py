"""What closing a model costs per request: the same model deployed public
(`auth: none`), closed with `auth: apikey` (the key checked in the gateway
by aiart's plugin, gateway/plugins) and closed with `auth: oidc` called
with an admin API key (the key checked by Traefik's forwardAuth round trip
to the auth service, as every closed model was before the plugin), called
through Traefik side by side in one run with the same load generator (wrk)
and concurrency.

Run on the running stack (./hack/up.sh first):
    .venv/bin/python bench/auth_overhead.py [--seconds 8]
Everything it creates is labelled aiart.bench and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
import uuid

import docker
import httpx
from aiart.cli.api import DEFAULT_URL, gateway_trust
from bench_stack import remove_run
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from wrk_load import wrk

# Through the gateway as users call it: HTTPS, checked against the local CA.
GATEWAY = os.environ.get("AIART_GATEWAY_URL", DEFAULT_URL)
VERIFY = gateway_trust()
BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    engine = docker.from_env()
    run = uuid.uuid4().hex[:6]
    x, y = load_iris(return_X_y=True)
    model = pickle.dumps(LogisticRegression(max_iter=500).fit(x, y))
    names = {"public": f"b{run}-public", "closed": f"b{run}-closed",
             "forwardauth": f"b{run}-fwd"}
    modes = {"public": "none", "closed": "apikey", "forwardauth": "oidc"}
    key_name = f"b{run}-key"
    try:
        for kind, name in names.items():
            engine.configs.create(name=f"{name}-model", data=model,
                                  labels={"aiart.bench": run})
            mode = modes[kind]
            engine.configs.create(name=f"{name}-1", labels={"aiart.bench": run,
                                                            "aiart.model": name}, data=(
                f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1'}}\n"
                f"spec:\n  runtime: sklearn\n  artifact: {{uri: 'config://{name}-model'}}\n"
                f"  auth: {{mode: {mode}}}\n").encode())
        # An admin key: in oidc mode only an admin key stands in for a token.
        key = subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "create", key_name,
                              "--role", "admin", "--model", names["closed"],
                              "--model", names["forwardauth"]],
                             capture_output=True, text=True, check=True).stdout.strip()
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=5) as client:
            for name in names.values():
                while client.post(f"/v2/models/{name}/infer", json=BODY,
                                  headers={"X-API-Key": key}).status_code != 200:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} never answered")
                    time.sleep(1)
        rows = []
        for connections in (1, 16):
            for kind, name in names.items():
                url = f"{GATEWAY}/v2/models/{name}/infer"
                headers = {"X-API-Key": key} if kind != "public" else {}
                wrk(url, json.dumps(BODY), connections, 2, headers=headers)  # warm-up
                rps, p50, p99 = wrk(url, json.dumps(BODY), connections, args.seconds,
                                    headers=headers)
                rows.append((kind, connections, rps, p50, p99))
                print(f"{kind:11} c={connections}  {rps:7.0f} req/s  p50 {p50:.3f} ms  "
                      f"p99 {p99:.3f} ms", flush=True)
        print("\n| model | connections | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        for kind, c, rps, p50, p99 in rows:
            print(f"| {kind} | {c} | {rps:.0f} | {p50:.3f} | {p99:.3f} |")
        print("\n| closed by | connections | closed/public throughput "
              "| closed - public p50 ms |")
        print("|---|---|---|---|")
        for kind in ("closed", "forwardauth"):
            for c in (1, 16):
                public = next(r for r in rows if r[0] == "public" and r[1] == c)
                closed = next(r for r in rows if r[0] == kind and r[1] == c)
                by = "gateway plugin (apikey)" if kind == "closed" else "forwardAuth (oidc)"
                print(f"| {by} | {c} | {closed[2] / public[2]:.2f} | "
                      f"{closed[3] - public[3]:.3f} |")
    finally:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", key_name],
                       capture_output=True)
        remove_run(engine, run, names.values())


if __name__ == "__main__":
    main()
