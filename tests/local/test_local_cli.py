"""`python -m local serve` as a user runs it: it prints its URL, answers, and stops cleanly on a signal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from local.bedrock import DEFAULT_TOKENS_PER_SECOND, OfflineModel, build_model
from local.cli import main

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"Chat API on (http://127\.0\.0\.1:\d+/v1)")


def _serve(template_file: Path, stderr: IO[str], *extra: str) -> subprocess.Popen[str]:
    # A session of its own: afterwards, any process left in its group would still be findable.
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "local", "serve", "--port", "0", "--template", str(template_file), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def _url(process: subprocess.Popen[str]) -> tuple[str, list[str]]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := URL.search(line):
            return match.group(1), lines
    process.kill()
    raise AssertionError("no URL printed:\n" + "".join(lines))


def _group_is_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.enable_socket
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_answers_then_stops_cleanly_on_a_signal(
    template_file: Path, stop: signal.Signals, tmp_path: Path
) -> None:
    log = (tmp_path / "stderr.txt").open("w+")
    process = _serve(template_file, log, "--guardrail-word", "kumquat", "--tokens-per-second", "25")
    try:
        url, printed = _url(process)
        answer = httpx.post(
            f"{url}/chat/completions",
            json={"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Any kumquat facts?"}]},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["finish_reason"] == "content_filter"
        started = time.monotonic()
        process.send_signal(stop)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        log.seek(0)
        err = log.read()
        log.close()
    assert process.stdout is not None
    out = process.stdout.read()
    process.stdout.close()
    assert process.returncode == 0, err
    assert time.monotonic() - started < 5
    banner = "".join(printed) + out
    assert "'kumquat'" in banner
    assert "streams 25 tokens/s" in banner
    assert f"curl -s {url}/chat/completions" in banner
    assert f'openai.OpenAI(base_url="{url}"' in banner
    assert f"{stop.name} received: stopping." in out
    assert out.rstrip().endswith("Stopped.")
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in err
    assert _group_is_gone(process.pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=2)


def test_serve_refuses_an_unknown_backend(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--backend", "bedrock"])
    assert raised.value.code == 2
    assert "offline, openai, aws" in capsys.readouterr().err


def test_serve_explains_what_the_openai_backend_needs(template_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--backend", "openai", "--port", "0", "--template", str(template_file)]) == 1
    assert "--openai-base-url" in capsys.readouterr().err


def test_serve_explains_what_the_aws_backend_needs(template_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--backend", "aws", "--port", "0", "--template", str(template_file)]) == 1
    assert "--guardrail-id" in capsys.readouterr().err


@pytest.mark.parametrize("pace", ["-1", "fast", "nan"])
def test_serve_refuses_a_pace_that_is_not_a_number_of_tokens_a_second(
    pace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["serve", "--tokens-per-second", pace])
    assert raised.value.code == 2
    assert "--tokens-per-second" in capsys.readouterr().err


def test_the_pace_comes_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPTOSS_TOKENS_PER_SECOND", "-5")
    with pytest.raises(SystemExit) as raised:
        main(["serve"])
    assert raised.value.code == 2
    assert "must be 0 (no pause) or more" in capsys.readouterr().err


@pytest.mark.parametrize(("pace", "expected"), [(12.5, 12.5), (0, None), (None, None)])
def test_build_model_paces_the_offline_model(pace: float | None, expected: float | None) -> None:
    generator = build_model("offline", tokens_per_second=pace).generator
    assert isinstance(generator, OfflineModel)
    assert generator.tokens_per_second == expected
    default = build_model("offline").generator
    assert isinstance(default, OfflineModel)
    assert default.tokens_per_second == DEFAULT_TOKENS_PER_SECOND == 40
