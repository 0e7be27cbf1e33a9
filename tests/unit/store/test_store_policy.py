"""The store gateway's rules, request by request: whose key signed it (AWS
Signature Version 4, checked against botocore's own signer) and what that
model may do in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiart.store.policy import (
    Denied,
    access_key_for,
    authorize,
    canonical_query,
    delete_keys,
    key_secret_name,
    model_of,
    secret_for,
    sign,
    verify,
)
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY = b"gateway-key-for-these-tests"
NOW = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def secret_of(access_key: str) -> str | None:
    return secret_for(KEY, access_key) if model_of(access_key) else None


def botocore_signed(method: str, url: str, access_key: str, secret: str,
                    headers: dict[str, str] | None = None) -> dict[str, list[str]]:
    """A request signed by botocore (the AWS SDK's signer), as the gateway sees it."""
    request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": EMPTY,
                                                         **(headers or {})})
    S3SigV4Auth(Credentials(access_key, secret), "s3", "us-east-1").add_auth(request)
    out = {k.lower(): [v] for k, v in request.headers.items()}
    out["host"] = ["store-gateway:9000"]
    return out


@pytest.mark.parametrize("path, query", [
    ("/aiart-iris/predictions/a%20b/%C3%BC.json", ""),
    ("/aiart-iris", "list-type=2&prefix=predictions%2F&max-keys=10"),
    ("/aiart-iris", "location"),
])
def test_a_request_signed_by_the_aws_sdk_with_the_models_key_verifies(
        path: str, query: str) -> None:
    key = access_key_for("iris")
    url = f"http://store-gateway:9000{path}" + (f"?{query}" if query else "")
    headers = botocore_signed("GET", url, key, secret_for(KEY, key))
    # botocore signs at the present time.
    now = datetime.strptime(headers["x-amz-date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    signed = verify(method="GET", raw_path=path, raw_query=query, headers=headers,
                    secret_of=secret_of, now=now)
    assert signed.access_key == key
    # The same request, signed with another secret or at another time, does not.
    forged = botocore_signed("GET", url, key, "x" * 40)
    with pytest.raises(Denied, match="does not match"):
        verify(method="GET", raw_path=path, raw_query=query, headers=forged,
               secret_of=secret_of, now=now)
    with pytest.raises(Denied, match="minutes from the gateway's clock"):
        verify(method="GET", raw_path=path, raw_query=query, headers=headers,
               secret_of=secret_of, now=now + timedelta(minutes=16))
    # Another path or method under the same signature does not.
    with pytest.raises(Denied, match="does not match"):
        verify(method="DELETE", raw_path=path, raw_query=query, headers=headers,
               secret_of=secret_of, now=now)


def test_sign_and_verify_agree_and_every_header_is_signed() -> None:
    headers = {"host": ["gw:9000"], "x-amz-content-sha256": [EMPTY], "x-amz-meta-a": ["1"]}
    key = access_key_for("iris")
    sign(method="PUT", raw_path="/aiart-iris/predictions/x", raw_query="", headers=headers,
         access_key=key, secret=secret_for(KEY, key), region="us-east-1", now=NOW)
    assert "x-amz-meta-a" in headers["authorization"][0]
    verify(method="PUT", raw_path="/aiart-iris/predictions/x", raw_query="", headers=headers,
           secret_of=secret_of, now=NOW)
    headers["x-amz-meta-a"] = ["2"]  # a signed header changed on the way
    with pytest.raises(Denied):
        verify(method="PUT", raw_path="/aiart-iris/predictions/x", raw_query="",
               headers=headers, secret_of=secret_of, now=NOW)


def test_unsigned_anonymous_unknown_and_presigned_requests_are_refused() -> None:
    def check(headers: dict[str, list[str]], query: str = "") -> str:
        with pytest.raises(Denied) as caught:
            verify(method="GET", raw_path="/aiart-iris/x", raw_query=query, headers=headers,
                   secret_of=secret_of, now=NOW)
        return caught.value.code

    assert check({"host": ["gw"]}) == "AccessDenied"
    assert check({"host": ["gw"]}, "X-Amz-Signature=abc&X-Amz-Credential=k") == "AccessDenied"
    root = botocore_signed("GET", "http://gw/aiart-iris/x", "root-key", "root-secret")
    with pytest.raises(Denied) as caught:
        verify(method="GET", raw_path="/aiart-iris/x", raw_query="", headers=root,
               secret_of=secret_of, now=datetime.now(UTC))
    assert caught.value.code == "InvalidAccessKeyId"
    assert check({"authorization": ["AWS AKIA:sig"]}) == "AccessDenied"  # signature V2


def test_the_scope_of_a_model() -> None:
    def allowed(method: str, path: str, query: str = "", **headers: str) -> bool:
        try:
            authorize(model="iris", method=method, raw_path=path, raw_query=query,
                      headers={k.replace("_", "-"): [v] for k, v in headers.items()})
        except Denied:
            return False
        return True

    own = "/aiart-iris"
    assert allowed("GET", f"{own}/artifacts/1/model.pkl")
    assert allowed("HEAD", f"{own}/manifests/1.yaml")
    assert allowed("GET", own, "list-type=2")
    assert allowed("PUT", f"{own}/predictions/2026/x.json")
    assert allowed("PUT", f"{own}/predictions/x", "partNumber=1&uploadId=u")
    assert allowed("POST", f"{own}/predictions/x", "uploads")
    assert allowed("DELETE", f"{own}/predictions/x")
    # The payload log (spec.logging) of its servers.
    assert allowed("PUT", f"{own}/payloads/2026-12-05/20261205T231500Z-a1-000001.jsonl.gz")
    assert not allowed("PUT", f"{own}/payloadsX/x")
    assert allowed("PUT", f"{own}/jobs/j1/output/00000-00000.jsonl")
    assert not allowed("PUT", "/aiart-other/payloads/x.jsonl")
    assert allowed("POST", own, "delete")
    assert allowed("PUT", f"{own}/predictions/y", x_amz_copy_source="/aiart-iris/artifacts/1/m")
    assert not allowed("PUT", f"{own}/predictions/y", x_amz_copy_source="aiart-other/a%2Fb")
    assert not allowed("PUT", f"{own}/artifacts/1/model.pkl")
    assert not allowed("DELETE", f"{own}/manifests/1.yaml")
    assert not allowed("PUT", f"{own}/predictions/../artifacts/1/model.pkl")
    assert not allowed("PUT", f"{own}/predictions%2F..%2Fartifacts%2Fm")
    assert not allowed("PUT", f"{own}/predictions/x", "acl")
    assert not allowed("GET", "/aiart-other/manifests/1.yaml")
    assert not allowed("GET", "/")
    assert not allowed("PUT", own)
    assert not allowed("DELETE", own)
    assert not allowed("PUT", own, "policy")
    assert not allowed("PATCH", f"{own}/predictions/x")


def test_a_multi_object_delete_names_writable_keys_only() -> None:
    body = (b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>'
            b"predictions/a</Key></Object><Object><Key>predictions/b</Key></Object></Delete>")
    assert delete_keys(body) == ["predictions/a", "predictions/b"]
    with pytest.raises(Denied, match="writes under predictions/"):
        delete_keys(body.replace(b"predictions/b", b"artifacts/1/model.pkl"))
    with pytest.raises(Denied):
        delete_keys(b"<Delete><Object><Key>")


def test_keys_and_their_secrets() -> None:
    assert access_key_for("iris") == "aiart-iris" and model_of("aiart-iris") == "iris"
    assert model_of("root-key") is None and model_of("aiart-") is None
    assert secret_for(KEY, "aiart-iris") != secret_for(KEY, "aiart-iris2")
    assert secret_for(KEY, "aiart-iris") != secret_for(b"another-key", "aiart-iris")
    assert len(secret_for(KEY, "aiart-iris")) == 40
    name = key_secret_name("a" * 63, "secret", "v")
    assert len(name) <= 64 and name != key_secret_name("a" * 63, "secret", "w")
    assert canonical_query("b=2&a=1&uploads") == "a=1&b=2&uploads="
