"""checkov's CloudFormation checks on every synthesized template: no failed check, every skip pinned and explained."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.synth import Synthesized

CHECKOV = Path(sys.executable).with_name("checkov")
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


@pytest.fixture(scope="module")
def checkov_report(synthesized_apps: list[Synthesized]) -> list[dict[str, Any]]:
    """One checkov run over every template of both apps (a subprocess: pytest disables sockets in-process)."""
    command = [str(CHECKOV), "--framework", "cloudformation", "--output", "json", "--skip-download"]
    for file in _template_files(synthesized_apps):
        command += ["--file", str(file)]
    # BC_SKIP_MAPPING: no download of the Bridgecrew guideline mapping (the run stays offline).
    environment = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(  # noqa: S603 (our venv's checkov, fixed arguments)
        command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, env=environment, check=False
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["cloudformation"]
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
