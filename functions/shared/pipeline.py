"""The batch pipeline's contract with whoever starts or reads a run: where a run's objects live in the pipeline
bucket (pure; the one place that spells the layout) and what starts a run (`RunInput`). Read by the batch
functions and by the chat API's Batch API (`/v1/files`, `/v1/batches`).

inbox/                                   the drop folder: the only prefix that starts runs
work/<run>/records.jsonl, idmap.jsonl    every accepted record and its id-map entry (first pass)
work/<run>/shard-00000/records.jsonl     one Bedrock input file per shard (nothing else in that folder)
work/<run>/idmap/shard-00000.jsonl       the id map of one shard (recordId -> user id, source line)
work/<run>/on-demand/records.jsonl       the records of a run too small for a batch job
work/<run>/idmap/on-demand.jsonl         their id map
bedrock-output/<run>/shard-00000/<jobId>/records.jsonl.out + manifest.json.out   (written by Bedrock)
bedrock-output/<run>/on-demand/records.jsonl.out + manifest.json.out              (written by on_demand)
openai/<owner>/files/<file id>.jsonl      a file uploaded through the Batch API (POST /v1/files)
openai/<owner>/batches/<batch id>.json   a batch created through the Batch API (its run is `batch-<hex>`)
work/job-tokens/<job name>                the task token of the shard waiting for that job (AwaitJob)
results/<run>/results.jsonl, summary.json
results/<run>/openai-output.jsonl, openai-errors.jsonl   the same results in OpenAI's batch output format
rejected/<run>/rejected.jsonl
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pydantic import BaseModel, ConfigDict

INBOX_PREFIX = "inbox/"
BATCH_API_PREFIX = "openai/"
JOB_TOKENS_PREFIX = "work/job-tokens/"
RECORDS_FILE = "records.jsonl"
OUTPUT_SUFFIX = ".jsonl.out"
MANIFEST_FILE = "manifest.json.out"
ON_DEMAND = "on-demand"


_MAX_SHARD_INDEX = 99_999


class RunInput(BaseModel):
    """The execution input (written by the starter, or by the Batch API): which object version this run is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str
    key: str
    versionId: str | None = None
    runId: str


def shard_number(shard_index: int) -> str:
    """The five digits that name one shard in keys and job names: `00000`."""
    if not 0 <= shard_index <= _MAX_SHARD_INDEX:
        raise ValueError(f"shard index {shard_index} is outside 0..{_MAX_SHARD_INDEX}")
    return f"{shard_index:05d}"


def shard_label(shard_index: int) -> str:
    """The folder name of one shard: `shard-00000`."""
    return f"shard-{shard_number(shard_index)}"


def is_prompt_key(key: str) -> bool:
    """Whether a key under the bucket is a prompt file: under inbox/, not a folder, not a hidden file."""
    if not key.startswith(INBOX_PREFIX) or key.endswith("/"):
        return False
    return not any(part.startswith(".") for part in PurePosixPath(key[len(INBOX_PREFIX) :]).parts)


def s3_uri(bucket: str, key: str) -> str:
    """`s3://bucket/key`."""
    return f"s3://{bucket}/{key}"


def all_records_key(run: str) -> str:
    """Every accepted record of the run, in source order (first pass of prepare)."""
    return f"work/{run}/{RECORDS_FILE}"


def all_ids_key(run: str) -> str:
    """The id map of every accepted record of the run, in source order."""
    return f"work/{run}/idmap.jsonl"


def shard_records_key(run: str, index: int) -> str:
    """The Bedrock input file of one shard."""
    return f"work/{run}/{shard_label(index)}/{RECORDS_FILE}"


def shard_ids_key(run: str, index: int) -> str:
    """The id map of one shard (kept outside the shard folder so Bedrock never sees it)."""
    return f"work/{run}/idmap/{shard_label(index)}.jsonl"


def shard_output_prefix(run: str, index: int) -> str:
    """Where Bedrock writes one shard's job output: `<prefix><jobId>/...`."""
    return f"bedrock-output/{run}/{shard_label(index)}/"


def on_demand_records_key(run: str) -> str:
    """The records of an on-demand run."""
    return f"work/{run}/{ON_DEMAND}/{RECORDS_FILE}"


def on_demand_ids_key(run: str) -> str:
    """The id map of an on-demand run."""
    return f"work/{run}/idmap/{ON_DEMAND}.jsonl"


def on_demand_output_prefix(run: str) -> str:
    """Where the on-demand task writes its output, in Bedrock's batch output layout."""
    return f"bedrock-output/{run}/{ON_DEMAND}/"


def on_demand_output_key(run: str) -> str:
    """The on-demand output file (named as Bedrock names the output of `records.jsonl`)."""
    return f"{on_demand_output_prefix(run)}{RECORDS_FILE}.out"


def on_demand_manifest_key(run: str) -> str:
    """The on-demand manifest, shaped like Bedrock's `manifest.json.out`."""
    return f"{on_demand_output_prefix(run)}{MANIFEST_FILE}"


def results_key(run: str) -> str:
    """One line per accepted prompt."""
    return f"results/{run}/results.jsonl"


def openai_output_key(run: str) -> str:
    """The answered requests in OpenAI's batch output format (what the Batch API calls the output file)."""
    return f"results/{run}/openai-output.jsonl"


def openai_errors_key(run: str) -> str:
    """The failed and rejected requests in OpenAI's batch output format (the Batch API's error file)."""
    return f"results/{run}/openai-errors.jsonl"


def summary_key(run: str) -> str:
    """The run summary."""
    return f"results/{run}/summary.json"


def rejected_key(run: str) -> str:
    """Lines of the source file that were not accepted, with reasons."""
    return f"rejected/{run}/rejected.jsonl"


def uploaded_file_key(owner: str, file_id: str) -> str:
    """A file uploaded through the Batch API by one owner (a hash of the signing principal)."""
    return f"{BATCH_API_PREFIX}{owner}/files/{file_id}.jsonl"


def batch_records_prefix(owner: str) -> str:
    """The folder of one owner's batch records: listing it lists their batches."""
    return f"{BATCH_API_PREFIX}{owner}/batches/"


def batch_record_key(owner: str, batch_id: str) -> str:
    """The record of one batch created through the Batch API."""
    return f"{batch_records_prefix(owner)}{batch_id}.json"


def job_id(job_arn: str) -> str:
    """The job id (last segment of the job ARN): the name of the folder Bedrock writes output into."""
    return job_arn.rsplit("/", 1)[-1]


def job_token_key(job_name: str) -> str:
    """Where a shard waiting for its job's end stores its Step Functions task token (job_events reads it).

    Under work/ (its lifecycle rule expires it); `job-tokens` is never a run id (run ids end in `-<hash>`).
    """
    return f"{JOB_TOKENS_PREFIX}{job_name}"
