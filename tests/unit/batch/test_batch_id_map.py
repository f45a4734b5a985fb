"""collect's compact id map: the same mapping as a dict of IdEntry, whatever order and shape the map has."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch.collect import IdMap
from batch.names import record_id
from batch.records import IdEntry

lines = st.integers(1, 60)
entries = st.lists(
    st.one_of(
        st.builds(lambda line, text: IdEntry(recordId=record_id(line), id=text, line=line), lines, st.text(max_size=6)),
        st.builds(IdEntry, recordId=st.sampled_from(["x", "R1", record_id(3)]), id=st.text(max_size=4), line=lines),
    ),
    max_size=30,
)


@given(entries=entries, probes=st.lists(st.sampled_from([*map(record_id, range(1, 62)), "x", "R1", ""]), max_size=10))
def test_the_id_map_is_the_first_entry_of_each_record_id_in_order(entries: list[IdEntry], probes: list[str]) -> None:
    expected: dict[str, IdEntry] = {}
    compact = IdMap()
    for entry in entries:
        expected.setdefault(entry.recordId, entry)
        compact.add(entry)
    assert len(compact) == len(expected)
    assert dict(compact.items()) == expected
    for probe in probes:
        assert compact.get(probe) == expected.get(probe)
        assert (probe in compact) == (probe in expected)
        if probe not in expected:
            with pytest.raises(KeyError):
                compact[probe]


def test_source_ordered_entries_keep_their_order() -> None:
    compact = IdMap()
    for line in (2, 5, 9):
        compact.add(IdEntry(recordId=record_id(line), id=f"é{line}", line=line))
    assert list(compact) == [record_id(2), record_id(5), record_id(9)]
    assert compact[record_id(5)] == IdEntry(recordId=record_id(5), id="é5", line=5)
