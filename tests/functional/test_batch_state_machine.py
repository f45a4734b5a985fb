"""The synthesized state machine, executed end to end offline (moto's interpreter + local.moto_patches).

Every test drops files into the inbox of the batch stack `cdk synth` produces (with small quotas, see
OFFLINE_CONTEXT): the real EventBridge pattern routes the event through SQS to the real starter, the
state machine runs its real definition, the real handlers run in-process, and Bedrock is faked at its
wire shapes. The assertions read what users read: results.jsonl, summary.json, the executions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from infra.config import EVENTS_PER_POLL_LAP, SHARD_FIXED_EVENTS, DeploymentConfig
from local import moto_patches
from local.bedrock import build_model
from local.bedrock.batch_jobs import JobRequest, JobScenario
from local.bedrock.guardrail import LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION
from local.harness import REGION, OfflinePipeline, Run
from tests.functional.conftest import OFFLINE_CONTEXT, OFFLINE_COST_TAGS, OFFLINE_QUOTAS, OFFLINE_STAGE

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

OFFLINE = DeploymentConfig.from_context(dict(OFFLINE_CONTEXT)).batch
BATCH_PATH = ["Begin", "Prepare", "Route", "Shards", "Collect", "Ended", "Done"]


def prompts(count: int, *, start: int = 0) -> list[str]:
    """JSONL lines of distinct, valid prompts."""
    return [json.dumps({"id": f"p{number}", "prompt": f"What is {number} squared?"}) for number in range(start, count)]


def jsonl(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def shard_scenario(first: JobScenario, others: JobScenario | None = None) -> Callable[[JobRequest], JobScenario]:
    """`first` for shard 0's job, `others` (default: completed) for every other shard."""
    return lambda request: first if request.job_name.endswith("-00000") else (others or JobScenario())


def assert_every_prompt_accounted_once(run: Run, source_lines: int) -> None:
    """Each line of the file is exactly one results line or one rejection; the summary counts agree."""
    assert run.summary is not None
    counts = run.summary["counts"]
    rejected = run.rejected
    result_lines = [result["source"]["line"] for result in run.results]
    rejected_lines = [rejection["line"] for rejection in rejected]
    assert len(set(result_lines)) == len(result_lines)
    assert len({result["recordId"] for result in run.results}) == len(run.results)
    assert sorted(result_lines + rejected_lines) == list(range(1, source_lines + 1))
    assert counts["accepted"] == len(run.results) == counts["ok"] + counts["error"] + counts["missing"]
    assert counts["rejected"] == len(rejected)
    statuses = [result["status"] for result in run.results]
    assert (statuses.count("ok"), statuses.count("error"), statuses.count("missing")) == (
        counts["ok"],
        counts["error"],
        counts["missing"],
    )


def assert_one_job_per_shard(run: Run) -> None:
    assert run.summary is not None
    shards = [job for job in run.summary["jobs"] if job["jobArn"] is not None]
    assert sorted(job.arn for job in run.jobs) == sorted(job["jobArn"] for job in shards)
    assert len({job.request.client_request_token for job in run.jobs}) == len(run.jobs)


def assert_failed_with_its_summary(run: Run, bucket: str) -> None:
    """A FAILED summary, written, then the execution failed by SummaryFailed naming it (the failure alarms fire)."""
    assert run.summary is not None
    assert run.summary["status"] == "FAILED"
    assert run.status == "FAILED", (run.error, run.cause)
    assert run.states_entered()[-3:] == ["Collect", "Ended", "SummaryFailed"]
    assert run.error == "SummaryFailed"
    assert run.cause == f"summary FAILED (no prompt answered): s3://{bucket}/results/{run.run_id}/summary.json"


# --- the three paths --------------------------------------------------------------------------------


@pytest.mark.row(18, 19)
def test_a_mixed_folder_runs_each_file_on_its_path(pipeline: OfflinePipeline) -> None:
    big = [*prompts(20), "{not json", *prompts(45, start=20), '{"prompt": ""}', "[1, 2]"]
    small = prompts(3)
    bad = ["{not json", '{"prompt": 42}']

    batch = pipeline.run("inbox/team-a/big.jsonl", jsonl(*big))
    on_demand = pipeline.run("inbox/team-a/small.jsonl", jsonl(*small))
    empty = pipeline.run("inbox/team-b/bad.jsonl", jsonl(*bad))

    assert batch.status == "SUCCEEDED"
    assert batch.states_entered() == BATCH_PATH
    assert batch.summary is not None
    assert batch.summary["path"] == "batch"
    assert batch.summary["status"] == "PARTIAL"  # three lines rejected
    counts = batch.summary["counts"]
    assert (counts["accepted"], counts["rejected"], counts["ok"], counts["error"]) == (45, 3, 45, 0)
    assert [job["status"] for job in batch.summary["jobs"]] == ["Completed"] * 3  # 45 records, at most 20 per job
    assert all(job["recordCount"] >= OFFLINE_QUOTAS["min_records_per_job"] for job in batch.summary["jobs"])
    assert_every_prompt_accounted_once(batch, len(big))
    assert_one_job_per_shard(batch)
    assert {result["id"] for result in batch.results} == {f"p{number}" for number in range(45)}
    assert all(result["answer"].startswith("You asked: ") and result["reasoning"] for result in batch.results)
    # The execution's output is collect's small result, not the run's state.
    assert batch.output is not None
    assert set(batch.output) == {"runId", "status", "path", "counts", "summary", "results"}

    assert on_demand.status == "SUCCEEDED"
    assert on_demand.states_entered() == ["Begin", "Prepare", "Route", "OnDemand", "Collect", "Ended", "Done"]
    assert on_demand.summary is not None
    assert on_demand.summary["path"] == "on_demand"
    assert on_demand.summary["status"] == "SUCCEEDED"
    assert on_demand.jobs == []
    assert_every_prompt_accounted_once(on_demand, len(small))
    # Every Converse call carried the guardrail the chat stack publishes (read from SSM at deploy).
    configs = [request["guardrailConfig"] for request in pipeline.bedrock.converse_requests]
    assert len(configs) == len(small)
    assert {(c["guardrailIdentifier"], c["guardrailVersion"]) for c in configs} == {
        (LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION)
    }

    # Nothing accepted, nothing answered: a FAILED summary, and a failed execution (as README promises).
    assert_failed_with_its_summary(empty, pipeline.bucket)
    assert empty.states_entered() == ["Begin", "Prepare", "Route", "Collect", "Ended", "SummaryFailed"]
    assert empty.summary is not None
    assert empty.summary["path"] == "empty"
    assert empty.results == []
    assert empty.jobs == []
    assert_every_prompt_accounted_once(empty, len(bad))

    assert pipeline.bedrock.create_calls == 3
    assert sorted(pipeline.executions()) == sorted([batch.run_id, on_demand.run_id, empty.run_id])


def test_the_local_runners_model_and_guardrail_serve_the_pipeline(offline_batch_template: dict[str, Any]) -> None:
    model = build_model("offline")
    with OfflinePipeline(offline_batch_template, stage=OFFLINE_STAGE, model=model) as pipeline:
        small = pipeline.run("inbox/guarded.jsonl", jsonl(*prompts(2), json.dumps({"prompt": "Say forbidden."})))
        large = pipeline.run("inbox/large.jsonl", jsonl(*prompts(6)))

    assert (small.status, large.status) == ("SUCCEEDED", "SUCCEEDED")
    assert small.summary is not None
    assert small.summary["path"] == "on_demand"
    finish = [result["finish_reason"] for result in small.results]
    assert finish == ["stop", "stop", "content_filter"]  # the word-list guardrail intervened on the last one
    assert large.summary is not None
    assert large.summary["path"] == "batch"
    assert large.summary["counts"]["ok"] == 6


def test_every_job_carries_its_run_the_stage_the_source_keys_hash_and_the_cost_tags(
    pipeline: OfflinePipeline,
) -> None:
    key = "inbox/team-a/Q3 données (final).jsonl"
    other = "inbox/team-b/other.jsonl"

    runs = [pipeline.run(key, jsonl(*prompts(25))), pipeline.run(other, jsonl(*prompts(8)))]

    bedrock = boto3.client("bedrock", region_name=REGION)
    for run, source_key in zip(runs, (key, other), strict=True):
        assert run.status == "SUCCEEDED", (run.error, run.cause)
        assert run.jobs
        assert_one_job_per_shard(run)
        expected = {
            "run": run.run_id,
            "stage": OFFLINE_STAGE,
            # SHA-256 of the key, computed by the state machine (States.Hash): the key itself is in no tag.
            "source": hashlib.sha256(source_key.encode()).hexdigest(),
            **OFFLINE_COST_TAGS,
        }
        for job in run.jobs:
            listed = bedrock.list_tags_for_resource(resourceARN=job.arn)["tags"]
            assert {tag["key"]: tag["value"] for tag in listed} == expected
            assert len(listed) == len(expected)
    assert len(runs[0].jobs) == 2  # 25 records, at most 20 per job


def test_files_outside_the_inbox_and_the_pipelines_own_writes_start_nothing(pipeline: OfflinePipeline) -> None:
    for key in ("work/x/records.jsonl", "results/x/summary.json", "inbox-old/a.jsonl", "notes.jsonl"):
        dropped = pipeline.drop(key, jsonl(*prompts(6)))
        assert dropped.run_id is None
        assert dropped.deliveries == []  # the EventBridge pattern never matched: nothing reached the queue
    assert pipeline.executions() == []


# --- how jobs end ------------------------------------------------------------------------------------

SHARD_ZERO = range(13)  # 25 records in two shards: 13 + 12


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        (JobScenario(status="Completed", failed_records=2), {"ok": 11, "error": 2, "missing": 0}),
        (JobScenario(status="PartiallyCompleted", unprocessed_records=4), {"ok": 9, "error": 0, "missing": 4}),
        (
            JobScenario(status="Failed", message="Internal error: the model failed"),
            {"ok": 0, "error": 0, "missing": 13},
        ),
        (JobScenario(status="Stopped", unprocessed_records=10), {"ok": 3, "error": 0, "missing": 10}),
        (JobScenario(status="Expired", message="Scheduled but not started in time"), {"ok": 0, "missing": 13}),
    ],
    ids=lambda value: value.status if isinstance(value, JobScenario) else None,
)
@pytest.mark.row(22)
def test_each_terminal_status_of_a_job_keeps_the_other_shards(
    pipeline: OfflinePipeline, scenario: JobScenario, expected: dict[str, int]
) -> None:
    pipeline.bedrock.scenario = shard_scenario(scenario)
    source = prompts(25)

    run = pipeline.run("inbox/statuses.jsonl", jsonl(*source))

    assert run.status == "SUCCEEDED"
    assert run.summary is not None
    first, second = run.summary["jobs"]
    assert (first["status"], second["status"]) == (scenario.status, "Completed")
    assert first["message"] == scenario.message
    by_shard = [result for result in run.results if result["source"]["line"] - 1 in SHARD_ZERO]
    others = [result for result in run.results if result["source"]["line"] - 1 not in SHARD_ZERO]
    statuses = [result["status"] for result in by_shard]
    assert {status: statuses.count(status) for status in expected} == expected
    assert [result["status"] for result in others] == ["ok"] * 12  # the other shard is never discarded
    if scenario.status in ("Failed", "Expired", "Stopped", "PartiallyCompleted"):
        assert any(reason.startswith(f"shard 0: job {scenario.status}") for reason in run.summary["reasons"])
    assert_every_prompt_accounted_once(run, len(source))
    assert_one_job_per_shard(run)
    # Each job was polled once InProgress, then once more to its end.
    assert [job.checks for job in run.jobs] == [1, 1]


@pytest.mark.row(21)
def test_a_throttled_submit_is_retried_and_creates_exactly_one_job(pipeline: OfflinePipeline) -> None:
    pipeline.bedrock.create_errors = ["ThrottlingException", "ServiceQuotaExceededException"]

    run = pipeline.run("inbox/throttled.jsonl", jsonl(*prompts(8)))

    assert run.status == "SUCCEEDED"
    assert pipeline.bedrock.create_calls == 3  # two refusals, then the job: always the same token
    assert len(run.jobs) == 1
    assert run.summary is not None
    assert run.summary["status"] == "SUCCEEDED"
    assert run.summary["counts"]["ok"] == 8


@pytest.mark.row(21)
def test_a_submit_that_keeps_failing_ends_its_shard_with_the_aws_error_name(pipeline: OfflinePipeline) -> None:
    pipeline.bedrock.create_errors = ["ValidationException"]  # not retried

    run = pipeline.run("inbox/refused.jsonl", jsonl(*prompts(8)))

    assert_failed_with_its_summary(run, pipeline.bucket)
    assert run.jobs == []
    assert run.summary is not None
    (job,) = run.summary["jobs"]
    assert job["status"] == "SubmitFailed"
    assert job["jobArn"] is None
    assert job["message"].startswith("Bedrock.ValidationException: ValidationException (simulated)")
    assert run.summary["status"] == "FAILED"
    assert {result["error"]["code"] for result in run.results} == {"SubmitFailed"}


def test_a_status_check_that_keeps_failing_ends_its_shard_and_keeps_the_job(pipeline: OfflinePipeline) -> None:
    pipeline.bedrock.status_errors = ["ThrottlingException", "AccessDeniedException"]  # retried, then not

    run = pipeline.run("inbox/unreadable.jsonl", jsonl(*prompts(6)))

    assert_failed_with_its_summary(run, pipeline.bucket)  # no prompt answered
    (job,) = run.jobs
    assert job.checks == 0  # the job exists (and is billed): collect still reads whatever it wrote
    assert run.summary is not None
    (outcome,) = run.summary["jobs"]
    assert (outcome["status"], outcome["jobArn"]) == ("PollFailed", job.arn)
    assert outcome["message"].startswith("status check failed: Bedrock.AccessDeniedException: ")
    assert {result["error"]["code"] for result in run.results} == {"PollFailed"}


@pytest.mark.row(22)
def test_a_job_that_never_ends_stops_at_the_lap_limit_and_reports_the_run_overdue(
    pipeline: OfflinePipeline,
) -> None:
    pipeline.bedrock.scenario = lambda _request: JobScenario(polls=10_000)
    moto_patches.waits.clear()
    moto_patches.task_timeouts.clear()

    run = pipeline.run("inbox/stuck.jsonl", jsonl(*prompts(6)))

    assert_failed_with_its_summary(run, pipeline.bucket)  # every prompt missing
    (job,) = run.jobs
    assert job.status == "InProgress"
    assert job.checks == OFFLINE.poll_lap_limit == 30
    assert run.summary is not None
    (outcome,) = run.summary["jobs"]
    assert outcome["status"] == "PollLimit"
    assert outcome["message"] == f"job still InProgress after {OFFLINE.poll_lap_limit} status checks"
    assert [result["status"] for result in run.results] == ["missing"] * 6
    # Every lap waited for the job's event the reconcile interval (no retry happened, no Wait state ran): what a
    # deployed run would take when no event comes.
    assert set(moto_patches.task_timeouts) == {float(OFFLINE.poll_interval_seconds)}
    assert moto_patches.waits == []
    metrics = boto3.client("cloudwatch", region_name=REGION).list_metrics(
        Namespace=f"GptOssBedrock/{OFFLINE_STAGE}", MetricName="RunsOverdue"
    )["Metrics"]
    assert [metric["Dimensions"] for metric in metrics] == [
        [{"Name": "StateMachine", "Value": pipeline.state_machine_arn}]
    ]


# --- failures and duplicates ----------------------------------------------------------------------


def test_a_run_whose_every_prompt_fails_writes_its_summary_then_fails_the_execution(
    pipeline: OfflinePipeline,
) -> None:
    pipeline.bedrock.scenario = lambda _request: JobScenario(status="Failed", message="Internal error")

    run = pipeline.run("inbox/all-lost.jsonl", jsonl(*prompts(25)))

    assert_failed_with_its_summary(run, pipeline.bucket)
    assert run.states_entered() == ["Begin", "Prepare", "Route", "Shards", "Collect", "Ended", "SummaryFailed"]
    assert run.summary is not None
    assert run.summary["counts"]["missing"] == 25
    assert [result["status"] for result in run.results] == ["missing"] * 25
    assert_every_prompt_accounted_once(run, 25)


def test_a_partial_run_ends_its_execution_succeeded(pipeline: OfflinePipeline) -> None:
    run = pipeline.run("inbox/some-lost.jsonl", jsonl(*prompts(25)) + "{not json\n")

    assert run.summary is not None
    assert run.summary["status"] == "PARTIAL"
    assert run.status == "SUCCEEDED"
    assert run.states_entered() == BATCH_PATH


def test_a_failed_task_still_writes_a_summary_and_fails_the_execution(pipeline: OfflinePipeline) -> None:
    # One record larger than the 20 kB file quota: no plan can split the run, so prepare fails.
    source = [*prompts(5), json.dumps({"prompt": "x" * 30_000})]

    run = pipeline.run("inbox/huge.jsonl", jsonl(*source))

    assert run.status == "FAILED"
    assert run.error == "InfeasiblePlan"
    assert run.states_entered() == ["Begin", "Prepare", "CollectFailure", "RunFailed"]
    assert run.summary is not None
    assert run.summary["status"] == "FAILED"
    assert run.summary["path"] is None
    assert any("InfeasiblePlan" in reason for reason in run.summary["reasons"])
    assert run.jobs == []


@pytest.mark.row(16)
def test_a_duplicate_event_starts_no_second_run_and_a_new_version_does(pipeline: OfflinePipeline) -> None:
    first = pipeline.drop("inbox/twice.jsonl", jsonl(*prompts(8)))
    assert first.run_id is not None
    pipeline.wait(first.run_id)

    # SQS delivers at least once: the same message again, then the same object version in a new message.
    again = pipeline.deliver(pipeline.delivered)
    assert again == [{"batchItemFailures": []}]
    assert pipeline.executions() == [first.run_id]
    assert pipeline.bedrock.create_calls == 1

    second = pipeline.drop("inbox/twice.jsonl", jsonl(*prompts(9)))
    assert second.run_id not in (None, first.run_id)
    assert pipeline.wait(str(second.run_id)).status == "SUCCEEDED"
    assert sorted(pipeline.executions()) == sorted([first.run_id, str(second.run_id)])


# --- the history budget the lap limit rests on -----------------------------------------------------


def test_one_poll_lap_writes_the_events_the_lap_limit_is_computed_with(pipeline: OfflinePipeline) -> None:
    # Before the overdue check (lap 2 offline) and after it: the overdue report happens once, not per lap.
    short, long = len(pipeline.run_shard(3)), len(pipeline.run_shard(7))
    assert (long - short) / 4 == EVENTS_PER_POLL_LAP
    fixed = short - 3 * EVENTS_PER_POLL_LAP
    assert 0 < fixed <= SHARD_FIXED_EVENTS


def test_the_functions_share_one_environment_set_once_for_the_pipeline(
    offline_batch_template: dict[str, Any],
) -> None:
    """No invocation swaps os.environ (other threads read it): the template's variables hold for the pipeline."""
    before = dict(os.environ)
    with OfflinePipeline(offline_batch_template, stage=OFFLINE_STAGE) as running:
        assert os.environ["STAGE"] == OFFLINE_STAGE
        assert os.environ["MODEL_ID"] == DeploymentConfig.from_context(dict(OFFLINE_CONTEXT)).batch.model_id
        assert "AWS_LAMBDA_FUNCTION_NAME" not in os.environ
        during = dict(os.environ)
        run = running.run("inbox/env/one.jsonl", '{"prompt": "hi"}\n')
        assert run.status == "SUCCEEDED"
        assert dict(os.environ) == during
    assert dict(os.environ) == before


def test_two_functions_that_disagree_on_a_variable_cannot_share_the_process(
    offline_batch_template: dict[str, Any],
) -> None:
    template = copy.deepcopy(offline_batch_template)
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    functions[0]["Properties"]["Environment"]["Variables"]["STAGE"] = "another"
    with pytest.raises(ValueError, match="STAGE"), OfflinePipeline(template, stage=OFFLINE_STAGE):
        pass
