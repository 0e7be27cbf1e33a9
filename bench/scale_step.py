"""How a scalable model answers a step in load, on the running stack
(./hack/up.sh first), through the gateway as users call it.

One sklearn model with ``scaling: {minReplicas: 1, maxReplicas: 8,
target: 2}`` (concurrency; panic window 6 s as Knative's, stable window 20 s
to keep the run short) gets one closed-loop caller, then sixteen at once,
then one again. Every half second it records the replicas the autoscaler
wants (the config's label) and runs (the swarm's tasks), and the answers of
the last second: how many, their median latency, and any that failed.
It prints when the first replica was added after the step, when the
replicas wanted were all running, the throughput and latency before, at
the start of and late in the step, how long until it was back at one
replica, and the failed requests in all (the goal: none).

Run: .venv/bin/python bench/scale_step.py [--seconds 40]
Everything it creates is labelled aiart.bench and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import threading
import time
import uuid

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
SCALING = ("{minReplicas: 1, maxReplicas: 8, target: 2, stableWindow: 20s, panicWindow: 6s}")


class Callers:
    """Closed-loop callers through the gateway; answers kept as (end, seconds)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.answers: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self.threads: list[tuple[threading.Thread, threading.Event]] = []

    def add(self, count: int) -> None:
        for _ in range(count):
            stop = threading.Event()
            thread = threading.Thread(target=self._call, args=(stop,), daemon=True)
            thread.start()
            self.threads.append((thread, stop))

    def keep(self, count: int) -> None:
        while len(self.threads) > count:
            thread, stop = self.threads.pop()
            stop.set()
            thread.join(30)

    def _call(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=60) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    r = client.post(f"/v2/models/{self.model}/infer", json=BODY)
                    ok = r.status_code == 200
                    error = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, error = False, repr(exc)
                ended = time.monotonic()
                if ok:
                    self.answers.append((ended, ended - started))
                else:
                    self.failures.append(error)

    def window(self, end: float, seconds: float = 1.0) -> tuple[float, float]:
        """Answers per second and their median latency (ms) over the window."""
        recent = [s for t, s in list(self.answers) if end - seconds < t <= end]
        return len(recent) / seconds, 1000 * statistics.median(recent) if recent else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40, help="length of the step")
    args = parser.parse_args()
    engine = docker.from_env()
    name = f"step{uuid.uuid4().hex[:6]}"
    x, y = load_iris(return_X_y=True)
    model = pickle.dumps(LogisticRegression(max_iter=300, random_state=0).fit(x, y))
    labels = {"aiart.bench": "1"}
    try:
        engine.configs.create(name=f"{name}-model-1", data=model, labels=labels)
        config = engine.configs.create(name=f"{name}-1", labels={**labels, "aiart.model": name},
                                       data=(
            f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1'}}\n"
            f"spec:\n  runtime: sklearn\n  artifact: {{uri: 'config://{name}-model-1'}}\n"
            f"  auth: {{mode: none}}\n  scaling: {SCALING}\n").encode())
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=10) as client:
            deadline = time.monotonic() + 600
            while client.post(f"/v2/models/{name}/infer", json=BODY).status_code != 200:
                assert time.monotonic() < deadline, f"{name} never answered"
                time.sleep(0.2)

        def replicas() -> tuple[int, int]:
            wanted = engine.configs.get(config.id).attrs["Spec"]["Labels"].get(
                "aiart.scale.replicas", "1")
            services = engine.services.list(filters={"label": f"aiart.model={name}"})
            running = sum(1 for s in services for t in s.tasks()
                          if t["Status"]["State"] == "running" and t["DesiredState"] == "running")
            return int(wanted), running

        callers = Callers(name)
        samples: list[tuple[float, int, int]] = []
        callers.add(1)
        start = time.monotonic()
        step = start + 10
        end_step = step + args.seconds
        stepped = ended = False
        while True:
            now = time.monotonic()
            if not stepped and now >= step:
                callers.add(15)
                stepped = True
            if stepped and not ended and now >= end_step:
                callers.keep(1)
                ended = True
            wanted, running = replicas()
            samples.append((now, wanted, running))
            rate, p50 = callers.window(now)
            print(f"{now - step:+6.1f} s  callers {len(callers.threads):2d}  wanted {wanted}  "
                  f"running {running}  {rate:6.0f} req/s  p50 {p50:6.1f} ms", flush=True)
            if ended and wanted == 1 and running == 1:
                break
            if now > end_step + 180:
                break
            time.sleep(0.5)
        back = time.monotonic()
        callers.keep(0)
        first_up = next((t for t, w, _ in samples if t >= step and w > 1), None)
        peak = max(w for _, w, _ in samples)
        all_running = next((t for t, w, r in samples if t >= step and w == peak and r >= peak),
                           None)
        before = callers.window(step, 8)
        early = callers.window(step + 5, 5)
        late = callers.window(end_step, 10)

        def after(at: float | None) -> str:
            return f"{at - step:.1f} s" if at is not None else "never"

        print("\n| measure | value |\n|---|---|")
        for what, value in (
            ("first replica added after the step (1 -> 16 callers)", after(first_up)),
            (f"all {peak} replicas wanted running", after(all_running)),
            ("1 caller before the step", f"{before[0]:.0f} req/s, p50 {before[1]:.1f} ms"),
            ("16 callers, first 5 s", f"{early[0]:.0f} req/s, p50 {early[1]:.1f} ms"),
            ("16 callers, last 10 s", f"{late[0]:.0f} req/s, p50 {late[1]:.1f} ms"),
            ("back at 1 replica after the step", f"{back - end_step:.1f} s"),
            ("requests answered / failed",
             f"{len(callers.answers)} / {len(callers.failures)}"),
        ):
            print(f"| {what} | {value} |")
        if callers.failures:
            print("failures:", callers.failures[:5])
    finally:
        remove_bench_models(engine, "step")


if __name__ == "__main__":
    main()
