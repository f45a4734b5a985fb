"""A directory standing in for S3 behind `batch.storage.client()`, so the batch functions run their real code
paths on local files: what the bench measures is our code, not moto's or the network's.

Only the calls storage.py makes are answered, with the shapes boto3 returns; multipart parts are appended to
a hidden file that the completion renames, so nothing is held in memory beyond the part being written.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError


class _Body:
    """The StreamingBody subset storage.iter_chunks uses."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")

    def iter_chunks(self, chunk_size: int) -> Iterator[bytes]:
        """The file in chunks of `chunk_size` bytes."""
        while chunk := self._file.read(chunk_size):
            yield chunk

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class _Pages:
    def __init__(self, root: Path) -> None:
        self._root = root

    def paginate(self, *, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:
        base = self._root / Bucket
        keys = sorted(path.relative_to(base).as_posix() for path in base.rglob("*") if path.is_file())
        yield {"Contents": [{"Key": key} for key in keys if key.startswith(Prefix) and "/." not in f"/{key}"]}


class LocalS3:
    """The S3 client calls of storage.py, on files under `root/<bucket>/<key>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, bucket: str, key: str) -> Path:
        """Where an object lives."""
        return self.root / bucket / key

    def head_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:
        """Size and (fake) version of an object."""
        return {"ContentLength": self._existing(Bucket, Key).stat().st_size, "VersionId": VersionId}

    def get_object(self, *, Bucket: str, Key: str, VersionId: str | None = None) -> dict[str, Any]:
        """A streaming body over the file."""
        return {"Body": _Body(self._existing(Bucket, Key))}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        """Write a whole object."""
        self._target(Bucket, Key).write_bytes(Body)
        return {}

    def create_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        """Start an upload: an empty hidden file beside the object."""
        self._parts(Bucket, Key).write_bytes(b"")
        return {"UploadId": Key}

    def upload_part(self, *, Bucket: str, Key: str, PartNumber: int, Body: bytes, **_: Any) -> dict[str, Any]:
        """Append one part (storage.py uploads them in order)."""
        with self._parts(Bucket, Key).open("ab") as parts:
            parts.write(Body)
        return {"ETag": str(PartNumber)}

    def complete_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        """The appended parts become the object."""
        self._parts(Bucket, Key).replace(self._target(Bucket, Key))
        return {}

    def abort_multipart_upload(self, *, Bucket: str, Key: str, **_: Any) -> dict[str, Any]:
        """Drop the parts."""
        self._parts(Bucket, Key).unlink(missing_ok=True)
        return {}

    def copy_object(self, *, Bucket: str, Key: str, CopySource: dict[str, str]) -> dict[str, Any]:
        """Copy inside the bucket."""
        shutil.copyfile(self._existing(CopySource["Bucket"], CopySource["Key"]), self._target(Bucket, Key))
        return {}

    def get_paginator(self, operation: str) -> _Pages:
        """list_objects_v2 in one page."""
        if operation != "list_objects_v2":
            raise NotImplementedError(operation)
        return _Pages(self.root)

    def _existing(self, bucket: str, key: str) -> Path:
        path = self.path(bucket, key)
        if not path.is_file():
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": key}}, "GetObject")
        return path

    def _target(self, bucket: str, key: str) -> Path:
        path = self.path(bucket, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _parts(self, bucket: str, key: str) -> Path:
        target = self._target(bucket, key)
        return target.with_name(f".{target.name}.parts")
