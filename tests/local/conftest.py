"""Shared by the local runner's tests: the chat stack's synthesized template, once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.templates import Template, chat_template, synthesize


@pytest.fixture(scope="session")
def template() -> Template:
    """The chat stack's template, synthesized the way `python -m local serve` does it."""
    return chat_template(synthesize())


@pytest.fixture(scope="session")
def template_file(template: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same template as a file (what `serve --template` reads)."""
    path = tmp_path_factory.mktemp("templates") / "chat.template.json"
    path.write_text(json.dumps(template))
    return path
