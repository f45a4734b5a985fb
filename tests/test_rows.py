"""Every row of the 25 fault/bad-input tests (limits-security.md, part b) has a test here, or a stated reason.

Tests name their rows with `@pytest.mark.row(n, ...)` (registered in tests/conftest.py). The markers are
read from the test sources with `ast`, so this check gives the same answer however the suite is run
(one file, `-k`, `-m`), without collecting (and importing) every test module.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent
ROWS = range(1, 26)

# Rows no offline test can carry, and why. A row leaves this list as soon as a test is marked with it.
ROWS_WITHOUT_OFFLINE_TEST: dict[int, str] = {}


def _row_marks(decorator: ast.expr) -> list[int]:
    """The rows of one `pytest.mark.row(...)` decorator (an empty list for any other decorator)."""
    if not isinstance(decorator, ast.Call):
        return []
    target = decorator.func
    if not (isinstance(target, ast.Attribute) and target.attr == "row"):
        return []
    owner = target.value
    if not (isinstance(owner, ast.Attribute) and owner.attr == "mark"):
        return []
    rows = []
    for argument in decorator.args:
        assert isinstance(argument, ast.Constant), f"row markers take literal numbers: {ast.unparse(decorator)}"
        assert isinstance(argument.value, int), f"row markers take literal numbers: {ast.unparse(decorator)}"
        rows.append(argument.value)
    return rows


def marked_rows() -> dict[int, list[str]]:
    """Row -> the tests (file::name) marked with it, across every test module."""
    found: dict[int, list[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for decorator in node.decorator_list:
                    for row in _row_marks(decorator):
                        found.setdefault(row, []).append(f"{path.relative_to(TESTS)}::{node.name}")
    return found


def test_every_row_has_a_test_or_a_reason() -> None:
    marked = marked_rows()
    uncovered = [row for row in ROWS if row not in marked and row not in ROWS_WITHOUT_OFFLINE_TEST]
    assert not uncovered, f"rows with neither a marked test nor a reason: {uncovered}"


def test_row_numbers_are_the_table_s() -> None:
    assert set(marked_rows()) <= set(ROWS)
    assert set(ROWS_WITHOUT_OFFLINE_TEST) <= set(ROWS)


def test_a_row_with_a_test_is_not_also_excused() -> None:
    both = sorted(set(marked_rows()) & set(ROWS_WITHOUT_OFFLINE_TEST))
    assert not both, f"rows marked on a test yet listed without one: {both}"


def test_the_scan_sees_markers() -> None:
    # Guards the scan itself: a broken parser would report every row as unmarked, not silently pass.
    source = "import pytest\n@pytest.mark.row(3, 4)\ndef test_x() -> None: ...\n"
    [function] = [node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    assert _row_marks(function.decorator_list[0]) == [3, 4]
