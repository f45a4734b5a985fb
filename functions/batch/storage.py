"""The batch pipeline's only S3 call site: streaming reads and writes, listings, small JSON objects.

Memory stays bounded whatever the object size: reads come in chunks, JSONL writes go out as a multipart
upload in parts of `part_size` bytes (S3 requires at least 5 MiB for every part but the last), or as one
PUT when the whole content fits in one part.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from batch.jsonl import Frame, iter_lines

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
PART_SIZE = 5 * MIB
MIN_PART_SIZE = 5 * MIB
CHUNK_SIZE = 1 * MIB
JSONL_CONTENT_TYPE = "application/jsonl"
_MISSING = frozenset({"NoSuchKey", "NoSuchVersion", "NotFound", "404"})


class ObjectMissing(Exception):
    """The object (or the requested version of it) does not exist."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What HeadObject says about an object."""

    key: str
    size: int
    version_id: str | None


@cache
def client() -> S3Client:
    """The container's S3 client (no endpoint_url: AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 are honoured)."""
    return boto3.client("s3", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def head(bucket: str, key: str, version_id: str | None = None) -> ObjectInfo | None:
    """The object's size and version, or None when it (or that version) does not exist."""
    s3 = client()
    try:
        if version_id:
            response = s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
        else:
            response = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _is_missing(error):
            return None
        raise
    return ObjectInfo(key=key, size=response["ContentLength"], version_id=response.get("VersionId"))


def iter_chunks(bucket: str, key: str, version_id: str | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The object's bytes in chunks of at most `chunk_size`.

    Raises:
        ObjectMissing: the object or version does not exist.
    """
    s3 = client()
    try:
        if version_id:
            response = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        else:
            response = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _is_missing(error):
            raise ObjectMissing(f"s3://{bucket}/{key} (version {version_id or 'latest'}) does not exist") from None
        raise
    with closing(response["Body"]) as body:
        yield from body.iter_chunks(chunk_size)


def iter_object_lines(bucket: str, key: str, max_line_bytes: int) -> Iterator[Frame]:
    """The lines of an object (see jsonl.iter_lines); no lines when the object does not exist."""
    try:
        yield from iter_lines(iter_chunks(bucket, key), max_line_bytes)
    except ObjectMissing:
        return


def list_keys(bucket: str, prefix: str) -> Iterator[str]:
    """Every key under `prefix`, in S3's (lexicographic) order, across all pages."""
    paginator = client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield item["Key"]


def get_json(bucket: str, key: str) -> Any:
    """A small JSON object, or None when it does not exist."""
    try:
        return json.loads(b"".join(iter_chunks(bucket, key)))
    except ObjectMissing:
        return None


def put_json(bucket: str, key: str, value: Any) -> None:
    """Write a small JSON object (indented, UTF-8)."""
    body = json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    client().put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def copy(bucket: str, source_key: str, target_key: str) -> None:
    """Copy an object inside the bucket (server side; up to 5 GB)."""
    client().copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key})


class JsonlWriter:
    """Streams lines into one object: one PUT if small, else a multipart upload (aborted on failure).

    Use as a context manager; the object appears when the block ends without an exception. With
    `skip_empty`, nothing is written when no line was (no empty object).
    """

    def __init__(self, bucket: str, key: str, *, part_size: int = PART_SIZE, skip_empty: bool = False) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.skip_empty = skip_empty
        self.lines = 0
        self.bytes = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def write(self, line: bytes) -> None:
        """Append one encoded line (it must end with a newline)."""
        self._buffer += line
        self.lines += 1
        self.bytes += len(line)
        if len(self._buffer) >= self.part_size:
            self._upload_part()

    def close(self) -> None:
        """Finish the object."""
        if self._upload_id is not None:
            if self._buffer:
                self._upload_part()
            client().complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
            )
        elif self._buffer or not self.skip_empty:
            body, self._buffer = self._buffer, bytearray()  # no copy of the buffer (see _upload_part)
            client().put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=body,  # type: ignore[arg-type]
                ContentType=JSONL_CONTENT_TYPE,
            )
        self._buffer.clear()

    def abort(self) -> None:
        """Drop what was uploaded so far (an aborted multipart upload leaves no object)."""
        if self._upload_id is not None:
            client().abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
        self._buffer.clear()

    def _upload_part(self) -> None:
        if self._upload_id is None:
            created = client().create_multipart_upload(Bucket=self.bucket, Key=self.key, ContentType=JSONL_CONTENT_TYPE)
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        # The buffer itself is the body (no copy of a whole part); a new one takes its place. botocore takes a
        # bytearray for a blob (validate.py: bytes, bytearray, str or file-like); the stubs list bytes only.
        body, self._buffer = self._buffer, bytearray()
        part = client().upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,  # type: ignore[arg-type]
        )
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") in _MISSING
