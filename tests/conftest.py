"""Fixtures and environment shared by every test: offline, dummy AWS identity, no real endpoints."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

EVENTS_DIR = Path(__file__).parent / "events"

# Set before any boto3 or Powertools import so nothing can reach a real account.
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "GptOssBedrock",
        "POWERTOOLS_SERVICE_NAME": "tests",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    }
)
for _variable in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL") or name == "AWS_PROFILE"]:
    del os.environ[_variable]

# The X-Ray SDK opens its UDP emitter's socket when first imported (a batch function's Tracer imports it).
# Imported here, before pytest-socket blocks sockets, a test file that runs alone behaves as in the whole suite,
# where some earlier test that may use sockets happened to import it first. The socket sends nothing offline.
importlib.import_module("aws_xray_sdk.core")


# Property tests judge inputs, never speed: this machine (and CI's) is shared and noisy, so timing-based
# health checks and per-example deadlines would make the suite flaky without finding anything.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("suite")


def pytest_configure(config: pytest.Config) -> None:
    """Register the `row` marker (tests/test_rows.py checks that every row has a test or a stated reason)."""
    config.addinivalue_line(
        "markers", "row(*n): ties a test to row n of the 25 fault/bad-input tests in limits-security.md"
    )


@pytest.fixture
def load_event() -> Callable[[str], Any]:
    """Load a canonical event or fixture file from tests/events/."""

    def load(name: str) -> Any:
        return json.loads((EVENTS_DIR / name).read_text())

    return load
