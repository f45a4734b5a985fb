"""Run local servers in background threads, and wait in the foreground until the user stops them."""

from __future__ import annotations

import signal
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

ServerT = TypeVar("ServerT", bound=socketserver.BaseServer)
# How often a serving thread checks whether it was asked to stop.
POLL_INTERVAL_SECONDS = 0.1


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
