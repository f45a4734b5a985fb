"""A unit's Bedrock output joined with its id map: exactly one result per entry of the map.

Output lines are joined to the id map on `recordId`, never on position: first the entries found in the output
(in output order), then a `missing` result for each entry left. Tolerated without losing the others, and
counted in the unit's Tally: unreadable lines (a truncated last line), duplicate recordIds (the first wins),
recordIds that are not in the map.

Memory: the id map is held while the output is read, as a plain dict of the fields a result needs. collect
joins one unit at a time, and a shard holds at most Bedrock's records per job (50,000): ≈ 15 MB, measured with
tracemalloc (≈ 250-300 B an entry; an IdEntry instance would cost ≈ 700 B). A unit with no output file (prepare
failed, or the job wrote nothing) has nothing to join: its map, which for a failed prepare is the whole file's
and may exceed any shard's, is streamed, each entry missing, and never held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

from batch import storage
from batch.jsonl import Frame
from batch.records import IdEntry
from batch.results import Result, ResultError, Tally, answered, parse_line
from shared import pipeline

# Output lines carry the prompt and the whole answer (reasoning included): allow far more than a record.
MAX_OUTPUT_LINE_BYTES = 32 * 1024 * 1024

# recordId -> (the caller's id, the source line).
IdMap = dict[str, tuple[str, int]]


def harvest(
    bucket: str,
    source_key: str,
    ids_key: str,
    output_prefix: str | None,
    missing: ResultError,
    add: Callable[[Result, Tally], None],
) -> tuple[Tally, dict[str, Any] | None]:
    """Join the output under `output_prefix` with the id map at `ids_key`, handing each result to `add`; the
    unit's tally and its manifest.json.out (None when there is not exactly one)."""
    keys = list(storage.list_keys(bucket, output_prefix)) if output_prefix else []
    outputs = sorted(key for key in keys if key.endswith(pipeline.OUTPUT_SUFFIX))
    manifests = [key for key in keys if key.endswith(pipeline.MANIFEST_FILE)]
    manifest = storage.get_json(bucket, manifests[0]) if len(manifests) == 1 else None
    tally = Tally()
    if not outputs:  # nothing to join; prepare writes one line per recordId, so each still gets one result
        for entry in read_entries(bucket, ids_key):
            tally.entries += 1
            add(Result(entry=entry, source_key=source_key, status="missing", error=missing), tally)
        return tally, manifest if isinstance(manifest, dict) else None
    entries = id_map(read_entries(bucket, ids_key))
    tally.entries = len(entries)
    frames = chain.from_iterable(storage.iter_object_lines(bucket, key, MAX_OUTPUT_LINE_BYTES) for key in outputs)
    for result in chain(
        join(entries, frames, source_key=source_key, tally=tally),
        leftovers(entries, source_key=source_key, missing=missing, tally=tally),
    ):
        add(result, tally)
    tally.seen.clear()  # memory stays per shard: only the counts outlive the join
    return tally, manifest if isinstance(manifest, dict) else None


def read_entries(bucket: str, key: str) -> Iterator[IdEntry]:
    """The entries of an id map, validated (none when it does not exist); a broken line fails the run."""
    for frame in storage.iter_object_lines(bucket, key, MAX_OUTPUT_LINE_BYTES):
        if frame.data.strip():
            yield IdEntry.model_validate_json(frame.data)


def id_map(entries: Iterable[IdEntry]) -> IdMap:
    """The entries held for a join, in their order; the first entry of a recordId wins."""
    held: IdMap = {}
    for entry in entries:
        held.setdefault(entry.recordId, (entry.id, entry.line))
    return held


def join(entries: IdMap, frames: Iterable[Frame], *, source_key: str, tally: Tally) -> Iterator[Result]:
    """A result for each entry the output answers, in output order.

    `tally` collects the counts; `tally.seen` holds the recordIds already answered (shared across the
    output files of one shard).
    """
    for frame in frames:
        if not frame.too_long and not frame.data.strip():
            continue
        line = None if frame.too_long else parse_line(frame.data)
        if line is None:
            tally.unreadable += 1
            continue
        tally.success_lines += line.succeeded
        tally.error_lines += not line.succeeded
        found = entries.get(line.record_id)
        if found is None:
            tally.unknown += 1
        elif line.record_id in tally.seen:
            tally.duplicates += 1
        else:
            tally.seen.add(line.record_id)
            yield answered(_entry(line.record_id, found), source_key, line)


def leftovers(entries: IdMap, *, source_key: str, missing: ResultError, tally: Tally) -> Iterator[Result]:
    """A `missing` result for every entry no output line answered."""
    for record_id, found in entries.items():
        if record_id not in tally.seen:
            yield Result(entry=_entry(record_id, found), source_key=source_key, status="missing", error=missing)


def _entry(record_id: str, found: tuple[str, int]) -> IdEntry:
    identifier, line = found
    return IdEntry(recordId=record_id, id=identifier, line=line)
