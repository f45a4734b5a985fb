"""Run local servers in background threads, and wait in the foreground until the user stops them."""

from __future__ import annotations

import errno
import signal
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

ServerT = TypeVar("ServerT", bound=socketserver.BaseServer)
# How often a serving thread checks whether it was asked to stop.
POLL_INTERVAL_SECONDS = 0.1
HOST = "127.0.0.1"
# What listens on the ports a user chooses, in the words of the messages that name them.
CHAT_API_PURPOSE = "the chat API"
S3_ENDPOINT_PURPOSE = "the S3 endpoint"
# Pending connections a listening socket queues (socketserver's and werkzeug's default).
LISTEN_BACKLOG = 128


class PortUnavailable(OSError):
    """A loopback port nothing of ours can listen on (in use, or not allowed): which one, what for, and why."""

    def __init__(self, port: int, purpose: str, reason: OSError) -> None:
        why = "it is already in use" if reason.errno == errno.EADDRINUSE else (reason.strerror or str(reason))
        super().__init__(f"port {port} on {HOST} ({purpose}) is not available: {why}")
        self.errno = reason.errno
        self.port = port
        self.purpose = purpose


def listening_socket(port: int, purpose: str) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` (0: a free port), for a server to serve from.

    SO_REUSEADDR, as uvicorn and werkzeug set it: a port left in TIME_WAIT by a previous run is free; one
    that something listens on is not.

    Raises:
        PortUnavailable: the port cannot be listened on (the message names it and `purpose`).
    """
    listener = socket.socket()
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError as error:
        listener.close()
        raise PortUnavailable(port, purpose, error) from None
    return listener


@contextmanager
def serving(server: ServerT, name: str) -> Iterator[ServerT]:
    """Serve in a background thread for the duration of the block, then stop and join everything.

    Stopping: no new connections, the serving thread joined, and the server closed (which waits for the
    requests in flight).
    """
    thread = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL_SECONDS,), name=name)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@contextmanager
def repeating(
    tick: Callable[[], object], *, interval_seconds: float, name: str, on_error: Callable[[Exception], None]
) -> Iterator[None]:
    """Call `tick` every `interval_seconds` in a background thread for the duration of the block.

    A failing tick is reported to `on_error` (unless the block is already ending) and the next one runs
    as usual; at the end, the tick in progress finishes and the thread is joined.
    """
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_seconds):
            try:
                tick()
            except Exception as error:  # a poller keeps polling, as the service it stands in for does
                if not stop.is_set():
                    on_error(error)

    thread = threading.Thread(target=loop, name=name)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_for_stop_signal() -> signal.Signals:
    """Block until SIGINT (Ctrl-C) or SIGTERM arrives and return it; must run in the main thread.

    The previous handlers are restored afterwards, so a second Ctrl-C during shutdown interrupts as usual.
    """
    received: list[signal.Signals] = []
    stop = threading.Event()

    def on_signal(number: int, _: FrameType | None) -> None:
        received.append(signal.Signals(number))
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A timed wait lets the main thread run the Python-level signal handler promptly.
        while not stop.wait(0.2):
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return received[0]
