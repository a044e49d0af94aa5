"""Run the API with uvicorn in a background thread (demo, end-to-end tests), with a way to stop it."""

from __future__ import annotations

import contextlib
import threading
import time

import uvicorn
from fastapi import FastAPI

GRACE_S = 3  # seconds open requests get to finish when the server stops


class ServerError(RuntimeError):
    """The API server did not start."""


def _run(server: uvicorn.Server) -> None:
    # uvicorn exits when it cannot bind; serve() notices the dead thread and raises ServerError.
    with contextlib.suppress(SystemExit):
        server.run()


def serve(
    app: FastAPI, host: str, port: int, *, log_level: str = "warning", start_timeout_s: float = 10.0
) -> tuple[uvicorn.Server, threading.Thread]:
    """Start app on host:port in a daemon thread and wait until it listens; stop it with stop(server, thread)."""
    # Open event streams (boards) would hold a graceful shutdown for ever: give them a few seconds, then close them.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=GRACE_S
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_run, args=(server,), name=f"api-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise ServerError(
                f"API server on {host}:{port} did not start within {start_timeout_s} s"
                " (port in use? see the log above); not serving"
            )
        time.sleep(0.02)
    return server, thread


def stop(server: uvicorn.Server, thread: threading.Thread, timeout_s: float = 10.0) -> None:
    """Ask the server to finish its requests and exit; wait for its thread."""
    server.should_exit = True
    thread.join(timeout_s)
