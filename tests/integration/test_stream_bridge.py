"""A stream's bridge against a real MQTT broker (Mosquitto, from Debian's
package: hack/images.sh broker_files) and a real model server (aiart's
runtime, standing in for the gateway): the bridge runs as its own process,
``python -m aiart.streams``, as in its service; it is killed mid-stream and
started again, and the model goes away for a while. Every message is
answered, in order per topic, exactly once once marked duplicates are
dropped; messages the model cannot take go to the dead-letter topic and
hold nothing up."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from aiart.core.spec import Stream
from aiart_runtime.__main__ import load
from aiart_runtime.server import create_app
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.integration.test_key_plugin import free_port, serve
from tests.runtime.test_runtime_server import metric_value
from tests.streams import once_in_order

ROOT = os.environ.get("AIART_BROKER_ROOT", "")
PASSWORD = "bridge-test-password"
COLUMNS = ["sl", "sw", "pl", "pw"]
WARM_UP = b"warm-up"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if not ROOT or not os.access(f"{ROOT}/usr/sbin/mosquitto", os.X_OK):
        pytest.fail("AIART_BROKER_ROOT: Mosquitto's files (hack/test.sh sets it, from "
                    "hack/images.sh broker_files)")
    folder = tmp_path_factory.mktemp("broker")
    env = {**os.environ, "LD_LIBRARY_PATH": f"{ROOT}/usr/lib/x86_64-linux-gnu"}
    subprocess.run([f"{ROOT}/usr/bin/mosquitto_passwd", "-c", "-b", str(folder / "passwd"),
                    "aiart", PASSWORD], check=True, env=env, capture_output=True)
    port = free_port()
    (folder / "data").mkdir()
    # The stack's configuration (hack/images/broker), on a port of the test's.
    config = (Path(__file__).parents[2] / "hack/images/broker/mosquitto.conf").read_text()
    config = (config.replace("/mosquitto/run/passwd", str(folder / "passwd"))
              .replace("/mosquitto/data/", f"{folder / 'data'}/")
              .replace("listener 1883", f"listener {port} 127.0.0.1"))
    (folder / "mosquitto.conf").write_text(config + "user root\n")
    process = subprocess.Popen([f"{ROOT}/usr/sbin/mosquitto", "-c",
                                str(folder / "mosquitto.conf")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set("aiart", PASSWORD)
        try:
            client.connect("127.0.0.1", port)
            client.disconnect()
            break
        except OSError:
            assert time.monotonic() < deadline, "Mosquitto did not start"
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(10)


class Model:
    """aiart's model server on a port, able to be away (503) for a while."""

    def __init__(self, folder: Path) -> None:
        x, y = load_iris(return_X_y=True)
        self.estimator = LogisticRegression(max_iter=500).fit(x, y)
        (folder / "model.pkl").write_bytes(pickle.dumps(self.estimator))
        (folder / "model.json").write_text(json.dumps({
            "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
            "inputs": None, "outputs": None}))
        self.app = create_app(load(folder))
        self.away_until = 0.0
        self.calls = 0
        self.port = free_port()

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.calls += 1
                if time.monotonic() < self.away_until:
                    await send({"type": "http.response.start", "status": 503, "headers": []})
                    await send({"type": "http.response.body", "body": b"restarting"})
                    return
            await self.app(scope, receive, send)

        self.server, _ = serve(asgi, self.port)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Model]:
    served = Model(tmp_path_factory.mktemp("model"))
    yield served
    served.server.should_exit = True


class Consumer:
    """Reads the results and dead letters, as a plant's application would."""

    def __init__(self, port: int, filters: list[str]) -> None:
        self.got: list[tuple[str, bytes, dict[str, str], bytes | None]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set("aiart", PASSWORD)
        self.client.on_message = self._message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe([(f, 1) for f in filters])
        assert subscribed.wait(10)

    def _message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        user = dict(getattr(properties, "UserProperty", []) or [])
        with self.lock:
            self.got.append((message.topic, bytes(message.payload), user,
                             getattr(properties, "CorrelationData", None)))

    def snapshot(self) -> list[tuple[str, bytes, dict[str, str], bytes | None]]:
        """What came, but the answers to the warm-up messages."""
        with self.lock:
            return [g for g in self.got if g[3] != WARM_UP]

    def clear(self) -> None:
        with self.lock:
            self.got.clear()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("aiart", PASSWORD)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def send(client: mqtt.Client, topic: str, payload: bytes, correlation: bytes | None = None,
         response_topic: str | None = None) -> mqtt.MQTTMessageInfo:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if correlation is not None:
        properties.CorrelationData = correlation
    if response_topic is not None:
        properties.ResponseTopic = response_topic
    return client.publish(topic, payload, qos=1, properties=properties)


class BridgeProcess:
    def __init__(self, port: int, model_port: int, stream: Stream, client_id: str) -> None:
        self.env = {**os.environ, "AIART_STREAM_MODEL": "iris",
                    "AIART_STREAM": stream.model_dump_json(),
                    "AIART_BROKER_ADDRESS": f"127.0.0.1:{port}",
                    "AIART_BROKER_PASSWORD": PASSWORD,
                    "AIART_STREAM_GATEWAY_URL": f"http://127.0.0.1:{model_port}",
                    "AIART_STREAM_API_KEY": "aiart_key_for_the_gateway",
                    "AIART_STREAM_METRICS_PORT": str(free_port()),
                    "AIART_STREAM_CLIENT_ID": client_id}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "aiart.streams"], env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def metrics(self) -> str:
        import urllib.request
        url = f"http://127.0.0.1:{self.env['AIART_STREAM_METRICS_PORT']}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()


def close(bridge: BridgeProcess, consumer: Consumer, client: mqtt.Client) -> None:
    bridge.stop()
    consumer.close()
    client.loop_stop()
    client.disconnect()


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def started(bridge: BridgeProcess, client: mqtt.Client, consumer: Consumer, topic: str) -> None:
    """The bridge is up and subscribed: a first message is answered."""
    bridge.start()
    deadline = time.monotonic() + 20
    while not any(g[3] == WARM_UP for g in consumer.got):
        assert time.monotonic() < deadline, "the bridge never answered"
        send(client, topic, json.dumps([5.1, 3.5, 1.4, 0.2]).encode(), WARM_UP)
        time.sleep(0.5)


def test_every_message_is_answered_once_in_order_across_a_kill_and_a_model_away(
        broker: int, model: Model) -> None:
    stream = Stream(name="line", topics=["plant/+/features"], format="row",  # type: ignore[arg-type]
                    columns=COLUMNS, concurrency=8)
    consumer = Consumer(broker, ["aiart/results/iris/#", "aiart/dead-letter/iris/#"])
    client = publisher(broker)
    bridge = BridgeProcess(broker, model.port, stream, "aiart-stream-test-order")
    rng = np.random.default_rng(7)
    rows = rng.uniform([4, 2, 1, 0.1], [8, 4.5, 7, 2.5], size=(1000, 4)).round(2)
    try:
        started(bridge, client, consumer, "plant/a/features")
        consumer.clear()
        began = time.monotonic()
        infos = []
        for n, row in enumerate(rows):
            topic = f"plant/{'ab'[n % 2]}/features"
            infos.append(send(client, topic, json.dumps(dict(zip(COLUMNS, row.tolist(),
                                                                 strict=True))).encode(),
                              str(n).encode()))

        def answered() -> int:
            return len({c for _, _, _, c in consumer.snapshot()})

        wait_for(lambda: answered() >= 300, 60, "300 answers")
        first = time.monotonic() - began
        bridge.kill()  # mid-stream, with messages scored and not acknowledged
        bridge.start()
        wait_for(lambda: answered() >= 600, 60, "600 answers")
        model.away_until = time.monotonic() + 1.5  # a model restarting
        wait_for(lambda: answered() >= 1000, 90, "1,000 answers")
        seconds = time.monotonic() - began
        for info in infos:
            assert info.is_published()
        metrics = bridge.metrics()
    finally:
        close(bridge, consumer, client)
    got = consumer.snapshot()
    seen = once_in_order(got, "iris", 1000)
    expected = model.estimator.predict(rows)
    scored = [seen[str(n).encode()]["outputs"][0]["data"][0] for n in range(1000)]
    assert scored == expected.tolist()
    # The model's time away was waited out, not dead-lettered.
    assert metric_value(metrics, "aiart_stream_retries_total") >= 1
    print(f"\n1,000 messages through the bridge (with a kill and a model away) in "
          f"{seconds:.1f} s (the first 300 in {first:.1f} s); {len(got) - 1000} answered "
          "twice, marked")


def test_messages_the_model_cannot_take_go_to_the_dead_letter_topic_and_hold_nothing_up(
        broker: int, model: Model) -> None:
    stream = Stream(name="mixed", topics=["cell/#"], format="row",  # type: ignore[arg-type]
                    columns=COLUMNS, output="cell-results/{topic}")
    consumer = Consumer(broker, ["cell-results/#", "aiart/dead-letter/iris/#", "replies/#"])
    client = publisher(broker)
    bridge = BridgeProcess(broker, model.port, stream, "aiart-stream-test-dead")
    good = json.dumps(dict(zip(COLUMNS, [5.1, 3.5, 1.4, 0.2], strict=True))).encode()
    cases = [(b"{not json", "not JSON"), (json.dumps({"sl": 1}).encode(), "lacks column sw"),
             (json.dumps({"sl": "x", "sw": 1, "pl": 1, "pw": 1}).encode(), "not a finite number"),
             (json.dumps([1.0, 2.0]).encode(), "the model refused it")]
    try:
        started(bridge, client, consumer, "cell/warm")
        consumer.clear()
        for n, (payload, _) in enumerate(cases):
            send(client, "cell/1", payload, f"bad-{n}".encode())
        send(client, "cell/1", good, b"good")
        # An MQTT 5 request: the answer goes where the message asks.
        send(client, "cell/2", good, b"asked", response_topic="replies/me")
        wait_for(lambda: len(consumer.snapshot()) >= len(cases) + 2, 30, "every outcome")
        metrics = bridge.metrics()
    finally:
        close(bridge, consumer, client)
    by = {c: (t, json.loads(p)) for t, p, _, c in consumer.snapshot()}
    for n, (payload, reason) in enumerate(cases):
        topic, letter = by[f"bad-{n}".encode()]
        assert topic == "aiart/dead-letter/iris/cell/1"
        assert reason in letter["reason"], letter
        assert letter["payload"] == payload.decode() and letter["topic"] == "cell/1"
    assert by[b"bad-3"][1]["status"] == 400
    assert by[b"good"][0] == "cell-results/cell/1"
    assert by[b"good"][1]["outputs"][0]["data"] == [0]
    assert by[b"asked"][0] == "replies/me"
    assert metric_value(metrics, "aiart_stream_messages_total", outcome="dead_lettered") == 4
    assert metric_value(metrics, "aiart_stream_messages_total", outcome="answered") >= 3
