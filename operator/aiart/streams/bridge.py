"""A stream's bridge: reads a model's MQTT topics, has each message scored
through the gateway, publishes the answers (docs/streams.md).

QoS 1 end to end: a message is acknowledged to the broker only once its
answer (or its dead letter) is published and the broker has acknowledged
that in turn; until then the broker keeps it for the bridge's session
(kept across disconnections, ``clean_start`` false). A bridge killed at any
point loses nothing: the broker sends what was not acknowledged again, with
MQTT's DUP flag, and the bridge marks what it publishes for those
(``aiart-duplicate: true``) so that consumers can drop an answer they
already have. Messages are scored several at a time, but answered and
acknowledged in the order they came (MQTT wants acknowledgements in order),
so the answers of one topic keep its order. A message the model refuses
goes to the dead-letter topic with the reason; a model that cannot answer
now (restarting, a version switching, overloaded) is asked again until it
does, and nothing overtakes the waiting message.

Eclipse Paho runs the protocol in a thread of its own; the bridge's work is
on an asyncio loop, which Paho's callbacks reach through
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from aiart.core.settings import StreamSettings
from aiart.core.spec import Stream
from aiart.streams.messages import (
    DUPLICATE,
    INPUT_TOPIC,
    BadMessage,
    Incoming,
    Verdict,
    answer_topic,
    dead_letter,
    loops,
    request_body,
    verdict,
)

log = logging.getLogger("aiart.streams")
QOS = 1
# A model that cannot answer is asked again after this long, doubling up to the most.
RETRY_FIRST, RETRY_MOST = 0.2, 5.0
CALL_TIMEOUT = 30.0


class StreamMetrics:
    def __init__(self, model: str, stream: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"model": model, "stream": stream}
        messages = Counter("aiart_stream_messages", "Stream messages by what became of them: "
                           "received, answered, dead_lettered", ["model", "stream", "outcome"],
                           registry=self.registry)
        self.received = messages.labels(**labels, outcome="received")
        self.answered = messages.labels(**labels, outcome="answered")
        self.dead = messages.labels(**labels, outcome="dead_lettered")
        self.duplicates = Counter(
            "aiart_stream_duplicates", "Messages the broker sent again after the bridge "
            "stopped without acknowledging them (answers marked aiart-duplicate)",
            ["model", "stream"], registry=self.registry).labels(**labels)
        self.retries = Counter(
            "aiart_stream_retries", "Model calls tried again (the model could not answer)",
            ["model", "stream"], registry=self.registry).labels(**labels)
        self.pending = Gauge("aiart_stream_pending_messages", "Messages received and not yet "
                             "acknowledged", ["model", "stream"],
                             registry=self.registry).labels(**labels)
        self.lag = Gauge("aiart_stream_lag_seconds", "How long the oldest message not yet "
                         "acknowledged has waited", ["model", "stream"],
                         registry=self.registry).labels(**labels)


@dataclass(frozen=True, slots=True)
class Outcome:
    topic: str
    payload: bytes
    answered: bool  # False: a dead letter


class Bridge:
    def __init__(self, *, model: str, stream: Stream, settings: StreamSettings,
                 client_id: str | None = None) -> None:
        self.model, self.stream, self.settings = model, stream, settings
        self.client_id = client_id or f"aiart-stream-{model}-{stream.name}"
        self.metrics = StreamMetrics(model, stream.name)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[tuple[int, Incoming, float]] = asyncio.Queue()
        self._published: dict[int, asyncio.Future[None]] = {}
        self._connected = asyncio.Event()
        self._arrivals: deque[float] = deque()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        self.client.username_pw_set(settings.broker_user, settings.broker_password or None)
        self.client.reconnect_delay_set(1, 10)
        # Paho keeps at most this many of the bridge's publishes unacknowledged.
        self.client.max_inflight_messages_set(max(20, 2 * stream.concurrency))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish

    # -- Paho's thread ------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    code: ReasonCode, _properties: Any) -> None:
        if code.is_failure:
            log.error("the broker refused the bridge: %s", code)
            return
        # Each answer's publish follows the last message's small acknowledgement:
        # with Nagle's algorithm it waited for the broker's delayed ACK (40 ms
        # here), and a bridge went at 23 messages a second whatever its
        # concurrency. Paho leaves the socket as it comes.
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Subscriptions are part of the kept session, but are made again in
        # case the session was new (or expired).
        client.subscribe([(topic, QOS) for topic in self.stream.topics])
        log.info("connected to the broker; reading %s", ", ".join(self.stream.topics))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected.set)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       code: ReasonCode, _properties: Any) -> None:
        log.warning("disconnected from the broker (%s); reconnecting", code)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._connected.clear)

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        incoming = Incoming(
            topic=message.topic, payload=bytes(message.payload), duplicate=bool(message.dup),
            response_topic=getattr(properties, "ResponseTopic", None) or None,
            correlation=getattr(properties, "CorrelationData", None) or None)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._inbox.put_nowait,
                                        (message.mid, incoming, time.monotonic()))

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int,
                    _code: ReasonCode, _properties: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._done_publishing, mid)

    # -- the loop -----------------------------------------------------------------

    def _done_publishing(self, mid: int) -> None:
        future = self._published.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(None)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        host, _, port = self.settings.broker.rpartition(":")
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.settings.session_seconds
        self.client.connect_async(host, int(port), clean_start=False, properties=properties)
        self.client.loop_start()
        ordered: asyncio.Queue[tuple[int, Incoming, float, asyncio.Task[Outcome]]] = (
            asyncio.Queue(maxsize=self.stream.concurrency))
        limit = asyncio.Semaphore(self.stream.concurrency)
        async with httpx.AsyncClient(base_url=self.settings.gateway_url,
                                     timeout=CALL_TIMEOUT) as http:
            tasks = [asyncio.create_task(self._take(ordered, limit, http)),
                     asyncio.create_task(self._answer(ordered)),
                     asyncio.create_task(self._watch())]
            try:
                await stop.wait()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                self.client.disconnect()
                self.client.loop_stop()

    async def _take(self, ordered: asyncio.Queue[tuple[int, Incoming, float,
                                                       asyncio.Task[Outcome]]],
                    limit: asyncio.Semaphore, http: httpx.AsyncClient) -> None:
        """Start scoring each message as it comes, at most ``concurrency`` at
        once; hand them on in their order."""
        while True:
            mid, message, arrived = await self._inbox.get()
            self.metrics.received.inc()
            if message.duplicate:
                self.metrics.duplicates.inc()
            self._arrivals.append(arrived)
            self.metrics.pending.set(len(self._arrivals))
            await limit.acquire()
            task = asyncio.create_task(self._score(message, http))
            task.add_done_callback(lambda _t: limit.release())
            await ordered.put((mid, message, arrived, task))

    async def _score(self, message: Incoming, http: httpx.AsyncClient) -> Outcome:
        model, stream = self.model, self.stream
        try:
            body = request_body(stream, message.payload)
        except BadMessage as exc:
            return Outcome(*dead_letter(stream, model, message, str(exc)), answered=False)
        topic = answer_topic(stream, model, message)
        if loops(stream, topic):
            return Outcome(*dead_letter(stream, model, message, f"the answer's topic {topic!r} "
                                        "is one this stream reads: it would loop"),
                           answered=False)
        headers = {"content-type": "application/json"}
        if self.settings.api_key:
            headers["x-api-key"] = self.settings.api_key
        delay = RETRY_FIRST
        while True:
            try:
                response = await http.post(f"/v2/models/{model}/infer", content=body,
                                           headers=headers)
                status, text = response.status_code, response.content
            except httpx.HTTPError as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}".encode()
            found = verdict(status) if status else Verdict.RETRY
            if found is Verdict.ANSWER:
                return Outcome(topic, text, answered=True)
            if found is Verdict.DEAD:
                return Outcome(*dead_letter(stream, model, message, "the model refused it: "
                                            + _reason(text), status), answered=False)
            self.metrics.retries.inc()
            log.warning("the model could not answer (%s: %s); asking again in %.1f s",
                        status or "no answer", _reason(text)[:200], delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MOST)

    async def _answer(self, ordered: asyncio.Queue[tuple[int, Incoming, float,
                                                         asyncio.Task[Outcome]]]) -> None:
        """Publish each outcome in the messages' order; acknowledge a message
        once the broker has its outcome."""
        while True:
            mid, message, _arrived, task = await ordered.get()
            outcome = await task
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if message.correlation is not None:
                properties.CorrelationData = message.correlation
            user = [(INPUT_TOPIC, message.topic)]
            if message.duplicate:
                user.append((DUPLICATE, "true"))
            properties.UserProperty = user
            await self._connected.wait()
            info = self.client.publish(outcome.topic, outcome.payload, qos=QOS,
                                       properties=properties)
            future = self._published.setdefault(info.mid, asyncio.get_running_loop()
                                                .create_future())
            if info.is_published():
                self._done_publishing(info.mid)
            await future
            self.client.ack(mid, QOS)
            (self.metrics.answered if outcome.answered else self.metrics.dead).inc()
            self._arrivals.popleft()
            self.metrics.pending.set(len(self._arrivals))

    async def _watch(self) -> None:
        while True:
            self.metrics.lag.set(time.monotonic() - self._arrivals[0] if self._arrivals else 0)
            await asyncio.sleep(1)


def _reason(text: bytes) -> str:
    return text.decode("utf-8", "replace").strip()[:500]


def main() -> None:
    from aiart_runtime import logs

    from aiart.core.settings import LogSettings

    logs.configure(LogSettings.from_env().level)
    settings = StreamSettings.from_env()
    stream = Stream.model_validate_json(settings.stream)
    bridge = Bridge(model=settings.model, stream=stream, settings=settings,
                    client_id=settings.client_id or None)
    start_http_server(settings.metrics_port, registry=bridge.metrics.registry)
    logs.model_context.set({"model": settings.model, "stream": stream.name})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await bridge.run(stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
