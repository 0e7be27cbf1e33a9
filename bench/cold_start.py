"""Cold starts on the running stack (./hack/up.sh first): a scalable model
at zero replicas, woken by one request through the gateway, as users call
it (HTTPS, the model's route), again and again.

For each wake it prints the time from the request to its answer, and where
that time went, from the engine's own records: the autoscaler's decision
(the ``aiart.scale.changed`` label), the task's creation, the container's
start, the model loaded (the runtime's log line, by the engine's log
timestamp), and the answer. Between wakes it waits for the model to be put
back to sleep (``scaleToZeroAfter: 5s``) and for the gateway to have
dropped its last task.

Run: .venv/bin/python bench/cold_start.py [--wakes 20] [--runtime sklearn onnx]
Everything it creates is labelled aiart.bench and removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import statistics
import time
import uuid
from typing import Any

import docker
import httpx
from aiart.cli.api import DEFAULT_URL, gateway_trust
from deploy_latency import remove_bench_models
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

GATEWAY = os.environ.get("AIART_GATEWAY_URL", DEFAULT_URL)
VERIFY = gateway_trust()
BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}
SCALING = ("{minReplicas: 0, maxReplicas: 1, stableWindow: 6s, panicWindow: 4s, "
           "scaleToZeroAfter: 5s, activationTimeout: 60s}")
LABELS = {"aiart.bench": "1"}
STAGES = ("decided", "task created", "container started", "model loaded", "answered")


def artifact(runtime: str) -> bytes:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300, random_state=0).fit(x, y)
    if runtime == "onnx":
        from skl2onnx import to_onnx

        return bytes(to_onnx(model, x[:1].astype("float32"), options={"zipmap": False},
                             target_opset=17).SerializeToString())
    return pickle.dumps(model)


def manifest(name: str, runtime: str) -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1'}}\n"
            f"spec:\n  runtime: {runtime}\n  artifact: {{uri: 'config://{name}-model-1'}}\n"
            f"  auth: {{mode: none}}\n  scaling: {SCALING}\n").encode()


def stamp(text: str) -> float:
    """An engine timestamp (RFC 3339, nanoseconds) as epoch seconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC).timestamp()
    return seconds + float(f"0.{frac or '0'}")


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(what)


class Model:
    def __init__(self, engine: docker.DockerClient, runtime: str) -> None:
        self.engine = engine
        self.name = f"cold{uuid.uuid4().hex[:6]}"
        engine.configs.create(name=f"{self.name}-model-1", data=artifact(runtime),
                              labels=LABELS)
        self.config = engine.configs.create(name=f"{self.name}-1",
                                            data=manifest(self.name, runtime),
                                            labels={**LABELS, "aiart.model": self.name})

    def labels(self) -> dict[str, str]:
        return dict(self.engine.configs.get(self.config.id).attrs["Spec"]["Labels"] or {})

    def tasks(self) -> list[dict[str, Any]]:
        services = self.engine.services.list(filters={"label": f"aiart.model={self.name}"})
        return [t for s in services for t in s.tasks()]

    def asleep(self) -> bool:
        running = [t for t in self.tasks() if t["Status"]["State"] in
                   ("new", "pending", "assigned", "preparing", "starting", "running")]
        return self.labels().get("aiart.scale.replicas") == "0" and not running

    def wake(self, client: httpx.Client) -> dict[str, float]:
        before = {t["ID"] for t in self.tasks()}
        started = time.time()
        r = client.post(f"/v2/models/{self.name}/infer", json=BODY)
        answered = time.time()
        if r.status_code != 200:
            raise RuntimeError(f"the wake got {r.status_code}: {r.text[:300]}")
        (task,) = [t for t in self.tasks() if t["ID"] not in before][:1]
        container = self.engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        loaded = next((stamp(line.split(" ", 1)[0]) for line in container.logs(
            timestamps=True).decode(errors="replace").splitlines()
            if "model loaded in" in line), answered)
        points = (float(self.labels()["aiart.scale.changed"]), stamp(task["CreatedAt"]),
                  stamp(container.attrs["State"]["StartedAt"]), loaded, answered)
        return {stage: at - started for stage, at in zip(STAGES, points, strict=True)}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wakes", type=int, default=20)
    parser.add_argument("--runtime", nargs="+", choices=("sklearn", "onnx"),
                        default=["sklearn", "onnx"])
    args = parser.parse_args()
    engine = docker.from_env()
    rows = []
    try:
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=90) as client:
            for runtime in args.runtime:
                model = Model(engine, runtime)
                wait(lambda m=model: client.post(f"/v2/models/{m.name}/infer",
                                                 json=BODY).status_code == 200,
                     600, f"{model.name} to answer")
                wakes: list[dict[str, float]] = []
                for index in range(args.wakes):
                    wait(model.asleep, 120, f"{model.name} to go to zero")
                    time.sleep(1.5)  # the gateway has read the swarm: no task left
                    wakes.append(model.wake(client))
                    print(f"{runtime} wake {index + 1}: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in wakes[-1].items()), flush=True)
                total = [w["answered"] for w in wakes]
                means = {k: statistics.mean(w[k] for w in wakes) for k in STAGES}
                rows.append((runtime, len(wakes), statistics.median(total),
                             percentile(total, 95), means))
    finally:
        remove_bench_models(engine, "cold")
    print("\n| runtime | wakes | first answer p50 | p95 | mean: decided | task created "
          "| container started | model loaded | answered |\n|---|---|---|---|---|---|---|---|---|")
    for runtime, count, p50, p95, means in rows:
        print(f"| {runtime} | {count} | {p50:.2f} s | {p95:.2f} s | "
              + " | ".join(f"{means[k]:.2f} s" for k in STAGES) + " |")


if __name__ == "__main__":
    main()
