"""What the stream tests check of what a subscriber got: shared by the
bridge's integration test and the end-to-end test."""

from __future__ import annotations

import json
from typing import Any

# (topic, payload, user properties, correlation data), as a subscriber got them.
Received = tuple[str, bytes, dict[str, str], bytes | None]


def once_in_order(got: list[Received], model: str, count: int) -> dict[bytes, dict[str, Any]]:
    """The answers by correlation data (the message's number), having
    checked that: nothing was dead-lettered; an answer that came twice was
    marked a duplicate the second time; each came on the results topic of
    its message's topic; every one of ``count`` messages, sent in turn to
    topics <prefix>/a/... and <prefix>/b/..., was answered in its topic's
    order."""
    assert not [g for g in got if "/dead-letter/" in g[0]], "a good message was dead-lettered"
    seen: dict[bytes, dict[str, Any]] = {}
    order: dict[str, list[int]] = {"a": [], "b": []}
    for topic, payload, user, correlation in got:
        assert correlation is not None
        if correlation in seen:
            # Answered again after a crash: the bridge said so.
            assert user.get("aiart-duplicate") == "true", (correlation, user)
            continue
        seen[correlation] = json.loads(payload)
        source = user["aiart-input-topic"]
        assert topic == f"aiart/results/{model}/{source}"
        order[source.split("/")[1]].append(int(correlation))
    assert len(seen) == count
    assert order["a"] == list(range(0, count, 2)) and order["b"] == list(range(1, count, 2))
    return seen
