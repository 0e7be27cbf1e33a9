"""tritonclient.grpc, run in a process of its own.

tritonclient.grpc and KServe's SDK (tests/e2e/test_conformance.py) each
register the protocol's messages (``inference.ModelInferRequest``...) in
protobuf's default descriptor pool, and a second registration in one
process is an error: so the tests call tritonclient.grpc in a child
process, which reports what each call gave as JSON.

A call: {"model": m, "headers": {...}, "rows": [[...]], "shape": [n, k]} infers
(the answer's version, ``predict`` and ``predict_proba``, or the error's
text); with "metadata": true it asks for the model's metadata instead.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

CLIENT = r"""
import json, sys
import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException
target, ca, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = triton.InferenceServerClient(target, ssl=bool(ca), root_certificates=ca or None)
out = []
for call in calls:
    try:
        if call.get("metadata"):
            meta = client.get_model_metadata(call["model"], headers=call.get("headers"))
            out.append({"name": meta.name, "versions": list(meta.versions),
                        "platform": meta.platform, "outputs": [o.name for o in meta.outputs]})
            continue
        datatype = call.get("datatype", "FP64")
        tensor = triton.InferInput("input-0", call["shape"], datatype)
        tensor.set_data_from_numpy(np.asarray(
            call["rows"], dtype=np.float32 if datatype == "FP32" else np.float64))
        result = client.infer(call["model"], [tensor], headers=call.get("headers"),
                              request_id=call.get("id", ""))
        out.append({"id": result.get_response().id,
                    "version": result.get_response().model_version,
                    "predict": result.as_numpy("predict").tolist(),
                    "proba": result.as_numpy("predict_proba").tolist()})
    except InferenceServerException as exc:
        out.append({"error": str(exc)})
client.close()
print(json.dumps(out))
"""


def _command(target: str, calls: list[dict[str, Any]], ca: str) -> list[str]:
    return [sys.executable, "-c", CLIENT, target, ca, json.dumps(calls)]


def _answers(code: int | None, out: bytes, err: bytes) -> list[dict[str, Any]]:
    assert code == 0, err.decode()[-3000:]
    answers: list[dict[str, Any]] = json.loads(out.decode().strip().splitlines()[-1])
    return answers


def calls(target: str, batch: list[dict[str, Any]], ca: str = "") -> list[dict[str, Any]]:
    """The answers to ``batch``, made by tritonclient.grpc at ``target``
    (host:port; over TLS checked against ``ca`` when given)."""
    done = subprocess.run(_command(target, batch, ca), capture_output=True, timeout=120)
    return _answers(done.returncode, done.stdout, done.stderr)


async def calls_async(target: str, batch: list[dict[str, Any]], ca: str = ""
                      ) -> list[dict[str, Any]]:
    """``calls``, awaited: a server in this process's event loop goes on
    answering meanwhile."""
    process = await asyncio.create_subprocess_exec(
        *_command(target, batch, ca), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return _answers(process.returncode, out, err)
