"""What a stream's bridge makes of a message, and of the model's answer.
Pure: no I/O.

A message becomes an Open Inference Protocol request (as is, or a row made
into a one-row tensor); the model's answer is published to the stream's
output topic (or the message's MQTT 5 response topic); a message the model
cannot take (not JSON, wrong shape: a 4xx) goes to the dead-letter topic
with the reason; anything else (the model away, restarting, overloaded) is
tried again, so that nothing is lost and nothing overtakes it.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiart.core.spec import Stream, StreamFormat

# User properties of what the bridge publishes (MQTT 5).
DUPLICATE = "aiart-duplicate"  # "true": the input came again after a crash
INPUT_TOPIC = "aiart-input-topic"
MAX_ROWS = 10_000


class BadMessage(ValueError):
    """A message that no model call could score: the dead-letter topic's reason."""


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    # The broker sent it again: the bridge may have answered it before it
    # stopped (MQTT's DUP flag on a resumed session's redelivery).
    duplicate: bool = False
    response_topic: str | None = None
    correlation: bytes | None = None


class Verdict(Enum):
    ANSWER = "answer"  # publish the model's answer
    DEAD = "dead"  # the message was refused: dead-letter it
    RETRY = "retry"  # the model could not answer now: try again


def fill(template: str, *, model: str, stream: str, topic: str) -> str:
    return (template.replace("{model}", model).replace("{stream}", stream)
            .replace("{topic}", topic))


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` is one that ``topic_filter`` subscribes to (MQTT's rules)."""
    wanted, levels = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and wanted[0] in ("+", "#"):
        return False
    for index, level in enumerate(wanted):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(wanted) == len(levels)


def request_body(stream: Stream, payload: bytes) -> bytes:
    """The inference request a message stands for (BadMessage if none)."""
    try:
        body: Any = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadMessage(f"the message is not JSON: {exc}") from None
    if stream.format is StreamFormat.OIP:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            raise BadMessage("the message is not an inference request: a JSON object with "
                             "inputs (format oip)")
        return payload
    rows = _rows(stream, body)
    width = len(rows[0])
    if any(len(row) != width for row in rows):
        raise BadMessage("the message's rows differ in length")
    return json.dumps({"inputs": [{"name": stream.input, "shape": [len(rows), width],
                                   "datatype": "FP64", "data": rows}]}).encode()


def _rows(stream: Stream, body: Any) -> list[list[float]]:
    if isinstance(body, dict):
        if stream.columns is None:
            raise BadMessage("the message is a JSON object, and the stream names no columns "
                             "to put its fields in order")
        missing = [c for c in stream.columns if c not in body]
        if missing:
            raise BadMessage(f"the message lacks column {', '.join(missing)}")
        return [[_number(body[c], c) for c in stream.columns]]
    if isinstance(body, list) and body and all(isinstance(r, list) for r in body):
        if len(body) > MAX_ROWS:
            raise BadMessage(f"the message has {len(body)} rows; at most {MAX_ROWS}")
        return [[_number(v, f"row {i}") for v in row] for i, row in enumerate(body)]
    if isinstance(body, list) and body:
        return [[_number(v, "the row") for v in body]]
    raise BadMessage("the message is not a row: a JSON object by columns, an array of "
                     "numbers, or an array of such arrays (format row)")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise BadMessage(f"{where}: {json.dumps(value)[:40]} is not a finite number")
    return float(value)


def verdict(status: int) -> Verdict:
    """What a model's HTTP status through the gateway means for a message.
    The message's own fault (400, 413, 422) dead-letters it; a missing
    route, key or model (401, 403, 404: a version switching, a key not yet
    known), a rate limit, a timeout or a server error is the platform's,
    and the message waits for it."""
    if 200 <= status < 300:
        return Verdict.ANSWER
    if status in (400, 413, 415, 422):
        return Verdict.DEAD
    return Verdict.RETRY


def answer_topic(stream: Stream, model: str, message: Incoming) -> str:
    """Where an answer goes: the message's response topic, else the stream's output."""
    if message.response_topic:
        return message.response_topic
    return fill(stream.output, model=model, stream=stream.name, topic=message.topic)


def loops(stream: Stream, topic: str) -> bool:
    """Whether publishing to ``topic`` would feed the stream its own output."""
    return any(matches(f, topic) for f in stream.topics)


def dead_letter(stream: Stream, model: str, message: Incoming, reason: str,
                status: int | None = None) -> tuple[str, bytes]:
    """The dead-letter topic and what is published there: the reason, and the
    message as it came (as text when it is UTF-8, else in base64)."""
    record: dict[str, Any] = {"reason": reason, "topic": message.topic, "model": model,
                              "stream": stream.name}
    if status is not None:
        record["status"] = status
    try:
        record["payload"] = message.payload.decode()
    except UnicodeDecodeError:
        record["payloadBase64"] = base64.b64encode(message.payload).decode()
    topic = fill(stream.deadLetter, model=model, stream=stream.name, topic=message.topic)
    return topic, json.dumps(record).encode()
