"""Import boundaries: runtime code never imports CDK or infra; chat and batch never import each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def _importing(packages: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(from|import)\s+({packages})\b", re.MULTILINE)


RUNTIME_MUST_NOT_IMPORT = _importing("infra|aws_cdk|constructs|cdk_nag")
INFRA_MUST_NOT_IMPORT = _importing("chat|batch|shared")


def _offenders(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files under {folder}"
    return [str(path.relative_to(ROOT)) for path in files if pattern.search(path.read_text(encoding="utf-8"))]


@pytest.mark.parametrize(
    ("line", "matches"),
    [
        ("from aws_cdk import Stack", True),
        ("import aws_cdk.aws_lambda as lambda_", True),
        ("    from infra.config import DeploymentConfig", True),
        ("import constructs", True),
        ("from chat.settings import ChatSettings", False),
        ("# from infra import config", False),
        ("from infrastructure import x", False),
        ('"""import infra"""', False),
    ],
)
def test_the_runtime_pattern_catches_imports(line: str, matches: bool) -> None:
    assert bool(RUNTIME_MUST_NOT_IMPORT.search(line)) is matches


def test_functions_never_import_infra_or_cdk() -> None:
    assert _offenders(FUNCTIONS, RUNTIME_MUST_NOT_IMPORT) == []


def test_batch_never_imports_chat() -> None:
    assert _offenders(FUNCTIONS / "batch", _importing("chat")) == []


def test_chat_never_imports_batch() -> None:
    assert _offenders(FUNCTIONS / "chat", _importing("batch")) == []


def test_shared_imports_neither_chat_nor_batch() -> None:
    assert _offenders(FUNCTIONS / "shared", _importing("chat|batch")) == []


def test_infra_refers_to_handlers_only_by_name() -> None:
    assert _offenders(ROOT / "infra", INFRA_MUST_NOT_IMPORT) == []
