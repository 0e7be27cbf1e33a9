"""What payload logging (spec.logging) costs an answer: the same model
deployed twice, without a log and logging a sample of its requests (by
default every one: sample 1, the most it can cost), called through the
gateway as users call it, side by side in one run with the same load
generator (wrk) and concurrency, the two alternated round by round so that
a change in the machine's load falls on both; and the CPU time the model
server, the gateway and the store's side used per request.

Run on the running stack (./hack/up.sh first):
    .venv/bin/python bench/payload_log_cost.py [--seconds 8] [--rounds 3] [--sample 1]
Everything it creates is labelled aiart.bench and removed at the end (the
logged model's bucket with it). ``--same-store`` gives the plain model a
bucket too, so that the log alone differs.

    .venv/bin/python bench/payload_log_cost.py --together --same-store
calls both models at the same time, each with its own wrk (one connection
each, then eight each): the machine's load falls on both at once, and on a
saturated machine the one that needs more CPU per answer answers slower.
The steadiest comparison of the two; gives each model server's CPU per
request too.

    .venv/bin/python bench/payload_log_cost.py --in-process [--rounds 5]
measures the answer path alone, with no stack and no network: the model
server's data plane answering one request after another in one process,
without a log and with one whose writes go to memory (its writer thread
running beside the answers, as in a server), alternated round by round;
the time per answer is far steadier than through the gateway.

    .venv/bin/python bench/payload_log_cost.py --writer
the writer thread's own CPU per record (its gzipped JSON lines, not the store's
write).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import time
import uuid
from typing import Any

import docker
import httpx
from aiart.cli.api import DEFAULT_URL, gateway_trust
from bench_stack import remove_run
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from wrk_load import wrk

GATEWAY = os.environ.get("AIART_GATEWAY_URL", DEFAULT_URL)
VERIFY = gateway_trust()
BODY = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}
METRICS = ("import urllib.request; print(urllib.request.urlopen("
           "'http://127.0.0.1:8080/metrics', timeout=5).read().decode())")


def payload_counts(engine: docker.DockerClient, model: str) -> dict[str, float]:
    """aiart_payload_records_total by outcome, from the model's container."""
    from prometheus_client.parser import text_string_to_metric_families
    [container] = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name=aiart-{model}-1"})
    text = container.exec_run(["/opt/aiart/bin/python", "-c", METRICS]).output.decode()
    return {s.labels["outcome"]: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "aiart_payload_records_total"}


STACK = os.environ.get("AIART_STACK", "aiart")
# Where a logged request's CPU goes besides the model's server: the
# gateway, and the store gateway and object store its batches go through.
PARTS = {"gateway": f"{STACK}_traefik", "store gateway": f"{STACK}_store-gateway",
         "object store": f"{STACK}_store"}


def cpu_seconds(engine: docker.DockerClient, services: dict[str, str]) -> dict[str, float]:
    """CPU time used so far by each part's running containers, by part."""
    used: dict[str, float] = {}
    for part, service in services.items():
        for container in engine.containers.list(
                filters={"label": f"com.docker.swarm.service.name={service}"}):
            stats = engine.api._result(engine.api._get(  # one-shot: no second's sampling
                engine.api._url("/containers/{0}/stats", container.id),
                params={"stream": "false", "one-shot": "true"}), True)
            used[part] = used.get(part, 0.0) + stats["cpu_stats"]["cpu_usage"][
                "total_usage"] / 1e9
    return used


def in_process(rounds: int, requests: int = 20_000) -> None:
    import asyncio
    import pathlib
    import tempfile

    from aiart_runtime.__main__ import load
    from aiart_runtime.payloads import PayloadLog
    from aiart_runtime.server import create_app

    x, y = load_iris(return_X_y=True)
    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (folder / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None}))
    logs = {sample: PayloadLog(lambda key, data: None, sample=sample, model="iris",
                               version="1") for sample in (1.0, 0.1)}
    planes = {"plain": create_app(load(folder)).plane,
              "logged": create_app(load(folder), payloads=logs[1.0]).plane,
              "sampled": create_app(load(folder), payloads=logs[0.1]).plane}
    raw = json.dumps(BODY).encode()

    async def answer(plane: Any, count: int) -> list[float]:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            plane.arrive()
            status, _, _ = await plane.infer(raw, None)
            times.append(time.perf_counter() - started)
            assert status == 200
        return times

    # The three take turns every 500 answers, so that whatever else the
    # machine does falls on each alike.
    times: dict[str, list[float]] = {kind: [] for kind in planes}
    medians: dict[str, list[float]] = {kind: [] for kind in planes}
    for round_ in range(rounds):
        this_round: dict[str, list[float]] = {kind: [] for kind in planes}
        for turn in range(requests // 500):
            order = list(planes) if turn % 2 == 0 else list(planes)[::-1]
            for kind in order:
                this_round[kind] += asyncio.run(answer(planes[kind], 500))
        for kind, taken in this_round.items():
            times[kind] += taken
            medians[kind].append(statistics.median(taken) * 1e6)
        print(f"round {round_ + 1}: " + ", ".join(
            f"{kind} p50 {medians[kind][-1]:.1f} us" for kind in planes), flush=True)
    for log in logs.values():
        log.close()
    plain = statistics.median(times["plain"])
    print(f"\n| answer path | p50 us ({rounds} x {requests} answers) | over no log |\n"
          "|---|---|---|")
    for kind, what in (("plain", "no log"), ("logged", "every request logged (sample 1)"),
                       ("sampled", "one in ten logged (sample 0.1)")):
        p50 = statistics.median(times[kind]) * 1e6
        print(f"| {what} | {p50:.1f} | {p50 / plain / 1e6:.3f} |")
    print("\n" + "; ".join(f"sample {s}: {log.written} records written in {log.objects} "
                           f"objects, {log.dropped} dropped" for s, log in logs.items()))


def writer_cost(batches: int = 20) -> None:
    """The writer thread's own work per record: 1,000 exchanges like the
    benchmark's made into one batch's gzipped JSON lines, ``batches`` times (the
    store's write left out)."""
    import orjson
    from aiart_runtime.payloads import Exchange, PayloadLog

    answer = orjson.dumps({"model_name": "iris", "model_version": "1", "id": "", "outputs": [
        {"name": "predict", "shape": [1], "datatype": "INT64", "data": [0]},
        {"name": "predict_proba", "shape": [1, 3], "datatype": "FP64",
         "data": [0.97, 0.02, 0.01]}]})
    batch = [Exchange(time.time(), "http", "infer", 200, 0.0008, json.dumps(BODY).encode(),
                      answer) for _ in range(1000)]
    log = PayloadLog(lambda key, data: None, sample=1.0, model="iris", version="1")
    started = time.process_time()
    for _ in range(batches):
        log._write_batch(batch)
    per_record = (time.process_time() - started) / (batches * len(batch)) * 1e6
    log.close()
    print(f"the writer: {per_record:.1f} us of CPU per record "
          f"({batches} batches of {len(batch)})")


def together(engine: docker.DockerClient, names: dict[str, str], rounds: int, seconds: int,
             sample: float) -> None:
    """Both models called at the same time, each by its own wrk with the same
    connections: whatever the machine's load does, it does to both at once,
    so the ratio of their figures within a round is the log's cost alone
    (on a saturated machine they share its cores; the one that needs more
    CPU per answer answers slower)."""
    from concurrent.futures import ThreadPoolExecutor
    servers = {kind: {"model server": f"aiart-{name}-1"} for kind, name in names.items()}
    for connections in (1, 8):
        ratios: list[tuple[float, float]] = []
        cpu = {kind: 0.0 for kind in names}
        served = {kind: 0.0 for kind in names}
        for name in names.values():  # warm-up
            wrk(f"{GATEWAY}/v2/models/{name}/infer", json.dumps(BODY), connections, 2)
        for _ in range(rounds):
            before = {kind: cpu_seconds(engine, servers[kind]) for kind in names}
            with ThreadPoolExecutor(2) as pool:
                runs = {kind: pool.submit(wrk, f"{GATEWAY}/v2/models/{name}/infer",
                                          json.dumps(BODY), connections, seconds)
                        for kind, name in names.items()}
                got = {kind: run.result() for kind, run in runs.items()}
            for kind in names:
                after = cpu_seconds(engine, servers[kind])
                cpu[kind] += after["model server"] - before[kind]["model server"]
                served[kind] += got[kind][0] * seconds
            ratios.append((got["logged"][1] / got["plain"][1], got["logged"][0] / got["plain"][0]))
            print(f"c={connections} each: plain {got['plain'][0]:6.0f} req/s p50 "
                  f"{got['plain'][1]:.3f} ms | logged {got['logged'][0]:6.0f} req/s p50 "
                  f"{got['logged'][1]:.3f} ms", flush=True)
        p50s = sorted(r[0] for r in ratios)
        rates = sorted(r[1] for r in ratios)
        per = {kind: cpu[kind] / served[kind] * 1e6 for kind in names}
        print(f"| {connections} each, together | {statistics.median(p50s):.3f} "
              f"[{p50s[0]:.3f}-{p50s[-1]:.3f}] | {statistics.median(rates):.3f} | "
              f"{per['plain']:.0f} | {per['logged']:.0f} | {per['logged'] - per['plain']:+.0f} |",
              flush=True)
    time.sleep(7)  # the last batch's flush
    counts = payload_counts(engine, names["logged"])
    print(f"sample {sample}: records written {counts.get('written', 0):.0f}, dropped "
          f"{counts.get('dropped', 0):.0f}, failed {counts.get('failed', 0):.0f} "
          f"({rounds} rounds of {seconds} s)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-process", action="store_true")
    parser.add_argument("--same-store", action="store_true",
                        help="give the plain model a bucket too, as the logged one has")
    parser.add_argument("--together", action="store_true",
                        help="both models called at once, each by its own wrk")
    parser.add_argument("--writer", action="store_true",
                        help="only the writer thread's CPU per record")
    parser.add_argument("--sample", type=float, default=1.0,
                        help="the logged model's spec.logging.sample (1: every request)")
    args = parser.parse_args()
    if args.in_process:
        in_process(args.rounds)
        return
    if args.writer:
        writer_cost()
        return
    engine = docker.from_env()
    run = uuid.uuid4().hex[:6]
    x, y = load_iris(return_X_y=True)
    model = pickle.dumps(LogisticRegression(max_iter=500).fit(x, y))
    names = {"plain": f"b{run}-plain", "logged": f"b{run}-logged"}
    # Both given a bucket (a logged model needs one): the log alone differs.
    store = "  store: {deleteWithModel: true}\n"
    extra = {"plain": store if args.same_store else "",
             "logged": f"  logging: {{sample: {args.sample}}}\n{store}"}
    try:
        for kind, name in names.items():
            engine.configs.create(name=f"{name}-model", data=model,
                                  labels={"aiart.bench": run})
            engine.configs.create(name=f"{name}-1", labels={"aiart.bench": run,
                                                            "aiart.model": name}, data=(
                f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1'}}\n"
                f"spec:\n  runtime: sklearn\n  artifact: {{uri: 'config://{name}-model'}}\n"
                f"  auth: {{mode: none}}\n{extra[kind]}").encode())
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=GATEWAY, verify=VERIFY, timeout=5) as client:
            for name in names.values():
                while client.post(f"/v2/models/{name}/infer", json=BODY).status_code != 200:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{name} never answered")
                    time.sleep(1)
        if args.together:
            together(engine, names, args.rounds, args.seconds, args.sample)
            return
        results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
        # CPU microseconds per request, by kind and part, summed over rounds.
        cpu: dict[tuple[str, str], float] = {}
        served: dict[str, float] = {}
        for connections in (1, 16):
            for name in names.values():  # warm-up, both
                wrk(f"{GATEWAY}/v2/models/{name}/infer", json.dumps(BODY), connections, 2)
            for round_ in range(args.rounds):
                order = list(names.items()) if round_ % 2 == 0 else list(names.items())[::-1]
                for kind, name in order:
                    parts = {"model server": f"aiart-{name}-1", **PARTS}
                    before = cpu_seconds(engine, parts)
                    rps, p50, p99 = wrk(f"{GATEWAY}/v2/models/{name}/infer", json.dumps(BODY),
                                        connections, args.seconds)
                    after = cpu_seconds(engine, parts)
                    for part in parts:
                        cpu[kind, part] = cpu.get((kind, part), 0.0) + (
                            after.get(part, 0.0) - before.get(part, 0.0))
                    served[kind] = served.get(kind, 0.0) + rps * args.seconds
                    results.setdefault((kind, connections), []).append((rps, p50, p99))
                    print(f"{kind:7} c={connections:<3} {rps:7.0f} req/s  p50 {p50:.3f} ms  "
                          f"p99 {p99:.3f} ms", flush=True)
        time.sleep(7)  # the last batch's flush
        counts = payload_counts(engine, names["logged"])
        print("\n| model | connections | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
        medians: dict[tuple[str, int], tuple[float, float, float]] = {}
        for (kind, c), runs in results.items():
            medians[kind, c] = tuple(statistics.median(r[i] for r in runs)  # type: ignore[assignment]
                                     for i in range(3))
            rps, p50, p99 = medians[kind, c]
            print(f"| {kind} | {c} | {rps:.0f} | {p50:.3f} | {p99:.3f} |")
        # Each round measured both, one right after the other: the ratio
        # within a round cancels what the machine's load does over minutes
        # (rounds of the same model differ by 30 % here), and its median
        # over the rounds is the figure; the range shows the noise.
        print("\n| connections | logged/plain p50 (medians) | within a round: median "
              "[range] | logged/plain throughput |\n|---|---|---|---|")
        for c in (1, 16):
            plain, logged = medians["plain", c], medians["logged", c]
            paired = sorted(b[1] / a[1] for a, b in zip(results["plain", c],
                                                          results["logged", c], strict=True))
            print(f"| {c} | {logged[1] / plain[1]:.3f} | {statistics.median(paired):.3f} "
                  f"[{paired[0]:.3f}-{paired[-1]:.3f}] | {logged[0] / plain[0]:.3f} |")
        print(f"\n| CPU per request (us) | no log | sample {args.sample} | more |\n"
              "|---|---|---|---|")
        for part in ("model server", *PARTS):
            alone, beside = (cpu[kind, part] / served[kind] * 1e6 for kind in ("plain", "logged"))
            print(f"| {part} | {alone:.0f} | {beside:.0f} | {beside - alone:+.0f} |")
        print(f"\nrecords written {counts.get('written', 0):.0f}, "
              f"dropped {counts.get('dropped', 0):.0f}, failed {counts.get('failed', 0):.0f} "
              f"(medians of {args.rounds} rounds of {args.seconds} s each)")
    finally:
        remove_run(engine, run, names.values())


if __name__ == "__main__":
    main()
