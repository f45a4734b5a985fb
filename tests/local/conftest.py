"""Shared by the local runner's tests: the app synthesized once per session, as the local runner does it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.system import local_context
from local.templates import Template, chat_template, synthesize


@pytest.fixture(scope="session")
def templates() -> dict[str, Template]:
    """Every stack's template, synthesized with the context `python -m local up` adds (cdk-nag: the infra tests)."""
    return synthesize(local_context({}))


@pytest.fixture(scope="session")
def template(templates: dict[str, Template]) -> Template:
    """The chat stack's template (what `python -m local serve` reads)."""
    return chat_template(templates)


@pytest.fixture(scope="session")
def template_file(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same template as a file (what `serve --template` reads)."""
    path = tmp_path_factory.mktemp("templates") / "chat.template.json"
    path.write_text(json.dumps(template))
    return path
