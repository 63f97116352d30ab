"""S3 (AWS, MinIO, moto) as the archive, through boto3.

``s3://bucket/prefix``; ``MEMSTREAM_S3_ENDPOINT_URL`` (the ``s3_endpoint_url`` setting)
points it at MinIO or a test server. Credentials come from boto3's usual chain
(environment, profile, instance role). boto3 retries a little on its own; the tier loop
does the real retrying with backoff, so a dead endpoint does not block a pass for long.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .archive import Archive, ObjectInfo, check_name
from .errors import ArchiveConfigError, ArchiveUnavailableError, ObjectMissingError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING = {"NoSuchKey", "404", "NotFound"}
_AUTH = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403",
         "InvalidToken", "ExpiredToken"}  # fmt: skip


class S3Archive(Archive):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
    ) -> None:
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.url = f"s3://{bucket}/{self.prefix}"
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        # A boto3 client is thread-safe; creating it is not, so one per archive, locked.
        with _CREATE:
            self._s3: S3Client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, config=config
            )

    def _key(self, name: str) -> str:
        return self.prefix + check_name(name)

    def _fail(self, e: Exception, name: str | None, what: str) -> Exception:
        where = f"{self.url}{name or ''}"
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return ObjectMissingError(f"object {name} is missing from {self.url}", name)
            return ArchiveUnavailableError(f"S3 {what} {where} failed: {code}: {e}", name)
        return ArchiveUnavailableError(f"S3 {what} {where} failed: {e}", name)

    def put(self, name: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, name, "put") from e

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        options: dict[str, Any] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            options["Range"] = f"bytes={offset}-{end}"
        try:
            reply = self._s3.get_object(Bucket=self.bucket, Key=self._key(name), **options)
            return reply["Body"].read()
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, name, "get") from e

    def head(self, name: str) -> ObjectInfo | None:
        try:
            reply = self._s3.head_object(Bucket=self.bucket, Key=self._key(name))
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) in _MISSING:
                return None
            raise self._fail(e, name, "head") from e
        except BotoCoreError as e:
            raise self._fail(e, name, "head") from e
        return ObjectInfo(name, int(reply["ContentLength"]))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        pages = self._s3.get_paginator("list_objects_v2")
        try:
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][len(self.prefix) :], int(item["Size"]))
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, prefix, "list") from e

    def delete(self, name: str) -> None:
        try:
            self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, name, "delete") from e

    def check(self) -> None:
        endpoint = self.endpoint_url or "AWS's default endpoint"
        try:
            self._s3.head_bucket(Bucket=self.bucket)
        except NoCredentialsError as e:
            raise ArchiveConfigError(
                f"archive_url {self.url}: no AWS credentials found (set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY, or a profile or role)"
            ) from e
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise ArchiveConfigError(
                    f"archive_url {self.url}: bucket {self.bucket!r} does not exist at "
                    f"{endpoint} (MEMSTREAM_ARCHIVE_URL / MEMSTREAM_S3_ENDPOINT_URL)"
                ) from e
            if code in _AUTH:
                raise ArchiveConfigError(
                    f"archive_url {self.url}: {endpoint} refused the credentials ({code}); "
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
                ) from e
            raise ArchiveConfigError(f"archive_url {self.url}: {code}: {e}") from e
        except BotoCoreError as e:
            raise ArchiveConfigError(
                f"archive_url {self.url}: cannot reach {endpoint} (MEMSTREAM_S3_ENDPOINT_URL): {e}"
            ) from e

    def close(self) -> None:
        self._s3.close()


_CREATE = threading.Lock()
