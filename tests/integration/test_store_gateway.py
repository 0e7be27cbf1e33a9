"""The store gateway between real S3 clients (MinIO's and AWS's SDKs) and a
real S3 server (moto's): a model's own keys reach its own bucket, writes
land under predictions/ only, and every other request is refused with an
S3 error the clients show."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import boto3
import botocore.config
import botocore.exceptions
import pytest
import requests
from aiart.store.client import StoreSettings
from aiart.store.gateway import StoreGateway
from aiart.store.policy import access_key_for, secret_for, sign
from aiohttp import web
from minio import Minio
from minio.commonconfig import CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from moto.server import ThreadedMotoServer

from tests.integration.test_object_store import free_port

GATEWAY_KEY = b"the-gateway-key-of-this-test-0123456789"
ROOT = ("root-access", "root-secret")


@dataclass
class Stack:
    store_port: int
    gateway_port: int

    def root(self) -> Minio:
        return Minio(f"127.0.0.1:{self.store_port}", *ROOT, secure=False)

    def model(self, model: str, secret: str | None = None) -> Minio:
        key = access_key_for(model)
        return Minio(f"127.0.0.1:{self.gateway_port}", key,
                     secret if secret is not None else secret_for(GATEWAY_KEY, key),
                     secure=False)

    def raw(self, model: str, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """A request signed with the model's key and sent as it is (no
        client tidies its path)."""
        key = access_key_for(model)
        host = f"127.0.0.1:{self.gateway_port}"
        headers = {"host": [host], "x-amz-content-sha256": [hashlib.sha256(body).hexdigest()],
                   "content-length": [str(len(body))]}
        sign(method=method, raw_path=path, raw_query="", headers=headers, access_key=key,
             secret=secret_for(GATEWAY_KEY, key), region="us-east-1", now=datetime.now(UTC))
        connection = http.client.HTTPConnection(host, timeout=5)
        try:
            connection.request(method, path, body=body,
                               headers={k: v[0] for k, v in headers.items()})
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def boto(self, model: str) -> Any:
        key = access_key_for(model)
        return boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.gateway_port}", region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret_for(GATEWAY_KEY, key),
            config=botocore.config.Config(s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))


def run_gateway(port: int, store_port: int, ready: threading.Event,
                stop: threading.Event) -> None:
    async def main() -> None:
        settings = StoreSettings(endpoint=f"127.0.0.1:{store_port}", access_key=ROOT[0],
                                 secret_key=ROOT[1])
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            runner = web.AppRunner(StoreGateway(settings, GATEWAY_KEY, session).app())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            ready.set()
            await asyncio.to_thread(stop.wait)
            await runner.cleanup()

    asyncio.run(main())


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    store_port, gateway_port = free_port(), free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=store_port, verbose=False)
    server.start()
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=run_gateway, args=(gateway_port, store_port, ready, stop),
                              daemon=True)
    thread.start()
    assert ready.wait(10), "the gateway did not start"
    stack = Stack(store_port, gateway_port)
    root = stack.root()
    for model in ("alpha", "beta"):
        root.make_bucket(access_key_for(model))
        root.put_object(access_key_for(model), "artifacts/1/model.pkl", io.BytesIO(b"pickle"), 6)
        root.put_object(access_key_for(model), "manifests/1.yaml", io.BytesIO(b"kind: Model"), 11)
    yield stack
    stop.set()
    thread.join(10)
    server.stop()


def refused(call: Any, code: str = "AccessDenied") -> str:
    with pytest.raises(S3Error) as caught:
        call()
    assert caught.value.code == code, caught.value
    return str(caught.value.message)


def test_a_model_reads_its_bucket_and_writes_its_results(stack: Stack) -> None:
    alpha = stack.model("alpha")
    bucket = access_key_for("alpha")
    assert alpha.get_object(bucket, "artifacts/1/model.pkl").read() == b"pickle"
    alpha.put_object(bucket, "predictions/day 1/ü.json", io.BytesIO(b'{"a": 1}'), 8,
                     content_type="application/json")
    assert alpha.get_object(bucket, "predictions/day 1/ü.json").read() == b'{"a": 1}'
    assert alpha.stat_object(bucket, "predictions/day 1/ü.json").size == 8
    listed = {o.object_name for o in alpha.list_objects(bucket, recursive=True)}
    assert listed == {"artifacts/1/model.pkl", "manifests/1.yaml", "predictions/day 1/ü.json"}
    # A multipart upload (two parts of 5 MiB and more) and a copy in its bucket.
    big = b"x" * (11 * 1024 * 1024)
    alpha.put_object(bucket, "predictions/big.bin", io.BytesIO(big), len(big),
                     part_size=5 * 1024 * 1024)
    assert stack.root().stat_object(bucket, "predictions/big.bin").size == len(big)
    alpha.copy_object(bucket, "predictions/model-copy.pkl",
                      CopySource(bucket, "artifacts/1/model.pkl"))
    errors = list(alpha.remove_objects(bucket, [DeleteObject("predictions/big.bin"),
                                                DeleteObject("predictions/model-copy.pkl")]))
    assert errors == []
    alpha.remove_object(bucket, "predictions/day 1/ü.json")
    assert {o.object_name for o in stack.root().list_objects(bucket, recursive=True)} == {
        "artifacts/1/model.pkl", "manifests/1.yaml"}


def test_a_model_reaches_no_other_bucket(stack: Stack) -> None:
    alpha = stack.model("alpha")
    other = access_key_for("beta")
    message = refused(lambda: alpha.get_object(other, "manifests/1.yaml"))
    assert f"its own bucket {access_key_for('alpha')} only, not {other}" in message
    refused(lambda: list(alpha.list_objects(other)))
    refused(lambda: alpha.put_object(other, "predictions/x", io.BytesIO(b"x"), 1))
    refused(lambda: alpha.list_buckets())
    refused(lambda: alpha.make_bucket("aiart-new"))
    refused(lambda: alpha.copy_object(access_key_for("alpha"), "predictions/stolen",
                                      CopySource(other, "artifacts/1/model.pkl")))
    assert stack.root().get_object(other, "manifests/1.yaml").read() == b"kind: Model"


def test_a_model_cannot_rewrite_what_aiart_archived(stack: Stack) -> None:
    alpha = stack.model("alpha")
    bucket = access_key_for("alpha")
    message = refused(lambda: alpha.put_object(bucket, "artifacts/1/model.pkl",
                                               io.BytesIO(b"evil"), 4))
    assert "writes under predictions/" in message
    refused(lambda: alpha.remove_object(bucket, "manifests/1.yaml"))
    # The SDKs refuse a '..' segment themselves; a hand-signed request sends it.
    status, body = stack.raw("alpha", "PUT", f"/{bucket}/predictions/../artifacts/1/model.pkl",
                             b"evil")
    assert status == 403 and b"'..' segment" in body, body
    refused(lambda: list(alpha.remove_objects(bucket, [DeleteObject("predictions/a"),
                                                       DeleteObject("artifacts/1/model.pkl")])))
    refused(lambda: alpha.remove_bucket(bucket))
    assert stack.root().get_object(bucket, "artifacts/1/model.pkl").read() == b"pickle"
    assert stack.root().get_object(bucket, "manifests/1.yaml").read() == b"kind: Model"


def test_a_key_that_is_not_the_models_is_refused(stack: Stack) -> None:
    bucket = access_key_for("alpha")
    forged = stack.model("alpha", secret="a" * 40)
    refused(lambda: forged.get_object(bucket, "manifests/1.yaml"), "SignatureDoesNotMatch")
    # The store's own keys mean nothing to the gateway.
    root_through_gateway = Minio(f"127.0.0.1:{stack.gateway_port}", *ROOT, secure=False)
    refused(lambda: root_through_gateway.get_object(bucket, "manifests/1.yaml"),
            "InvalidAccessKeyId")
    anonymous = requests.get(f"http://127.0.0.1:{stack.gateway_port}/{bucket}/manifests/1.yaml",
                             timeout=5)
    assert anonymous.status_code == 403 and b"anonymous requests are refused" in anonymous.content
    # A URL presigned with the model's own key is refused too.
    url = stack.model("alpha").presigned_get_object(bucket, "manifests/1.yaml",
                                                    expires=timedelta(minutes=5))
    presigned = requests.get(url, timeout=5)
    assert presigned.status_code == 403 and b"no presigned URLs" in presigned.content


def test_the_aws_sdk_passes_through_too(stack: Stack) -> None:
    s3 = stack.boto("beta")
    bucket = access_key_for("beta")
    s3.put_object(Bucket=bucket, Key="predictions/boto.txt", Body=b"from boto")
    assert s3.get_object(Bucket=bucket, Key="predictions/boto.txt")["Body"].read() == b"from boto"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="predictions/")["Contents"]]
    assert keys == ["predictions/boto.txt"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3.get_object(Bucket=access_key_for("alpha"), Key="manifests/1.yaml")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
