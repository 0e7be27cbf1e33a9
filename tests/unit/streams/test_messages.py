"""What a stream's bridge makes of messages and answers (aiart/streams/messages.py),
and the manifest's spec.streams."""

from __future__ import annotations

import json

import pytest
from aiart.core.spec import ManifestError, Stream, parse_manifest
from aiart.streams.messages import (
    BadMessage,
    Incoming,
    Verdict,
    answer_topic,
    dead_letter,
    loops,
    matches,
    request_body,
    verdict,
)

ROW = Stream(name="s", topics=["plant/+/x"], format="row",  # type: ignore[arg-type]
             columns=["a", "b"], input="X")
OIP = Stream(name="s", topics=["plant/#"])


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("plant/+/x", "plant/1/x", True), ("plant/+/x", "plant/1/y", False),
    ("plant/#", "plant", True), ("plant/#", "plant/a/b", True), ("#", "$SYS/x", False),
    ("plant/+", "plant/a/b", False), ("a/b", "a/b", True), ("+/+", "a", False),
])
def test_topics_match_as_mqtt_says(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


def test_a_row_becomes_a_one_row_tensor_and_an_oip_request_passes_as_is() -> None:
    body = json.loads(request_body(ROW, b'{"b": 2, "a": 1, "extra": "ignored"}'))
    assert body == {"inputs": [{"name": "X", "shape": [1, 2], "datatype": "FP64",
                                "data": [[1.0, 2.0]]}]}
    assert json.loads(request_body(ROW, b"[[1, 2], [3, 4]]"))["inputs"][0]["shape"] == [2, 2]
    assert json.loads(request_body(ROW, b"[1, 2.5]"))["inputs"][0]["data"] == [[1.0, 2.5]]
    oip = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}'
    assert request_body(OIP, oip) is oip


@pytest.mark.parametrize(("stream", "payload", "reason"), [
    (OIP, b"\xff", "not JSON"), (OIP, b"[1]", "not an inference request"),
    (ROW, b'{"a": 1}', "lacks column b"), (ROW, b'{"a": true, "b": 1}', "not a finite number"),
    (ROW, b"[[1, 2], [3]]", "rows differ"), (ROW, b'"x"', "not a row"),
    (ROW, b"[]", "not a row"), (ROW, b'[1, NaN]', "not a finite number"),
    (Stream(name="s", topics=["t"], format="row"), b'{"a": 1}',  # type: ignore[arg-type]
     "names no columns"),
])
def test_a_message_that_no_model_call_could_score_says_why(
        stream: Stream, payload: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        request_body(stream, payload)


def test_what_a_status_means_for_a_message() -> None:
    assert verdict(200) is Verdict.ANSWER
    assert {verdict(s) for s in (400, 413, 422)} == {Verdict.DEAD}
    # The platform's trouble, not the message's: it waits.
    assert {verdict(s) for s in (401, 403, 404, 408, 429, 500, 502, 503, 504)} == {
        Verdict.RETRY}


def test_answers_go_to_the_output_or_the_asked_topic_and_refusals_keep_the_message() -> None:
    message = Incoming(topic="plant/7/x", payload=b"\xff\x00")
    assert answer_topic(ROW, "iris", message) == "aiart/results/iris/plant/7/x"
    asked = Incoming(topic="plant/7/x", payload=b"{}", response_topic="reply/here")
    assert answer_topic(ROW, "iris", asked) == "reply/here"
    topic, body = dead_letter(ROW, "iris", message, "the message is not JSON", 400)
    assert topic == "aiart/dead-letter/iris/plant/7/x"
    assert json.loads(body) == {"reason": "the message is not JSON", "topic": "plant/7/x",
                                "model": "iris", "stream": "s", "status": 400,
                                "payloadBase64": "/wA="}
    assert loops(OIP, "plant/results") and not loops(ROW, "plant/7/y")


MANIFEST = """
apiVersion: aiart/v1
kind: Model
metadata: {name: iris, version: "1"}
spec:
  runtime: sklearn
  artifact: {uri: "config://m"}
"""


def test_spec_streams_are_checked_where_a_user_writes_them() -> None:
    good = parse_manifest(MANIFEST + "  streams: [{name: line1, topics: ['plant/+/f'], "
                          "format: row, columns: [a, b], output: 'scores/{stream}/{topic}'}]\n")
    assert good.spec.streams[0].columns == ["a", "b"]
    for bad, expected in (
            ("[{name: a, topics: ['x/#/y']}]", "# may only be the last level"),
            ("[{name: a, topics: ['x/a+']}]", "stand for a whole level"),
            ("[{name: a, topics: ['$SYS/#']}]", "the broker's own"),
            ("[{name: a, topics: []}]", "at least 1"),
            ("[{name: a, topics: [x], output: 'y/#'}]", "no wildcard"),
            ("[{name: a, topics: [x], output: 'y/{other}'}]", "no wildcard"),
            ("[{name: a, topics: [x], columns: [a]}]", "columns are for format row"),
            ("[{name: a, topics: [x]}, {name: a, topics: [y]}]", "must differ"),
            ("[{name: A, topics: [x]}]", "DNS label")):
        with pytest.raises(ManifestError) as info:
            parse_manifest(MANIFEST + f"  streams: {bad}\n")
        assert any(expected in p for p in info.value.problems), (bad, info.value.problems)
    with pytest.raises(ManifestError, match="auth mode oidc"):
        parse_manifest(MANIFEST + "  auth: {mode: oidc}\n  streams: [{name: a, topics: [x]}]\n")
