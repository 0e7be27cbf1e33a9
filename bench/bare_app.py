"""The practical limit of a Python model server on this stack: a bare ASGI
app that does what aiart's runtime does for one OIP JSON request (orjson in,
numpy rows, the estimator's ``predict``, orjson out) and nothing else: no
validation, no routing, no metrics, no gateway check. Served by uvicorn
with the runtime's settings, it is what the runtime is held to (within
15 %). ``AIART_BARE_MODEL``: the pickled estimator's path."""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import orjson

with open(os.environ["AIART_BARE_MODEL"], "rb") as file:
    MODEL = pickle.load(file)  # the benchmark's own file


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":  # the benchmark's readiness check
        await _send(send, b"{}")
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    request = orjson.loads(b"".join(chunks))
    tensor = request["inputs"][0]
    rows = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    predicted = MODEL.predict(rows)
    body = orjson.dumps({"model_name": "iris", "outputs": [{
        "name": "predict", "datatype": "INT64", "shape": list(predicted.shape),
        "data": predicted}]}, option=orjson.OPT_SERIALIZE_NUMPY)
    await _send(send, body)


async def _send(send: Any, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
