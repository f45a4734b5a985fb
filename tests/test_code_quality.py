"""The project's standards, enforced by the test command: ruff, format, strict mypy, explained pins, a small harness."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ)  # noqa: S603


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed in the project environment")
    return path


def test_ruff_lint_is_clean() -> None:
    result = _run(_tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run(_tool("ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run(_tool("mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exact_pin_says_why() -> None:
    """An `==` in pyproject.toml holds a package back from `uv lock --upgrade`: the line above it says why."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    project = tomllib.loads(text)
    requirements = [*project["project"]["dependencies"], *(r for g in project["dependency-groups"].values() for r in g)]
    pins = [requirement for requirement in requirements if isinstance(requirement, str) and "==" in requirement]
    assert pins, "no exact pin found: has pyproject.toml moved its dependencies?"
    unexplained = [
        pin
        for pin in pins
        if not any(line == f'"{pin}",' and lines[index - 1].startswith("#") for index, line in enumerate(lines))
    ]
    assert unexplained == []


def _python_lines(*folders: str) -> int:
    return sum(len(path.read_text().splitlines()) for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_the_local_harness_and_the_bench_are_smaller_than_the_product() -> None:
    # What runs the product offline and measures it should stay easier to read than the product itself.
    harness, product = _python_lines("local", "bench"), _python_lines("functions")
    assert harness < product, f"local/ + bench/ hold {harness} lines of Python, functions/ {product}"
