"""Measures the deploy path on the running stack (./hack/up.sh first):

- seconds from `docker config create` to the first successful inference
  through Traefik, for a first version and for a second version of a model;
- model image build time (build alone, and push);
- runtime image size and the model's own layer size;
- the operator's resident memory when idle.

Run: .venv/bin/python bench/deploy_latency.py [--rounds N] [--runtime sklearn|onnx]
Everything it creates is labelled aiart.bench and removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import statistics
import time
import uuid
from pathlib import Path

import aiodocker
import docker
import httpx
from aiart.build.image_builder import ImageBuilder
from aiart.build.recipes import ModelRecipe
from aiart.cli.api import DEFAULT_URL, gateway_trust
from aiart.engine.adapter import DockerCluster
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

# Through the gateway as users call it: HTTPS, checked against the local CA.
GATEWAY = os.environ.get("AIART_GATEWAY_URL", DEFAULT_URL)
VERIFY = gateway_trust()
BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}


RUNTIME = "sklearn"
ARTIFACT = {"sklearn": "model.pkl", "onnx": "model.onnx", "h2o": "model.zip", "python": "model.py"}
MOJO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "iris-h2o-gbm.zip"
CODE = b"def predict(inputs):\n    return next(iter(inputs.values())).sum(axis=-1)\n"


def model_bytes(seed: int) -> bytes:
    if RUNTIME == "h2o":
        return MOJO.read_bytes()
    if RUNTIME == "python":
        return CODE + f"# {seed}\n".encode()
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=200 + seed, random_state=seed).fit(x, y)
    if RUNTIME == "onnx":
        from skl2onnx import to_onnx

        return bytes(to_onnx(model, x[:1].astype("float32"), options={"zipmap": False},
                             target_opset=17).SerializeToString())
    return pickle.dumps(model)


def manifest(name: str, version: str) -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '{version}'}}\n"
            f"spec:\n  runtime: {RUNTIME}\n  artifact: {{uri: 'config://{name}-model-{version}'}}\n"
            "  auth: {mode: none}\n").encode()


def wait_answer(client: httpx.Client, model: str, version: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = client.post(f"/v2/models/{model}/infer", json=BODY)
            if r.status_code == 200 and r.json()["model_version"] == version:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{model} version {version} never answered")


def deploy_round(
    engine: docker.DockerClient, client: httpx.Client, seed: int
) -> tuple[float, float]:
    model = f"bench{uuid.uuid4().hex[:6]}"
    labels = {"aiart.bench": "1"}
    times = []
    for version in ("1", "2"):
        artifact = model_bytes(seed + int(version))
        engine.configs.create(name=f"{model}-model-{version}", data=artifact, labels=labels)
        start = time.monotonic()
        engine.configs.create(name=f"{model}-{version}", data=manifest(model, version),
                              labels={**labels, "aiart.model": model})
        wait_answer(client, model, version)
        times.append(time.monotonic() - start)
    return times[0], times[1]


async def build_times(seed: int, runtime_image: str) -> tuple[float, float]:
    async with aiodocker.Docker() as api:
        builder = ImageBuilder(DockerCluster(api), cache_dir=Path("/tmp"), timeout=600)
        recipe = ModelRecipe(name=f"bench{seed}", version="1", runtime_image=runtime_image,
                             artifact_name=ARTIFACT[RUNTIME], artifact=model_bytes(1000 + seed),
                             settings_json=json.dumps({
                                 "name": f"bench{seed}", "version": "1", "runtime": RUNTIME,
                                 "artifact": ARTIFACT[RUNTIME]}).encode(),
                             registry="localhost:5000")
        start = time.monotonic()
        tag = await builder.ensure_model_image(recipe, push=False)
        built = time.monotonic() - start
        start = time.monotonic()
        await builder.cluster.push_image(tag)
        pushed = time.monotonic() - start
        await api.images.delete(tag, force=True)
        return built, pushed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", choices=tuple(ARTIFACT), default="sklearn")
    args = parser.parse_args()
    global RUNTIME
    RUNTIME = args.runtime
    engine = docker.from_env()
    try:
        firsts, seconds, builds, pushes = [], [], [], []
        # Model images inherit the runtime's labels: pick the runtime by name.
        import sklearn

        prefix = (f"aiart/runtime-sklearn:{sklearn.__version__}-np2-" if RUNTIME == "sklearn"
                  else f"aiart/runtime-{RUNTIME}:")
        runtime = next(t for i in engine.images.list(filters={"label": f"aiart.runtime={RUNTIME}"})
                       for t in i.tags if t.startswith(prefix))
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=10) as client:
            for r in range(args.rounds):
                first, second = deploy_round(engine, client, r * 10)
                firsts.append(first)
                seconds.append(second)
                built, pushed = asyncio.run(build_times(r, runtime))
                builds.append(built)
                pushes.append(pushed)
                print(f"round {r + 1}: v1 {first:.1f} s, v2 {second:.1f} s, "
                      f"build {built:.1f} s, push {pushed:.1f} s", flush=True)
        runtime_size = engine.images.get(runtime).attrs["Size"]
        model_tag = next(t for i in engine.images.list() for t in i.tags
                         if t.startswith("localhost:5000/aiart/bench"))
        model_image = engine.images.get(model_tag)
        layer = model_image.attrs["Size"] - runtime_size
        operator = engine.services.get("aiart_operator").tasks(filters={"desired-state": "running"})
        container = engine.containers.get(operator[0]["Status"]["ContainerStatus"]["ContainerID"])
        pid = container.attrs["State"]["Pid"]
        time.sleep(5)  # let the operator settle back to idle
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        def runs(values: list[float], digits: int = 1) -> str:
            return f"{statistics.median(values):.{digits}f} s | " + ", ".join(
                f"{v:.{digits}f}" for v in values)

        rows = [
            ("config create -> first infer via Traefik, first version", runs(firsts)),
            ("config create -> first infer via Traefik, second version", runs(seconds)),
            ("model image build (thin layer + load check)", runs(builds)),
            ("model image push (runtime layers already there)", runs(pushes, 2)),
            (f"runtime image size ({runtime})", f"{runtime_size / 1e6:.0f} MB |"),
            ("the model's own layer", f"{layer / 1e3:.0f} kB |"),
            ("operator resident memory, idle", f"{rss / 1024:.0f} MiB |"),
        ]
        print("\n| measure | median | runs |\n|---|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
    finally:
        remove_bench_models(engine, "bench")


def remove_bench_models(engine: docker.DockerClient, prefix: str) -> None:
    """Every config a benchmark made (labelled aiart.bench), models first so
    that the operator removes their services, and their catalog records."""
    for config in engine.configs.list(filters={"label": "aiart.bench=1"}):
        if "aiart.model" in config.attrs["Spec"]["Labels"]:
            config.remove()
    time.sleep(3)
    for config in engine.configs.list(filters={"label": "aiart.bench=1"}):
        try:
            config.remove()
        except docker.errors.APIError:
            pass
    # The catalog keeps its records on purpose; a benchmark's are noise.
    for config in engine.configs.list(filters={"label": "aiart.catalog"}):
        if config.attrs["Spec"]["Labels"].get("aiart.catalog.model", "").startswith(prefix):
            config.remove()


if __name__ == "__main__":
    main()
