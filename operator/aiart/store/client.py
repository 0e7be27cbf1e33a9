"""The object store, spoken to through the ``minio`` SDK on the plain S3 API.

MinIO in production; any S3 server behaves the same for what aiart asks.
Calls run in worker threads with short connect and read timeouts and no
hidden retries: a store that is down or slow fails a call within seconds
(``StoreUnavailable``, a transient error the operator backs off from) rather
than holding an operator worker.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio.to_thread

from aiart.core.errors import ObjectMissing, PermanentError, StoreUnavailable
from aiart.core.settings import StoreSettings

# The SDK (and urllib3, certifi) is imported where a store is opened or
# called, not with this module: importing it takes about 0.1 s (its admin
# API's cryptography), which every CLI command paid, those that never reach
# the store too (``aiart import`` of a model whose file is a config).
if TYPE_CHECKING:
    from minio import Minio

T = TypeVar("T")
MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}
REFUSED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class ObjectTooLarge(PermanentError):
    pass


class Store(Protocol):
    """The object store (``ObjectStore`` below); ``None`` in Deps when none is configured."""

    endpoint: str

    async def ensure_bucket(self, bucket: str) -> bool: ...
    async def stat(self, bucket: str, key: str) -> tuple[str, int, dict[str, str]] | None: ...
    async def get(self, bucket: str, key: str) -> bytes: ...
    async def put(self, bucket: str, key: str, data: bytes, *,
                  content_type: str = "application/octet-stream",
                  metadata: Mapping[str, str] | None = None) -> None: ...
    async def list(self, bucket: str, prefix: str = "") -> list[str]: ...
    async def remove_bucket(self, bucket: str) -> None: ...


class ObjectStore:
    """Async access to buckets and objects; small objects read recently are
    kept in memory, keyed by their ETag, so that the operator's periodic
    passes cost one HEAD request per artifact rather than a download."""

    CACHE_BYTES = 256 * 1024**2

    def __init__(self, settings: StoreSettings) -> None:
        import certifi
        import urllib3
        from minio import Minio

        self.settings = settings
        self.endpoint = settings.endpoint
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout,
                                    read=settings.read_timeout),
            retries=urllib3.Retry(total=0), maxsize=16,
            cert_reqs="CERT_REQUIRED", ca_certs=settings.ca_file or certifi.where(),
        )
        self.client: Minio = Minio(
            settings.endpoint, access_key=settings.access_key, secret_key=settings.secret_key,
            secure=settings.secure, region=settings.region, http_client=http)
        self._cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._cache_size = 0
        self._lock = threading.Lock()
        self._buckets: set[str] = set()

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        import urllib3
        from minio.error import MinioException, S3Error

        def guarded() -> T:
            try:
                return call()
            except S3Error as exc:
                if exc.code in MISSING_CODES:
                    raise ObjectMissing(f"{what}: {exc.code}") from None
                if exc.code in REFUSED_CODES:
                    raise StoreUnavailable(
                        f"the object store at {self.endpoint} refused aiart's credentials "
                        f"({exc.code}) during {what}") from None
                raise StoreUnavailable(f"object store error during {what}: {exc.code}") from None
            except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
                raise StoreUnavailable(
                    f"the object store at {self.endpoint} is unreachable ({what}): "
                    f"{type(exc).__name__}") from None
        return await anyio.to_thread.run_sync(guarded)

    async def ensure_bucket(self, bucket: str) -> bool:
        """Create the bucket if missing; True when it was created now."""
        if bucket in self._buckets:
            return False

        from minio.error import S3Error

        def make() -> bool:
            if self.client.bucket_exists(bucket):
                return False
            try:
                self.client.make_bucket(bucket)
            except S3Error as exc:
                if exc.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    return False
                raise
            return True

        created = await self._run(f"creating bucket {bucket}", make)
        self._buckets.add(bucket)
        return created

    async def stat(self, bucket: str, key: str) -> tuple[str, int, dict[str, str]] | None:
        """ETag, size and user metadata of an object; None when it does not exist."""
        try:
            info = await self._run(f"reading s3://{bucket}/{key}",
                                   lambda: self.client.stat_object(bucket, key))
        except ObjectMissing:
            return None
        meta = {k.lower().removeprefix("x-amz-meta-"): str(v)
                for k, v in (info.metadata or {}).items()
                if k.lower().startswith("x-amz-meta-")}
        return str(info.etag), int(info.size or 0), meta

    async def get(self, bucket: str, key: str) -> bytes:
        where = f"s3://{bucket}/{key}"
        found = await self.stat(bucket, key)
        if found is None:
            raise ObjectMissing(f"{where} does not exist")
        etag, size, _ = found
        if size > self.settings.max_object_bytes:
            raise ObjectTooLarge(
                f"{where} is {size} bytes; at most {self.settings.max_object_bytes} are read")
        memo = (bucket, key, etag)
        with self._lock:
            if memo in self._cache:
                self._cache.move_to_end(memo)
                return self._cache[memo]

        def download() -> bytes:
            response = self.client.get_object(bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data = await self._run(f"reading {where}", download)
        self._remember(memo, data)
        return data

    def _remember(self, memo: tuple[str, str, str], data: bytes) -> None:
        if len(data) > self.CACHE_BYTES // 4:
            return
        with self._lock:
            self._cache[memo] = data
            self._cache_size += len(data)
            while self._cache_size > self.CACHE_BYTES:
                _, old = self._cache.popitem(last=False)
                self._cache_size -= len(old)

    async def put(self, bucket: str, key: str, data: bytes, *,
                  content_type: str = "application/octet-stream",
                  metadata: Mapping[str, str] | None = None) -> None:
        await self._run(f"writing s3://{bucket}/{key}", lambda: self.client.put_object(
            bucket, key, io.BytesIO(data), len(data), content_type=content_type,
            metadata=dict(metadata or {})))

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        return await self._run(f"listing s3://{bucket}/{prefix}", lambda: [
            str(o.object_name) for o in self.client.list_objects(
                bucket, prefix=prefix, recursive=True)])

    async def remove_bucket(self, bucket: str) -> None:
        """Delete a bucket and everything in it (S3 deletes only empty buckets)."""
        from minio.deleteobjects import DeleteObject

        def remove() -> None:
            if not self.client.bucket_exists(bucket):
                return
            objects = [DeleteObject(str(o.object_name))
                       for o in self.client.list_objects(bucket, recursive=True)]
            for error in self.client.remove_objects(bucket, objects):
                raise StoreUnavailable(f"cannot delete {error.name} from {bucket}: {error.code}")
            self.client.remove_bucket(bucket)

        await self._run(f"removing bucket {bucket}", remove)
        self._buckets.discard(bucket)


def open_store(env: Mapping[str, str] | None = None) -> ObjectStore | None:
    """The configured object store (``AIART_S3_ENDPOINT``), or None."""
    settings = StoreSettings.from_env(env)
    return ObjectStore(settings) if settings.endpoint else None
