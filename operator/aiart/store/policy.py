"""What a model may do in the object store, and how the store gateway knows
which model asks. Pure: no I/O.

A model whose manifest asks for the store (``spec.store.credentials``) gets
a key pair of its own, never the store's keys: the access key is its bucket's
name (``aiart-<model>``) and the secret is derived from the gateway's key
with HMAC, so that neither the operator nor the gateway keeps a table of
keys, and a key cannot be guessed without the gateway's. The gateway
(``gateway``) takes a request as the model's when its AWS Signature
Version 4 verifies with that secret, lets it through only if the model's
scope allows it, and signs it again with the store's keys.

A model's scope, in its own bucket only:
- read anything: its artifacts, manifests, runs, results, and list them;
- write (put, copy into, multipart upload, delete) under ``predictions/``
  (its code's results), ``payloads/`` (its servers' payload log) and
  ``jobs/`` (its batch jobs) only,
  so that the artifacts and manifests aiart archived stay as deployed;
- never list buckets, create or delete one, change a bucket's settings,
  copy from another bucket, or use a presigned URL (one header-signed
  request at a time is what every S3 client sends).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from aiart.core.store_layout import BUCKET_PREFIX

ALGORITHM = "AWS4-HMAC-SHA256"
# Where a model may write in its bucket (store_layout): its results, its
# servers' payload log and its batch jobs' results (which the model's own
# code could write as well: they are the model's record, as trustworthy as
# the model).
WRITABLE_PREFIXES = ("predictions/", "payloads/", "jobs/")
# How far a request's date may be from the gateway's clock (S3's own window).
CLOCK_SKEW = timedelta(minutes=15)
# A multi-object delete's body (S3 allows 1,000 keys of at most 1 KiB).
MAX_DELETE_BODY = 2 * 1024 * 1024
READS = frozenset({"GET", "HEAD"})
WRITES = frozenset({"PUT", "POST", "DELETE"})
# Query parameters a write may carry: multipart uploads, object tags, and
# the operation name that newer AWS SDKs add (x-id). Not acl, policy,
# retention, legal-hold and the like, which change more than the object.
WRITE_PARAMETERS = frozenset({"uploads", "uploadId", "partNumber", "tagging", "x-id"})
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*"
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})$")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")


class Denied(Exception):
    """A request the gateway refuses: the S3 error code and a message that
    S3 clients show as they are."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- keys ---------------------------------------------------------------------

def access_key_for(model: str) -> str:
    """A model's access key: its bucket's name (not a secret)."""
    return f"{BUCKET_PREFIX}{model}"


def model_of(access_key: str) -> str | None:
    model = access_key.removeprefix(BUCKET_PREFIX)
    return model if model != access_key and model else None


def secret_for(gateway_key: bytes, access_key: str) -> str:
    """A model's secret key, derived from the gateway's key."""
    digest = hmac.new(gateway_key, b"aiart-store-key\0" + access_key.encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def key_secret_name(model: str, what: str, value: str) -> str:
    """The Docker secret holding one of a model's keys (``what``: access or
    secret), named by its content: a new gateway key makes new secrets, and
    the model's service rolls onto them. Docker allows 64 characters."""
    digest = hashlib.sha256(f"{model}\0{what}\0{value}".encode()).hexdigest()[:16]
    return f"aiart-store-{what}-{digest}"


# -- Signature Version 4 --------------------------------------------------------

Headers = Mapping[str, Sequence[str]]  # lower-case name -> its values, in order


@dataclass(frozen=True, slots=True)
class Signed:
    """What an Authorization header says."""

    access_key: str
    date: str  # YYYYMMDD
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(value: str) -> Signed:
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        raise Denied("AccessDenied", "aiart's store gateway takes requests signed with "
                     "AWS Signature Version 4 in the Authorization header only")
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3":
        raise Denied("AuthorizationHeaderMalformed",
                     f"the credential scope {match['credential']!r} is not "
                     "<key>/<date>/<region>/s3/aws4_request")
    signed = tuple(match["signed"].split(";"))
    if "host" not in signed:
        raise Denied("AuthorizationHeaderMalformed", "the host header must be signed")
    return Signed(access_key=parts[0], date=parts[1], region=parts[2], service=parts[3],
                  signed_headers=signed, signature=match["signature"])


def canonical_query(raw_query: str) -> str:
    """The query as SigV4 canonicalises it: its encoded pairs, sorted, each
    with an ``=`` (``?uploads`` is ``uploads=``)."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((name, value))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_request(method: str, raw_path: str, raw_query: str, headers: Headers,
                      signed_headers: Sequence[str], payload_hash: str) -> str:
    lines = []
    for name in signed_headers:
        values = headers.get(name)
        if values is None:
            raise Denied("AccessDenied", f"the signed header {name!r} is not in the request")
        lines.append(f"{name}:{','.join(_SPACES.sub(' ', v).strip() for v in values)}")
    # S3 takes the path as sent, encoded once by the client: no normalising.
    return "\n".join([method, raw_path or "/", canonical_query(raw_query), *lines, "",
                      ";".join(signed_headers), payload_hash])


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signature(secret: str, amz_date: str, scope: str, request: str) -> str:
    date, region, service, _ = scope.split("/")
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service),
                "aws4_request")
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(request.encode()).hexdigest()])
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign(*, method: str, raw_path: str, raw_query: str, headers: dict[str, list[str]],
         access_key: str, secret: str, region: str, now: datetime) -> None:
    """Sign a request in place (sets x-amz-date and authorization): every
    header given is signed. ``headers`` must hold host and x-amz-content-sha256."""
    amz_date = now.astimezone(UTC).strftime(_AMZ_DATE)
    headers["x-amz-date"] = [amz_date]
    headers.pop("authorization", None)
    names = sorted(headers)
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    request = canonical_request(method, raw_path, raw_query, headers, names,
                                headers["x-amz-content-sha256"][0])
    headers["authorization"] = [
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature(secret, amz_date, scope, request)}"]


def verify(*, method: str, raw_path: str, raw_query: str, headers: Headers,
           secret_of: Callable[[str], str | None], now: datetime) -> Signed:
    """The signature the request carries, once it verifies; else Denied."""
    if "x-amz-signature" in raw_query.lower() or "x-amz-credential" in raw_query.lower():
        raise Denied("AccessDenied", "aiart's store gateway takes no presigned URLs: "
                     "sign each request with the model's keys")
    values = headers.get("authorization")
    if not values:
        raise Denied("AccessDenied", "anonymous requests are refused: sign requests with the "
                     "keys in AIART_STORE_ACCESS_KEY_FILE and AIART_STORE_SECRET_KEY_FILE")
    signed = parse_authorization(values[0])
    secret = secret_of(signed.access_key)
    if secret is None:
        raise Denied("InvalidAccessKeyId", f"no model has the access key {signed.access_key!r}")
    amz_date = (headers.get("x-amz-date") or [""])[0]
    try:
        when = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise Denied("AccessDenied", "the request has no valid x-amz-date header") from None
    if amz_date[:8] != signed.date:
        raise Denied("SignatureDoesNotMatch", "the credential's date is not the request's")
    if abs(now - when) > CLOCK_SKEW:
        raise Denied("RequestTimeTooSkewed", f"the request's date {amz_date} is more than "
                     f"{CLOCK_SKEW.seconds // 60} minutes from the gateway's clock")
    payload = (headers.get("x-amz-content-sha256") or [""])[0]
    if not payload or "x-amz-content-sha256" not in signed.signed_headers:
        raise Denied("AccessDenied", "the request must sign x-amz-content-sha256")
    request = canonical_request(method, raw_path, raw_query, headers, signed.signed_headers,
                                payload)
    wanted = signature(secret, amz_date, signed.scope, request)
    if not hmac.compare_digest(wanted, signed.signature):
        raise Denied("SignatureDoesNotMatch",
                     "the request's signature does not match the model's key")
    return signed


# -- scope ------------------------------------------------------------------------

def _object_key(raw: str, what: str) -> str:
    key = unquote(raw)
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
        raise Denied("AccessDenied", f"{what} {key!r} has an empty, '.' or '..' segment")
    return key


def split_path(raw_path: str) -> tuple[str, str]:
    """(bucket, key) of a path-style request; key is '' for the bucket itself."""
    bucket, _, key = raw_path.lstrip("/").partition("/")
    return unquote(bucket), _object_key(key, "the key") if key else ""


def _query_names(raw_query: str) -> set[str]:
    return {unquote(item.partition("=")[0]) for item in raw_query.split("&") if item}


def _writable(key: str, what: str) -> None:
    if not key.startswith(WRITABLE_PREFIXES):
        raise Denied("AccessDenied", f"a model writes under {' and '.join(WRITABLE_PREFIXES)} "
                     f"in its bucket only; {what} {key!r} is not")


def authorize(*, model: str, method: str, raw_path: str, raw_query: str,
              headers: Headers) -> None:
    """Whether ``model`` may make this request (Denied if not). A multi-object
    delete's keys are checked apart (``delete_keys``), from its body."""
    own = access_key_for(model)
    bucket, key = split_path(raw_path)
    if not bucket:
        raise Denied("AccessDenied", "a model may not list the store's buckets")
    if bucket != own:
        raise Denied("AccessDenied", f"a model reaches its own bucket {own} only, not {bucket}")
    names = _query_names(raw_query)
    if method in READS:
        return
    if method not in WRITES:
        raise Denied("MethodNotAllowed", f"{method} is not an S3 request")
    if not key:
        if method == "POST" and names <= {"delete", "x-id"} and "delete" in names:
            return  # keys checked from the body
        raise Denied("AccessDenied", "a model may not create or delete its bucket or change "
                     "the bucket's settings")
    other = names - WRITE_PARAMETERS
    if other:
        raise Denied("AccessDenied", f"a model may not change {', '.join(sorted(other))} "
                     "of an object")
    _writable(key, "the key")
    source = (headers.get("x-amz-copy-source") or [""])[0]
    if source:
        path = unquote(source.partition("?")[0]).lstrip("/")
        source_bucket = path.partition("/")[0]
        if source_bucket != own:
            raise Denied("AccessDenied", f"a model copies from its own bucket {own} only, "
                         f"not {source_bucket}")


def delete_keys(body: bytes) -> list[str]:
    """The keys a multi-object delete names, each checked to be writable."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise Denied("MalformedXML", f"the delete request is not XML: {exc}") from None
    keys = [node.text or "" for node in root.iter() if node.tag.rsplit("}", 1)[-1] == "Key"]
    for key in keys:
        _writable(_object_key(key, "the key"), "the key")
    return keys

