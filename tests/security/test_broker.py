"""The message broker of model streams (docs/streams.md), against the real
stack: nobody reads or writes a topic without the broker's password, and
with it a message goes through at QoS 1. (That no model reaches the broker
is tested with the rest of the model network, test_model_network.py.)"""

from __future__ import annotations

import os
import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.e2e.conftest import stack_auth

pytestmark = pytest.mark.e2e
HOST = os.environ.get("AIART_BROKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("AIART_BROKER_PORT", "1883"))


def connect(user: str | None, password: str | None) -> tuple[mqtt.Client, ReasonCode]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"test-{uuid.uuid4().hex[:8]}")
    if user is not None:
        client.username_pw_set(user, password)
    answered = threading.Event()
    codes: list[ReasonCode] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, code: ReasonCode,
                   _p: object) -> None:
        codes.append(code)
        answered.set()

    client.on_connect = on_connect
    client.connect(HOST, PORT)
    client.loop_start()
    assert answered.wait(10), "the broker did not answer the connection"
    return client, codes[0]


def test_only_a_client_with_the_password_reaches_a_topic() -> None:
    user, password = stack_auth("broker")
    for who, secret in ((None, None), (user, "wrong"), ("someone", password)):
        client, code = connect(who, secret)
        client.loop_stop()
        client.disconnect()
        assert code.getName() == "Not authorized", (who, code)

    client, code = connect(user, password)
    try:
        assert code.getName() == "Success", code
        topic = f"aiart-test/{uuid.uuid4().hex[:8]}/in"
        got: list[tuple[bytes, int]] = []
        client.on_message = lambda _c, _u, message: got.append((message.payload, message.qos))
        result, _ = client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.5)  # the subscription in place
        info = client.publish(topic, b'{"x": 1}', qos=1)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == [(b'{"x": 1}', 1)]
    finally:
        client.loop_stop()
        client.disconnect()
