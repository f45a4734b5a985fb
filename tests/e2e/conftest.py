"""Deployed-stage tests: they need the stack outputs and AWS credentials, and are deselected by default."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def api_url() -> str:
    """The chat stack's `ApiUrl` output (the `/v1` base URL)."""
    url = os.environ.get("GPTOSS_API_URL")
    if not url:
        pytest.skip("set GPTOSS_API_URL to the deployed stack's ApiUrl output")
    return url


@pytest.fixture(scope="session")
def region() -> str:
    """The Region the stack is deployed in."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
