"""Payload logging: a sample of a model's requests and its answers, written
to the model's bucket as gzipped JSON lines (``spec.logging`` in its
manifest).

The answer path only decides whether a request is in the sample and hands
its raw bodies over (``offer``: a random draw, a lock-free queue put, no
parsing); a thread of its own turns them into records and writes them in
batches, one object per batch:

    payloads/<YYYY-MM-DD>/<YYYYmmddTHHMMSS>Z-<replica>-<sequence>.jsonl.gz

Gzipped (its fastest level): a model's requests and answers repeat their
names and shapes, and a batch shrinks many times over for about a
microsecond a record in this thread (outside the interpreter's lock), where
every byte stored costs the store's side far more (measured:
bench/payload_log_cost.py).

A slow or absent store never slows an answer: what is queued is bounded in
bytes, and what does not fit is dropped and counted, as is a batch the
store refused twice. Only bodies are logged: no header, so no key or token,
ever reaches the bucket.
"""

from __future__ import annotations

import base64
import gzip
import io
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from .settings import ServerSettings

log = logging.getLogger("aiart_runtime")

PREFIX = "payloads/"
SUFFIX = ".jsonl.gz"
# zlib's fastest: most of what the best level saves, for a third of its time.
GZIP_LEVEL = 1
# What waits to be written, at most (bodies' bytes): beyond it, requests are
# not logged (and counted), whatever the store does.
MAX_QUEUED_BYTES = 64 * 1024 * 1024
# A batch is written when it has this many records or bytes, or when its
# first record is this old. Each object costs the writer a few milliseconds
# of the S3 client's own (signing, a connection) and the store's side more:
# a busy model writes one every few seconds, not every few hundred answers.
BATCH_RECORDS = 5000
BATCH_BYTES = 8 * 1024 * 1024
FLUSH_SECONDS = 5.0
# A batch the store refuses is tried once more after this pause, then dropped.
RETRY_SECONDS = 1.0

# (object key, gzipped JSON-lines bytes) -> None; raises when the store refuses.
Write = Callable[[str, bytes], None]


class Exchange(NamedTuple):
    """One request and its answer, as the answer path had them: bytes (HTTP)
    or protocol messages (gRPC), made into a record by the writer only. A
    named tuple: made on the answer path, where a frozen dataclass's
    construction costs several times as much."""

    at: float  # wall-clock time the answer was ready
    protocol: str  # "http" or "grpc"
    endpoint: str  # "infer", "predict" or "ModelInfer"
    status: int | str  # HTTP status, or gRPC status code name
    seconds: float
    request: Any
    response: Any
    # HTTP infer with binary tensors: the JSON part's length (the header
    # Inference-Header-Content-Length), of the request and of the response.
    request_json_bytes: int | None = None
    response_json_bytes: int | None = None

    def size(self) -> int:
        return _size(self.request) + _size(self.response)


def _size(body: Any) -> int:
    if isinstance(body, bytes | bytearray):
        return len(body)
    byte_size = getattr(body, "ByteSize", None)
    return int(byte_size()) if byte_size is not None else 0


def _body(raw: Any, json_bytes: int | None) -> dict[str, Any]:
    """A body as record fields: its JSON as JSON; binary tensors (the bytes
    after the JSON part) in base64; anything that is not JSON in base64."""
    if not isinstance(raw, bytes | bytearray):
        # A gRPC message: its canonical JSON form (raw contents in base64).
        from google.protobuf.json_format import MessageToDict
        return {"json": MessageToDict(raw, preserving_proto_field_name=True)}
    head, rest = (raw, b"") if json_bytes is None else (raw[:json_bytes], raw[json_bytes:])
    try:
        fields: dict[str, Any] = {"json": orjson.loads(head)}
    except orjson.JSONDecodeError:
        return {"base64": base64.b64encode(raw).decode()}
    if rest:
        fields["binary_base64"] = base64.b64encode(rest).decode()
    return fields


def stamp(at: float) -> str:
    """``at`` in UTC, ISO 8601 to the microsecond: ``2026-12-05T23:15:01.123456Z``.
    The second's part is kept from one call to the next: records come in
    runs of the same second, and formatting a date is most of a record's
    cost otherwise."""
    global _second
    whole = int(at)
    cached = _second
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{min(int((at - whole) * 1e6), 999_999):06d}Z"


_second: tuple[int, str] = (-1, "")


def record(exchange: Exchange, *, model: str, version: str, replica: str) -> dict[str, Any]:
    """The JSON line of one exchange (docs/storage.md lists its fields)."""
    request = _body(exchange.request, exchange.request_json_bytes)
    response = _body(exchange.response, exchange.response_json_bytes)
    line: dict[str, Any] = {
        "time": stamp(exchange.at),
        "model": model, "version": version, "replica": replica,
        "protocol": exchange.protocol, "endpoint": exchange.endpoint,
        "status": exchange.status, "latency_ms": round(exchange.seconds * 1000, 3),
    }
    request_json = request.get("json")
    if isinstance(request_json, dict) and isinstance(request_json.get("id"), str):
        line["id"] = request_json["id"]
    line["request"], line["response"] = request, response
    return line


class Lines:
    """Exchanges as JSON lines (``record``'s, byte for byte the same data).
    Most are answered HTTP requests, whose bodies are JSON already (the
    server parsed the request and wrote the answer): their bodies go into
    the line as they are, with no parsing and no second encoding, around a
    template of the record's other fields; only a request that may name an
    ``id`` is parsed, for it. The rest (errors, binary tensors, gRPC) take
    ``record``. Measured: ``bench/payload_log_cost.py --writer``."""

    def __init__(self, *, model: str, version: str, replica: str) -> None:
        self.model, self.version, self.replica = model, version, replica
        names = b'"model":%s,"version":%s,"replica":%s,"protocol":"http",' % (
            orjson.dumps(model), orjson.dumps(version), orjson.dumps(replica))
        self._head = b'{"time":"%s",' + names.replace(b"%", b"%%") + \
            b'"endpoint":"%s","status":200,"latency_ms":%s%s,"request":{"json":'

    def __call__(self, exchange: Exchange) -> bytes:
        request, response = exchange.request, exchange.response
        if not (exchange.status == 200 and exchange.protocol == "http"
                and exchange.endpoint in ("infer", "predict")
                and exchange.request_json_bytes is None
                and exchange.response_json_bytes is None
                and isinstance(request, bytes) and isinstance(response, bytes)):
            return orjson.dumps(record(exchange, model=self.model, version=self.version,
                                       replica=self.replica),
                                option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        named = b""
        if b'"id"' in request:
            found = orjson.loads(request)
            if isinstance(found, dict) and isinstance(found.get("id"), str):
                named = b',"id":' + orjson.dumps(found["id"])
        # Valid JSON has a line break only between tokens, where a space
        # does as well; the answer's JSON, written by orjson, has none.
        if b"\n" in request:
            request = request.replace(b"\n", b" ")
        return b"".join((
            self._head % (stamp(exchange.at).encode(), exchange.endpoint.encode(),
                          repr(round(exchange.seconds * 1000, 3)).encode(), named),
            request, b'},"response":{"json":', response, b"}}\n"))


class PayloadLog:
    """A model server's payload log: ``offer`` on the answer path, a writer
    thread to the store. The two share no lock: the queue is a deque (whose
    appends and pops are atomic), and each count is moved by one thread only
    (offered bytes and dropped: the event loop's; taken bytes, written and
    failed: the writer's), read by the other and by the metrics collector.
    The writer wakes once a batch is full or every ``flush_seconds``, not per
    request: a thread woken a thousand times a second takes the interpreter
    from the answers that often (measured: bench/payload_log_cost.py)."""

    def __init__(self, write: Write, *, sample: float, model: str, version: str,
                 replica: str | None = None, max_queued_bytes: int = MAX_QUEUED_BYTES,
                 batch_records: int = BATCH_RECORDS, batch_bytes: int = BATCH_BYTES,
                 flush_seconds: float = FLUSH_SECONDS, retry_seconds: float = RETRY_SECONDS,
                 draw: Callable[[], float] = random.random) -> None:
        if not 0 < sample <= 1:
            raise ValueError(f"the payload sample {sample} is not in (0, 1]")
        self._write = write
        self.sample = sample
        self.model, self.version = model, version
        self.replica = replica or socket.gethostname()
        self.max_queued_bytes = max_queued_bytes
        self.batch_records, self.batch_bytes = batch_records, batch_bytes
        self.flush_seconds, self.retry_seconds = flush_seconds, retry_seconds
        self._draw = draw
        # Each exchange queued as one plain tuple, its fields and then its
        # size: the collector stops tracking a plain tuple of plain values
        # (bytes, numbers, strings) at its first pass, but never a named tuple
        # (nor, at once, a tuple that holds a tuple it still tracks). Queued
        # named tuples, thousands at a time, went through every younger
        # generation's pass: 5.5 us of collection a request at one connection
        # against 2.5 us queued so (the collector's own callbacks, timed, in a
        # server whose log has no writer). A gRPC exchange holds its messages,
        # which the collector tracks whatever holds them.
        self._pending: deque[tuple[Any, ...]] = deque()
        self._offered_bytes = 0
        self._taken_bytes = 0
        self._wake = threading.Event()
        self._stopping = False
        self._sequence = 0
        self.written = 0  # records in objects the store took
        self.dropped = 0  # records not queued: the queue was full
        self.failed = 0  # records in batches the store refused twice
        self.objects = 0
        self._lines = Lines(model=model, version=version, replica=self.replica)
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()

    def offer(self, exchange: Callable[[], Exchange]) -> None:
        """Log an exchange if it is in the sample and fits the queue; never
        waits. ``exchange`` is called only for a sampled one."""
        if self.sample < 1 and self._draw() >= self.sample:
            return
        item = exchange()
        size = item.size()
        queued = self._offered_bytes - self._taken_bytes
        if queued + size > self.max_queued_bytes:
            if self.dropped == 0:
                log.warning("payload log: the store does not keep up; requests are not "
                            "logged until it does (aiart_payload_records_total "
                            "outcome=dropped)")
            self.dropped += 1
            return
        self._offered_bytes += size
        self._pending.append((*item, size))
        if self._full() and not self._wake.is_set():
            self._wake.set()

    def _full(self) -> bool:
        return (len(self._pending) >= self.batch_records
                or self._offered_bytes - self._taken_bytes >= self.batch_bytes)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` seconds) and stop."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("payload log: not all of it written within %.0f s of stopping", timeout)

    # -- the writer thread --------------------------------------------------------

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._stopping:
                while self._pending:
                    self._write_batch(self._take())
                return
            # Woken by a full batch: the full batches. By the clock: what is
            # queued now, and not what comes while it is written: under a
            # steady load that would be a batch of a few records after
            # another, without end, each an object (a request to the store).
            due = 0 if woken else len(self._pending)
            while due > 0 or self._full():
                batch = self._take()
                due -= len(batch)
                self._write_batch(batch)

    def _take(self) -> list[Exchange]:
        batch: list[Exchange] = []
        size = 0
        while self._pending and len(batch) < self.batch_records and size < self.batch_bytes:
            *fields, n = self._pending.popleft()
            batch.append(Exchange._make(fields))
            size += n
        self._taken_bytes += size
        return batch

    def _write_batch(self, batch: list[Exchange]) -> None:
        try:
            lines = gzip.compress(b"".join(map(self._lines, batch)), GZIP_LEVEL, mtime=0)
        except Exception:  # never lose the thread to one odd body
            log.exception("payload log: a batch could not be written as JSON")
            self.failed += len(batch)
            return
        self._store(batch[0].at, lines, len(batch))

    def _store(self, at: float, lines: bytes, count: int) -> None:
        self._sequence += 1
        stamp = datetime.fromtimestamp(at, UTC)
        key = (f"{PREFIX}{stamp:%Y-%m-%d}/{stamp:%Y%m%dT%H%M%S}Z-{self.replica}-"
               f"{self._sequence:06d}{SUFFIX}")
        for attempt in (1, 2):
            try:
                self._write(key, lines)
            except Exception as exc:
                if attempt == 1:
                    time.sleep(self.retry_seconds)
                    continue
                log.warning("payload log: the store refused %s twice (%s: %s); its %d "
                            "records are dropped", key, type(exc).__name__, exc, count)
                self.failed += count
                return
            self.written += count
            self.objects += 1
            return


def store_writer(*, endpoint: str, secure: bool, bucket: str, access_key: str,
                 secret_key: str, read_timeout: float = 20.0) -> Write:
    """Objects into ``bucket`` through MinIO's SDK, with timeouts short enough
    that a store that hangs costs a batch, not the log."""
    import urllib3
    from minio import Minio

    http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=read_timeout),
                               retries=urllib3.Retry(total=0), maxsize=2)
    client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                   http_client=http)

    def write(key: str, data: bytes) -> None:
        client.put_object(bucket, key, io.BytesIO(data), len(data),
                          content_type="application/gzip")

    return write


def from_settings(settings: ServerSettings, *, model: str, version: str) -> PayloadLog | None:
    """The payload log the operator asked for (AIART_PAYLOAD_SAMPLE), or None.
    A log that cannot be opened is said in the server's log and the model
    serves without it: its answers matter more than their record."""
    if not settings.payload_sample:
        return None
    try:
        sample = float(settings.payload_sample)
        if not 0 < sample <= 1:
            raise ValueError(f"{sample} is not in (0, 1]")
        if not (settings.store_endpoint and settings.store_bucket):
            raise ValueError("no store is given (AIART_STORE_ENDPOINT, AIART_STORE_BUCKET)")
        access = Path(settings.store_access_key_file).read_text().strip()
        secret = Path(settings.store_secret_key_file).read_text().strip()
        write = store_writer(endpoint=settings.store_endpoint,
                             secure=settings.store_secure.lower() == "true",
                             bucket=settings.store_bucket, access_key=access, secret_key=secret)
    except (ValueError, OSError) as exc:
        log.error("payload logging is asked for but cannot start: %s; serving without it", exc)
        return None
    log.info("logging %.0f%% of requests and their answers to %s/%s", sample * 100,
             settings.store_bucket, PREFIX)
    return PayloadLog(write, sample=sample, model=model, version=version)
