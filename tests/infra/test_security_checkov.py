"""checkov's CloudFormation checks on every synthesized template: no failed check, every skip pinned and explained."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.bytecode import uv_executable
from tests.infra.synth import Synthesized

ROOT = Path(__file__).resolve().parents[2]
# checkov is a tool, not a dependency: it runs in its own environment (`uv tool run`, kept in uv's cache), since its
# own pins (networkx<2.7, packaging<24, boto3==1.35...) would hold the project's back. The exact version and its
# dependencies as PyPI had them on the day of the pin keep every run alike; to upgrade, move both.
CHECKOV = "checkov==3.3.30"
CHECKOV_DEPENDENCIES_AS_OF = "2026-12-06T00:00:00Z"
# One checkov at a time per checkout (parallel test sessions wait here rather than share 2 cores).
CHECKOV_LOCK = ROOT / ".build" / "checkov.lock"
INSTALL_TIMEOUT_SECONDS = 600
TIMEOUT_SECONDS = 300
_FUNCTION_SKIPS = {"CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}
# Every checkov skip of the variant app, by (stack without stage, logical id, check); the default app has these and
# CKV_AWS_115 on the chat function (no chatReservedConcurrency). Adding one means adding it here, on purpose.
# The reasons are in the template (Metadata.checkov.skip), written by infra/constructs/checkov.py's callers.
EXPECTED_SKIPS = {
    # The variant sets chatReservedConcurrency, so its chat function passes CKV_AWS_115 instead.
    *{("GptOssChat", "ChatApiChatFunction07189F43", check) for check in _FUNCTION_SKIPS - {"CKV_AWS_115"}},
    ("GptOssChat", "ChatApiDeploymentStage", "CKV_AWS_120"),
    # No point-in-time recovery on the Idempotency-Key records: a TTL-bound cache.
    ("GptOssChat", "ChatApiIdempotencyTableF75FE747", "CKV_AWS_28"),
    ("GptOssBatch", "BatchPipelineAccessLogs6CCEB55A", "CKV_AWS_18"),
    *{
        ("GptOssBatch", function, check)
        for function in (
            "BatchPipelineStarterFunction0747AE5D",
            "BatchPipelinePrepareFunction49FA7560",
            "BatchPipelineOnDemandFunction2417058D",
            "BatchPipelineCollectFunctionA06A8D72",
            "BatchPipelineJobEventsFunction459E184F",
        )
        for check in _FUNCTION_SKIPS
    },
}

# The test rig's too: its AWS FIS configuration bucket (short-lived experiment files; batch stack only, the
# streaming chat function carries no FIS extension) keeps no access log.
RIG_SKIPS = {("GptOssBatch", "FaultInjectionConfig05045809", "CKV_AWS_18")}


def _template_files(synthesized_apps: list[Synthesized]) -> list[Path]:
    files = [app.outdir / f"{stack_name}.template.json" for app in synthesized_apps for stack_name in app.templates]
    assert all(file.is_file() for file in files), files
    return files


def _uv_tool_run(*, offline: bool) -> list[str]:
    uv = uv_executable()
    if uv is None:
        pytest.fail("checkov runs with `uv tool run`: uv is not on PATH (python3 -m pip install uv)")
    # The test's own Python, so uv never downloads one; --isolated: never a `uv tool install`ed checkov.
    options = ["--isolated", "--python", sys.executable, "--exclude-newer", CHECKOV_DEPENDENCIES_AS_OF]
    return [uv, "tool", "run", *options, *(["--offline"] if offline else []), "--from", CHECKOV]


@contextmanager
def _checkov_tool() -> Iterator[list[str]]:
    """The command that runs the pinned checkov, installed from PyPI on the first run only, held by one caller."""
    CHECKOV_LOCK.parent.mkdir(exist_ok=True)
    with CHECKOV_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        probe = [*_uv_tool_run(offline=True), "python", "-c", ""]
        if subprocess.run(probe, capture_output=True, check=False).returncode != 0:  # noqa: S603 (fixed argv)
            install = [*_uv_tool_run(offline=False), "python", "-c", ""]
            done = subprocess.run(  # noqa: S603 (fixed argv)
                install, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_SECONDS, check=False
            )
            assert done.returncode == 0, f"installing {CHECKOV} with uv failed:\n{done.stderr[-2000:]}"
        # Installed: later runs need no network.
        yield [*_uv_tool_run(offline=True), "checkov"]


@pytest.fixture(scope="module")
def checkov_report(synthesized_apps: list[Synthesized]) -> list[dict[str, Any]]:
    """One checkov run over every template of all apps (a subprocess: pytest disables sockets in-process)."""
    arguments = ["--framework", "cloudformation", "--output", "json", "--skip-download"]
    for file in _template_files(synthesized_apps):
        arguments += ["--file", str(file)]
    # BC_SKIP_MAPPING: no download of the Bridgecrew guideline mapping (the run stays offline).
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    with _checkov_tool() as checkov:
        result = subprocess.run(  # noqa: S603 (the pinned checkov, fixed arguments)
            [*checkov, *arguments],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            env=environment,
            check=False,
        )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["cloudformation"]
    # The pinned tool ran, not some other checkov on PATH.
    assert reports[0]["summary"]["checkov_version"] == CHECKOV.removeprefix("checkov==")
    return reports


def test_checkov_finds_no_failed_check_in_any_template(checkov_report: list[dict[str, Any]]) -> None:
    (report,) = checkov_report
    failed = sorted(
        f"{Path(check['file_path']).name} {check['resource']}: {check['check_id']} {check['check_name']}"
        for check in report["results"]["failed_checks"]
    )
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_checkov_ran_on_every_template(
    checkov_report: list[dict[str, Any]], synthesized_apps: list[Synthesized]
) -> None:
    (report,) = checkov_report
    checked = {
        Path(check["file_path"]).name
        for kind in ("passed_checks", "skipped_checks")
        for check in report["results"][kind]
    }
    assert checked == {file.name for file in _template_files(synthesized_apps)}


def _skips(synthesized_apps: list[Synthesized]) -> list[tuple[str, str, str, str]]:
    """(stack without stage, logical id, check id, comment) of every skip in every template."""
    found = []
    for app in synthesized_apps:
        for stack_name, template in app.templates.items():
            stack, stage = stack_name.rsplit("-", 1)
            for logical_id, resource in template["Resources"].items():
                for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                    # The stage's logical id carries the stage name (DeploymentStage<stage><hash>).
                    name = logical_id.split(stage)[0] if logical_id.startswith("ChatApiDeploymentStage") else logical_id
                    found.append((stack, name, skip["id"], skip.get("comment", "")))
    return found


def test_every_checkov_skip_is_pinned_and_explained(
    synthesized_apps: list[Synthesized], checkov_report: list[dict[str, Any]]
) -> None:
    default, variant, rig = (_skips([app]) for app in synthesized_apps)
    chat_reservation = ("GptOssChat", "ChatApiChatFunction07189F43", "CKV_AWS_115")
    assert {(stack, name, check) for stack, name, check, _ in default} == EXPECTED_SKIPS | {chat_reservation}
    assert {(stack, name, check) for stack, name, check, _ in variant} == EXPECTED_SKIPS
    assert {(stack, name, check) for stack, name, check, _ in rig} == EXPECTED_SKIPS | {chat_reservation} | RIG_SKIPS
    for stack, name, check, comment in default + variant + rig:
        assert len(comment.split()) >= 8, (stack, name, check, comment)
    # checkov honoured each of them.
    (report,) = checkov_report
    assert len(report["results"]["skipped_checks"]) == len(default) + len(variant) + len(rig)


def test_chat_reserved_concurrency_is_off_by_default_and_set_from_config(
    synthesized_apps: list[Synthesized],
) -> None:
    default, variant = (
        app.templates[name]["Resources"]["ChatApiChatFunction07189F43"]["Properties"]
        for app, name in zip(synthesized_apps[:2], ("GptOssChat-dev", "GptOssChat-prod"), strict=True)
    )
    assert "ReservedConcurrentExecutions" not in default
    assert variant["ReservedConcurrentExecutions"] == 20
