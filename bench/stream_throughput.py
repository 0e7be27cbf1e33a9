"""Messages per second through a model stream (docs/streams.md), the path a
plant's machines use: MQTT to the broker, the stream's bridge, the gateway,
the model, the answer back to the broker and to a subscriber. One public
iris model with three streams that differ only in their concurrency (1, 8
and 32 messages scored at once), each sent the same burst of messages at
once, one after the other; the time is from the first message sent to the
last answer received. Beside it, the same model called through the gateway
one request after another (httpx, one connection), the rate a bridge that
scores one message at a time could at best reach.

Run on the running stack (./hack/up.sh first):
    .venv/bin/python bench/stream_throughput.py [--messages 3000]
Everything it creates is labelled aiart.bench and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import threading
import time
import uuid

import docker
import httpx
import paho.mqtt.client as mqtt
from aiart.cli.api import DEFAULT_URL, gateway_trust
from bench_stack import broker_credentials, remove_run
from paho.mqtt.enums import CallbackAPIVersion
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

GATEWAY = os.environ.get("AIART_GATEWAY_URL", DEFAULT_URL)
BROKER = (os.environ.get("AIART_BROKER_HOST", "127.0.0.1"),
          int(os.environ.get("AIART_BROKER_PORT", "1883")))
ROW = [5.1, 3.5, 1.4, 0.2]
CONCURRENCY = (1, 8, 32)


def connect() -> mqtt.Client:
    user, password = broker_credentials()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"bench-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.connect(*BROKER)
    client.loop_start()
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    engine = docker.from_env()
    run = uuid.uuid4().hex[:6]
    name = f"b{run}-stream"
    x, y = load_iris(return_X_y=True)
    streams = ", ".join(f"{{name: c{c}, topics: ['{name}/c{c}/in'], format: row, "
                        f"concurrency: {c}}}" for c in CONCURRENCY)
    received: dict[str, int] = {f"c{c}": 0 for c in CONCURRENCY}
    last: dict[str, float] = {}
    lock = threading.Lock()
    consumer = connect()

    def on_message(_c: object, _u: object, message: mqtt.MQTTMessage) -> None:
        stream = message.topic.split("/")[-2]
        with lock:
            received[stream] += 1
            last[stream] = time.monotonic()

    consumer.on_message = on_message
    consumer.subscribe(f"aiart/results/{name}/#", qos=1)
    publisher = connect()
    try:
        engine.configs.create(name=f"{name}-model", labels={"aiart.bench": run},
                              data=pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
        engine.configs.create(name=f"{name}-1", labels={"aiart.bench": run, "aiart.model": name},
                              data=(f"apiVersion: aiart/v1\nkind: Model\nmetadata: "
                                    f"{{name: {name}, version: '1'}}\nspec:\n  runtime: sklearn\n"
                                    f"  artifact: {{uri: 'config://{name}-model'}}\n"
                                    f"  auth: {{mode: none}}\n  streams: [{streams}]\n").encode())
        body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
        with httpx.Client(base_url=GATEWAY, verify=gateway_trust(), timeout=5) as http:
            deadline = time.monotonic() + 300
            while http.post(f"/v2/models/{name}/infer", json=body).status_code != 200:
                assert time.monotonic() < deadline, "the model never answered"
                time.sleep(1)
            # Every bridge reads: a message on each stream is answered.
            for c in CONCURRENCY:
                while received[f"c{c}"] == 0:
                    assert time.monotonic() < deadline, f"stream c{c} never answered"
                    publisher.publish(f"{name}/c{c}/in", json.dumps(ROW), qos=1)
                    time.sleep(1)
            time.sleep(2)
            started = time.perf_counter()
            for _ in range(args.messages):
                assert http.post(f"/v2/models/{name}/infer", json=body).status_code == 200
            sequential = args.messages / (time.perf_counter() - started)
        rates = {}
        for c in CONCURRENCY:
            stream = f"c{c}"
            with lock:
                received[stream] = 0
            began = time.monotonic()
            for _ in range(args.messages):
                publisher.publish(f"{name}/{stream}/in", json.dumps(ROW), qos=1)
            deadline = time.monotonic() + 600
            while received[stream] < args.messages:
                assert time.monotonic() < deadline, f"{stream}: {received[stream]} answers"
                time.sleep(0.05)
            rates[c] = args.messages / (last[stream] - began)
            print(f"concurrency {c:2}: {args.messages} messages in {last[stream] - began:.1f} s,"
                  f" {rates[c]:.0f} messages/s", flush=True)
        print(f"\none request after another through the gateway: {sequential:.0f} requests/s")
        print("\n| path | messages/s | over one request at a time |\n|---|---|---|")
        print(f"| gateway, one request after another (httpx) | {sequential:.0f} | 1.00 |")
        for c, rate in rates.items():
            print(f"| MQTT stream, concurrency {c} | {rate:.0f} | {rate / sequential:.2f} |")
    finally:
        for client in (publisher, consumer):
            client.loop_stop()
            client.disconnect()
        remove_run(engine, run, [name])


if __name__ == "__main__":
    main()
