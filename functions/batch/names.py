"""Deterministic names for a run: execution name, Bedrock job names and tokens, record and request ids.

Everything is derived from the dropped object (bucket, key, version id), never from a clock or a random
id, so a duplicate S3 event, a Lambda retry or a state-machine retry always produces the same names and
Step Functions / Bedrock deduplicate them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath

from shared.pipeline import shard_number

# Bedrock CreateModelInvocationJob's jobName (botocore model `bedrock`, shape ModelInvocationJobName).
MAX_JOB_NAME_LENGTH = 63
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,54}-[0-9a-f]{24}")
# A stage's job-name prefix (`<stage>.`): the stage cannot hold a '.', so one stage's prefix never starts
# another's, and the EventBridge rule of job-state events matches this pipeline's jobs only.
JOB_NAME_PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,19}\.")

_HASH_LENGTH = 24  # 96 bits of SHA-256: collisions between runs are not a practical concern
_STEM_LENGTH = 40
_JOB_STEM_LENGTH = 24
# `<prefix><stem>-<24 hex>-<5 digits>` fits the 63 characters of a job name with a stem of this many at least.
_JOB_SUFFIX_LENGTH = 1 + _HASH_LENGTH + 1 + 5
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
_MAX_LINE = 99_999_999_999


def run_id(bucket: str, key: str, version_id: str | None) -> str:
    """The run (and Step Functions execution) name of one dropped object: `<readable stem>-<hash>`.

    The stem is the file name without extension, reduced to ASCII letters, digits and '-'; the hash covers
    the bucket, the key and the version id ("null" when the bucket is unversioned), so every new version
    of an object gets a new run and the same version always gets the same one.
    """
    digest = hashlib.sha256("\x00".join((bucket, key, version_id or "null")).encode("utf-8", "surrogatepass"))
    return f"{_stem(key, _STEM_LENGTH)}-{digest.hexdigest()[:_HASH_LENGTH]}"


def job_name(run: str, shard_index: int, prefix: str = "") -> str:
    """The Bedrock batch job name of one shard of a run: `<prefix><stem>-<hash>-<shard>` (≤ 63 characters, the
    API's pattern); `prefix` is the stage's (`dev.`, see JOB_NAME_PREFIX_PATTERN) or empty.
    """
    if prefix and not JOB_NAME_PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"not a job-name prefix: {prefix!r}")
    stem, digest = _split(run)
    room = min(_JOB_STEM_LENGTH, MAX_JOB_NAME_LENGTH - _JOB_SUFFIX_LENGTH - len(prefix))
    return f"{prefix}{stem[:room].rstrip('-') or 'run'}-{digest}-{shard_number(shard_index)}"


def client_request_token(run: str, shard_index: int) -> str:
    """The idempotency token of one shard's CreateModelInvocationJob: a retry never creates a second job."""
    _, digest = _split(run)
    return f"{digest}-{shard_number(shard_index)}"


def record_id(source_line: int) -> str:
    """The recordId of the prompt found at `source_line` (1-based) of the run's single source file.

    One run is one file, so the line number alone makes it unique within the run; 'R' + 11 digits keeps it
    alphanumeric and fixed-width (older Bedrock docs describe recordIds as 11-char alphanumeric strings).
    """
    if not 1 <= source_line <= _MAX_LINE:
        raise ValueError(f"source line {source_line} is outside 1..{_MAX_LINE}")
    return f"R{source_line:011d}"


def request_digest(run: str, item: str) -> str:
    """24 hex digits naming one request of a run in OpenAI's batch output (`batch_req_<digest>`,
    `chatcmpl-<digest>`): `item` is the record's recordId, or `line-<n>` for a rejected line. Any run id will do
    (the Batch API names its runs itself)."""
    return hashlib.sha256(f"{run}\x00{item}".encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LENGTH]


def short_model_name(model_id: str) -> str:
    """`openai.gpt-oss-120b-1:0` (or a Region-prefixed inference profile id) -> `gpt-oss-120b`."""
    name = model_id.rsplit(".", 1)[-1].split(":", 1)[0]
    head, _, tail = name.rpartition("-")
    return head if head and tail.isdigit() else name


def _split(run: str) -> tuple[str, str]:
    if not RUN_ID_PATTERN.fullmatch(run):
        raise ValueError(f"not a run id: {run!r}")
    stem, digest = run.rsplit("-", 1)
    return stem, digest


def _stem(key: str, limit: int) -> str:
    """A readable, ASCII-only stem of the key's file name; 'run' when nothing readable is left."""
    name = PurePosixPath(key).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    ascii_text = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    return _NOT_ALNUM.sub("-", ascii_text).strip("-")[:limit].rstrip("-") or "run"
