"""Image bytes as objects in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW,
OpenStack Swift's s3api): the shared backend of core's BlobStore contract, for several
gazou processes on several machines. `BLOB_URL=s3://bucket?endpoint=...&region=...`
selects it; aiobotocore talks to the bucket.

An S3 PUT is atomic (readers see the old object or the new one, never a part), so no
temporary key is needed; each write sends its Content-MD5, which the server checks
against the bytes it received, and the returned ETag is compared with the same MD5
before `put` returns, so a row is only committed over bytes known to be stored."""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from core.contracts import BlobNotFound
from core.errors import SettingsError, StorageUnavailable

log = logging.getLogger(__name__)
# Bytes handed on per chunk when streaming an object.
READ_CHUNK = 256 * 1024
# Connections kept to the store: one per concurrent transfer, up to this many.
MAX_CONNECTIONS = 32
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where the bucket is: its name, the endpoint (None: AWS) and the region."""

    bucket: str
    endpoint: str | None = None
    region: str | None = None


def parse_blob_url(url: str) -> S3Location:
    """`s3://bucket?endpoint=http://host:port&region=...` (validated by load_settings)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    return S3Location(
        bucket=parts.netloc,
        endpoint=query.get("endpoint", [None])[-1] or None,
        region=query.get("region", [None])[-1] or None,
    )


# One botocore session per process: a new one registers its ~500 event handlers and
# reads the JSON models of S3 again, 50-100 ms per open (each `bot.py` command, each
# test), where clients of a shared session open in 15-40 ms. Shared only when the keys
# are given: a session that looks credentials up keeps them, refreshable ones with a
# lock of the event loop that first used them.
_SESSION: AioSession | None = None


def _session(keys_given: bool) -> AioSession:
    global _SESSION
    if not keys_given:
        return get_session()
    if _SESSION is None:
        _SESSION = get_session()
    return _SESSION


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Blobs as objects of one bucket, under the same keys as the file store's paths."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        # Keys asked for per listing page (S3 gives at most 1000).
        self.page_size = 1000

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: str, access_key: str | None = None, secret_key: str | None = None
    ) -> AsyncIterator[S3BlobStore]:
        """Connect to the bucket named by `url` and check that it answers; SettingsError
        (naming BLOB_URL) when it is missing, refused or unreachable."""
        where = parse_blob_url(url)
        config = AioConfig(
            # Path-style (endpoint/bucket/key) works on every S3-compatible server;
            # virtual hosts need DNS per bucket.
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            # Content-MD5 is the integrity check every S3 implementation knows; the
            # newer CRC trailers are not understood by all of them (Swift, older MinIO).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=MAX_CONNECTIONS,
            connect_timeout=10,
            read_timeout=60,
        )
        session = _session(access_key is not None and secret_key is not None)
        async with session.create_client(
            "s3",
            endpoint_url=where.endpoint,
            region_name=where.region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=config,
        ) as client:
            try:
                await client.head_bucket(Bucket=where.bucket)
            except ClientError as exc:
                raise SettingsError(
                    "BLOB_URL", f"bucket {where.bucket!r} answered {_code(exc) or exc}"
                ) from None
            except BotoCoreError as exc:
                raise SettingsError("BLOB_URL", f"cannot reach the bucket: {exc}") from None
            yield cls(client, where.bucket)

    async def put(self, key: str, data: bytes) -> None:
        """Upload `data` under `key` with its Content-MD5 and check the stored ETag;
        StorageUnavailable when the store refuses or cannot be reached."""
        md5 = hashlib.md5(data, usedforsecurity=False)
        try:
            answer = await self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
            )
            etag = str(answer.get("ETag", "")).strip('"')
            if etag != md5.hexdigest():
                # Some stores (SSE-KMS, some gateways) don't return the MD5 as ETag:
                # then the stored size, read back, is the check.
                head = await self.client.head_object(Bucket=self.bucket, Key=key)
                if head.get("ContentLength") != len(data):
                    raise StorageUnavailable("The image store did not keep the bytes sent")
        except (BotoCoreError, ClientError) as exc:
            log.error("cannot write %s to bucket %s: %s", key, self.bucket, exc)
            raise StorageUnavailable(
                "The image store cannot be written: nothing was stored"
            ) from exc

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The object's bytes from `start` up to `end` (None: to the end) as they
        arrive; BlobNotFound when there is no such object."""
        if end is not None and end <= start:
            return
        asked: dict[str, str] = {}
        if start or end is not None:
            asked["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=key, **asked)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise BlobNotFound(key) from None
            if _code(exc) == "InvalidRange":
                return  # `start` is past the end: no bytes
            raise self._read_error(key, exc) from exc
        except BotoCoreError as exc:
            raise self._read_error(key, exc) from exc
        async with answer["Body"] as body:
            try:
                async for chunk in body.iter_chunks(READ_CHUNK):
                    yield chunk
            except BotoCoreError as exc:
                raise self._read_error(key, exc) from exc

    def _read_error(self, key: str, exc: Exception) -> StorageUnavailable:
        log.error("cannot read %s from bucket %s: %s", key, self.bucket, exc)
        return StorageUnavailable("The image store cannot be read right now")

    async def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._read_error(key, exc) from exc
        except BotoCoreError as exc:
            raise self._read_error(key, exc) from exc
        return head

    async def exists(self, key: str) -> bool:
        """Whether the object exists (a HEAD request)."""
        return await self._head(key) is not None

    async def remove(self, key: str) -> None:
        """Delete the object; S3 answers the same whether or not it existed."""
        try:
            await self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(f"cannot remove {key} from bucket {self.bucket}: {exc}") from exc

    async def list_prefix(self, prefix: str) -> list[str]:
        """Keys directly under `prefix/`, page after page (1000 keys per page on S3)."""
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=f"{prefix}/",
            Delimiter="/",
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            async for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        except (BotoCoreError, ClientError) as exc:
            raise self._read_error(prefix, exc) from exc
        return keys

    async def list_all(self, prefix: str) -> AsyncGenerator[tuple[str, float], None]:
        """(key, LastModified) of every object under the folder `prefix`, at any depth,
        in key order: one flat listing, `page_size` keys per request, the times from the
        listing itself (no HEAD per key)."""
        folder = prefix.strip("/")
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket,
            Prefix=f"{folder}/" if folder else "",
            PaginationConfig={"PageSize": self.page_size},
        )
        try:
            async for page in pages:
                for item in page.get("Contents", ()):
                    yield item["Key"], float(item["LastModified"].timestamp())
        except (BotoCoreError, ClientError) as exc:
            raise self._read_error(prefix, exc) from exc

    async def modified_at(self, key: str) -> float | None:
        """The object's LastModified (when its upload completed), None if it is gone."""
        head = await self._head(key)
        return None if head is None else float(head["LastModified"].timestamp())

    async def direct_url(self, key: str, expires_in: int) -> str | None:
        """A presigned GET of the object, valid `expires_in` seconds (signed locally:
        no request is made)."""
        url: str = await self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def local_path(self, key: str) -> Path | None:
        """None: objects have no local file."""
        return None
