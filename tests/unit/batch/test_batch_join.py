"""The join's id map: the first entry of a recordId wins, in file order; a unit without output is streamed from
its map, never held, whatever the map's size (the whole file's map when prepare failed)."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch import join, storage
from batch.jsonl import Frame, encode
from batch.names import record_id
from batch.records import IdEntry
from batch.results import Result, ResultError, Tally

MISSING = ResultError("RunFailed", "the run failed")
lines = st.integers(1, 60)
entries = st.lists(
    st.one_of(
        st.builds(lambda line, text: IdEntry(recordId=record_id(line), id=text, line=line), lines, st.text(max_size=6)),
        st.builds(IdEntry, recordId=st.sampled_from(["x", "R1", record_id(3)]), id=st.text(max_size=4), line=lines),
    ),
    max_size=30,
)


@given(entries=entries)
def test_the_id_map_is_the_first_entry_of_each_record_id_in_file_order(entries: list[IdEntry]) -> None:
    first: dict[str, IdEntry] = {}
    for entry in entries:
        first.setdefault(entry.recordId, entry)
    assert join.id_map(entries) == {key: (entry.id, entry.line) for key, entry in first.items()}
    assert list(join.id_map(entries)) == list(first)


@pytest.mark.parametrize("output_prefix", [None, "bedrock-output/run/shard-00000/job/"])
def test_a_unit_without_output_streams_its_id_map_in_bounded_memory(
    monkeypatch: pytest.MonkeyPatch, output_prefix: str | None
) -> None:
    count = 200_000  # held, with these 64-character ids, such a map would take ≈ 60 MB

    def id_map_lines(bucket: str, key: str, max_line_bytes: int) -> Iterator[Frame]:
        assert key == "work/run/idmap.jsonl"
        for line in range(1, count + 1):
            data = encode({"recordId": record_id(line), "id": f"{line:064d}", "line": line})
            yield Frame(line, data[:-1])

    monkeypatch.setattr(storage, "iter_object_lines", id_map_lines)
    monkeypatch.setattr(storage, "list_keys", lambda bucket, prefix: iter(["bedrock-output/run/other.txt"]))
    seen = {"results": 0, "last": 0}

    def add(result: Result, tally: Tally) -> None:
        assert (result.status, result.error) == ("missing", MISSING)
        assert result.entry.line == seen["last"] + 1  # in the map's order, each entry once
        seen["results"] += 1
        seen["last"] = result.entry.line

    tracemalloc.start()
    try:
        tally, manifest = join.harvest("bucket", "inbox/p.jsonl", "work/run/idmap.jsonl", output_prefix, MISSING, add)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (seen["results"], tally.entries, manifest) == (count, count, None)
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes"
