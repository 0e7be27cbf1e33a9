"""A model fed from MQTT topics through the real stack (docs/streams.md):
the operator runs the stream's bridge, which reads the real broker and has
each message scored through the gateway with a key of its own. 1,000
messages on two topics, the bridge's container killed mid-stream and a new
version taking over while messages come: every message answered, in
order per topic, exactly once after dropping the answers marked as
duplicates, and by both versions."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import docker
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import Models, stack_auth, wait_for
from tests.e2e.test_monitoring import value
from tests.security.test_broker import HOST, PORT
from tests.streams import once_in_order

pytestmark = pytest.mark.e2e
COLUMNS = ["sl", "sw", "pl", "pw"]
WARM_UP = b"warm-up"


class Consumer:
    def __init__(self, filters: list[str]) -> None:
        self.got: list[tuple[str, bytes, dict[str, str], bytes | None]] = []
        self.lock = threading.Lock()
        self.client = client()
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert subscribed.wait(10)

    def _message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        with self.lock:
            self.got.append((message.topic, bytes(message.payload),
                             dict(getattr(properties, "UserProperty", []) or []),
                             getattr(properties, "CorrelationData", None)))

    def answers(self) -> list[tuple[str, bytes, dict[str, str], bytes | None]]:
        with self.lock:
            return [g for g in self.got if g[3] != WARM_UP]


def client() -> mqtt.Client:
    user, password = stack_auth("broker")
    made = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                       client_id=f"test-{uuid.uuid4().hex[:8]}")
    made.username_pw_set(user, password)
    made.connect(HOST, PORT)
    made.loop_start()
    return made


def send(publisher: mqtt.Client, topic: str, row: list[float], correlation: bytes) -> None:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.CorrelationData = correlation
    publisher.publish(topic, json.dumps(dict(zip(COLUMNS, row, strict=True))).encode(), qos=1,
                      properties=properties)


def bridge_container(engine: docker.DockerClient, model: str, stream: str = "line") -> Any:
    found = engine.containers.list(filters={
        "label": f"com.docker.swarm.service.name=aiart-stream-{model}-{stream}"})
    return found[0] if found else None


def test_a_stream_is_answered_once_in_order_across_a_killed_bridge_and_a_new_version(
        models: Models) -> None:
    engine = models.engine
    model = models.name("stream")
    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=300).fit(x, y)
    artifact = __import__("pickle").dumps(estimator)
    topics = f"{model}/+/features"
    streams = (f"[{{name: line, topics: ['{topics}'], format: row, "
               f"columns: [{', '.join(COLUMNS)}]}}]")
    # Closed: the bridge calls with the key the operator made for it.
    models.wait_status(models.declare(model, "1", artifact, auth="{mode: apikey}",
                                      streams=streams), "Ready")
    consumer = Consumer([f"aiart/results/{model}/#", f"aiart/dead-letter/{model}/#"])
    publisher = client()
    try:
        # The bridge runs and reads: a first message is answered.
        wait_for(lambda: bridge_container(engine, model) is not None, 60, "the bridge")
        deadline = time.monotonic() + 60
        while not any(g[3] == WARM_UP for g in consumer.got):
            assert time.monotonic() < deadline, "the stream never answered"
            send(publisher, f"{model}/a/features", [5.1, 3.5, 1.4, 0.2], WARM_UP)
            time.sleep(1)
        rows = np.random.default_rng(3).uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5],
                                                size=(1000, 4)).round(2)

        def publish(first: int, last: int, until: threading.Event | None = None) -> None:
            """Messages first..last-1; with ``until``, slowly until it is set (one
            a second after the first 50: enough for several minutes of a new
            version's build), then the rest at once."""
            for n in range(first, last):
                send(publisher, f"{model}/{'ab'[n % 2]}/features", rows[n].tolist(),
                     str(n).encode())
                if until is not None and not until.is_set():
                    until.wait(0.05 if n < first + 50 else 1.0)

        def answered() -> int:
            return len({c for _, _, _, c in consumer.answers()})

        publish(0, 500)
        wait_for(lambda: answered() >= 150, 60, "150 answers")
        bridge_container(engine, model).kill()  # mid-stream
        wait_for(lambda: answered() >= 500, 90, "500 answers after the bridge's restart")
        # A new version takes over while messages keep coming (slowly, until
        # it serves; then the rest at once).
        switched = threading.Event()
        slow = threading.Thread(target=publish, args=(500, 1000, switched))
        models.declare(model, "2", artifact, auth="{mode: apikey}", streams=streams)
        slow.start()

        def version_2_answers() -> bool:
            return any(json.loads(p).get("model_version") == "2"
                       for t, p, _, _ in consumer.answers() if "/results/" in t)

        try:
            models.wait_status(f"{model}-2", "Ready", 300)
            wait_for(version_2_answers, 60, "an answer of version 2")
        finally:
            switched.set()
        slow.join(120)
        wait_for(lambda: answered() >= 1000, 120, "1,000 answers")
    finally:
        for made in (publisher, consumer.client):
            made.loop_stop()
            made.disconnect()
    seen = once_in_order(consumer.answers(), model, 1000)
    assert [seen[str(n).encode()]["outputs"][0]["data"][0] for n in range(1000)] == (
        estimator.predict(rows).tolist())
    versions = [seen[str(n).encode()]["model_version"] for n in range(1000)]
    assert versions[0] == "1" and versions[-1] == "2", "no answer of one of the versions"
    # Prometheus reads the bridge's numbers, labelled with its model and stream.
    answers = (f'sum(aiart_stream_messages_total{{job="aiart-streams",model="{model}",'
               'stream="line",outcome="answered"})')
    wait_for(lambda: (value(answers) or 0) > 0, 60, "Prometheus to scrape the bridge")


def test_a_binding_config_feeds_a_model_from_topics_until_it_goes(models: Models) -> None:
    engine = models.engine
    model = models.name("bound")
    x, y = load_iris(return_X_y=True)
    artifact = __import__("pickle").dumps(LogisticRegression(max_iter=300).fit(x, y))
    # As a plant's stack would: a config of its own, beside the model's.
    binding = models.config(f"{model}-press", (
        f"name: press\ntopics: ['{model}/press/+']\nformat: row\n"
        f"columns: [{', '.join(COLUMNS)}]\n").encode(), **{"aiart.stream-binding": model})
    models.wait_status(models.declare(model, "1", artifact, auth="{mode: apikey}"), "Ready")
    consumer = Consumer([f"aiart/results/{model}/#"])
    publisher = client()
    try:
        deadline = time.monotonic() + 90
        while not consumer.got:
            assert time.monotonic() < deadline, "the binding's stream never answered"
            send(publisher, f"{model}/press/1", [5.1, 3.5, 1.4, 0.2], b"1")
            time.sleep(1)
    finally:
        for made in (publisher, consumer.client):
            made.loop_stop()
            made.disconnect()
    topic, payload, _, _ = consumer.got[0]
    assert topic == f"aiart/results/{model}/{model}/press/1"
    assert json.loads(payload)["model_name"] == model
    assert models.labels(binding.name)["aiart.status.message"] == (
        f"bridged by aiart-stream-{model}-press")
    binding.remove()
    wait_for(lambda: bridge_container(engine, model, "press") is None, 60,
             "the binding's bridge to go with it")
