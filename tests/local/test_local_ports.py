"""A port the local runner cannot listen on is refused at once, before any synthesis, naming the port and its flag."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from local.chat_server import GatewayServer
from local.cli import main
from local.harness import S3Endpoint
from local.services import PortUnavailable

pytestmark = pytest.mark.enable_socket


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.fixture
def synthesized(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each synthesis the command starts (none should)."""
    calls: list[object] = []

    def synthesize(*arguments: object, **keywords: object) -> None:
        calls.append(arguments)
        raise AssertionError("synthesized although a port is busy")

    monkeypatch.setattr("local.templates.synthesize", synthesize)
    return calls


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["serve", "--port", "{busy}"], "--port"),
        (["up", "--port", "{busy}", "--s3-port", "0"], "--port"),
        (["up", "--port", "0", "--s3-port", "{busy}"], "--s3-port"),
    ],
    ids=["serve --port", "up --port", "up --s3-port"],
)
def test_a_busy_port_is_refused_before_synthesizing(
    command: list[str],
    flag: str,
    busy_port: int,
    synthesized: list[object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    code = main([argument.format(busy=busy_port) for argument in command])
    seconds = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1
    assert seconds < 2
    assert synthesized == []
    assert f"port {busy_port}" in err
    assert "in use" in err
    assert f"{flag} " in err  # the flag that changes it
    assert "Traceback" not in err


def test_the_same_port_twice_is_refused_before_synthesizing(
    synthesized: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["up", "--port", str(port), "--s3-port", str(port)]) == 1
    err = capsys.readouterr().err
    assert synthesized == []
    assert f"port {port}" in err
    assert "--port" in err
    assert "--s3-port" in err


def test_a_port_taken_between_the_check_and_the_start_is_named_too(busy_port: int) -> None:
    # The check ran, then something else took the port: each server still says which port and what for.
    with pytest.raises(PortUnavailable, match=f"port {busy_port} .*S3 endpoint.*in use") as s3:
        S3Endpoint(busy_port, purpose="the S3 endpoint")
    assert s3.value.port == busy_port
    with pytest.raises(PortUnavailable, match=f"port {busy_port} .*chat API.*in use") as chat:
        GatewayServer(lambda *_: None, port=busy_port)  # type: ignore[arg-type]
    assert chat.value.port == busy_port
