"""Prometheus exposition over a tiny HTTP server, shared by every component: /metrics and /healthz.

`LatencyHistogram` counts observations in plain ints (cheap enough for every poll or batch); `histogram_family`
exports one. `serve_metrics` serves any `Exposition` (an object with `exposition(accept) -> (body, type)`, e.g. a
prometheus_client registry wrapper) and a `HealthCheck` from the running event loop; `ThreadedMetricsServer` runs
the same server on an event loop of its own, for components that are not asyncio programs. The server answers
GET/HEAD only, bounds the request head (size, header count, time), sheds load over max_connections and closes
every connection after one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import pairwise
from typing import Final, Protocol

from prometheus_client.core import HistogramMetricFamily

log = logging.getLogger(__name__)

# Seconds: operations that take milliseconds when well, 1 s and above when stalled.
DEFAULT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    """Counts observations (seconds) in fixed buckets with plain ints; cheap enough for every poll."""

    __slots__ = ("_counts", "_sum", "bounds")

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or any(b != b or b == float("inf") for b in bounds):
            raise ValueError(f"histogram buckets must be finite numbers, at least one; got {buckets!r}")
        if any(a >= b for a, b in pairwise(bounds)):
            raise ValueError(f"histogram buckets must increase strictly; got {buckets!r}")
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation; a value equal to a bound falls in that bound's bucket (le is inclusive)."""
        self._counts[bisect_left(self.bounds, seconds)] += 1
        self._sum += seconds

    def cumulative(self) -> list[tuple[float, int]]:
        """Return (upper bound, observations <= bound) per bucket, ending with (+Inf, count)."""
        counts = list(self._counts)  # one copy, so a concurrent observe cannot make buckets disagree
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self._counts)

    @property
    def sum(self) -> float:
        """Sum of the observations so far, in seconds."""
        return self._sum


def histogram_family(name: str, help_text: str, histogram: LatencyHistogram) -> HistogramMetricFamily:
    """Export a LatencyHistogram as a Prometheus histogram family."""
    buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in histogram.cumulative()]
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=histogram.sum)


class Exposition(Protocol):
    """What serve_metrics serves at /metrics."""

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """Render the metrics for an Accept header; return (body, content type)."""
        ...


HealthCheck = Callable[[], tuple[bool, Mapping[str, object]]]


# ---- HTTP -----------------------------------------------------------------------------------------------------

MAX_HEAD_BYTES: Final = 8192
MAX_HEADERS: Final = 64
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    extra: tuple[tuple[str, str], ...] = ()


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class MetricsServer:
    """A running /metrics and /healthz endpoint on the event loop; close() stops it and its connections."""

    def __init__(
        self,
        metrics: Exposition,
        health: HealthCheck,
        *,
        head_timeout_s: float,
        write_timeout_s: float,
        max_connections: int,
        component: str = "shopfloor",
    ) -> None:
        self.component = component
        self.metrics = metrics
        self.health = health
        self.head_timeout_s = head_timeout_s
        self.write_timeout_s = write_timeout_s
        self.max_connections = max_connections
        self.host = ""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()  # what is failing now, so each failure is logged once

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0: any free port; self.port is the bound one)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD_BYTES)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("%s metrics: serving http://%s:%d/metrics and /healthz", self.component, self.host, self.port)

    async def close(self) -> None:
        """Stop listening and end every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        if len(self._connections) > self.max_connections:
            # Shed load: every slot is taken, maybe by slow clients.
            self._connections.discard(task)
            writer.transport.abort()
            return
        try:
            try:
                # One deadline for the whole head: a client dripping a byte a second cannot hold a slot longer.
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.head_timeout_s)
                method, path, headers = _parse_head(head)
                response = self._respond(method, path, headers)
            except TimeoutError:
                response, method = _text(408, "request head not complete in time\n"), "GET"
            except asyncio.LimitOverrunError:
                response, method = _text(431, f"request head over {MAX_HEAD_BYTES} bytes\n"), "GET"
            except asyncio.IncompleteReadError:
                return  # the client went away mid-request
            except _BadRequest as exc:
                response, method = _text(exc.status, f"{exc}\n"), "GET"
            await self._send(writer, response, head_only=method == "HEAD")
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                # Let the transport hand the rest of the response to the kernel, but not for ever.
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (Exception, asyncio.CancelledError):
                writer.transport.abort()

    async def _send(self, writer: asyncio.StreamWriter, response: _Response, *, head_only: bool) -> None:
        lines = [
            f"HTTP/1.1 {response.status} {_REASONS[response.status]}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{k}: {v}" for k, v in response.extra),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(response.body)
        await asyncio.wait_for(writer.drain(), self.write_timeout_s)

    def _respond(self, method: str, path: str, headers: Mapping[str, str]) -> _Response:
        if method not in ("GET", "HEAD"):
            return _Response(405, b"only GET and HEAD\n", extra=(("Allow", "GET, HEAD"),))
        if path == "/metrics":
            try:
                body, content_type = self.metrics.exposition(headers.get("accept", ""))
            except Exception as exc:
                self._failed(
                    "metrics", f"{self.component} metrics: collecting metrics failed; /metrics answers 500", exc
                )
                return _text(500, f"collecting metrics failed: {type(exc).__name__}: {exc}\n")
            self._recovered("metrics", f"{self.component} metrics: collecting metrics works again")
            return _Response(200, body, content_type)
        if path == "/healthz":
            return self._healthz()
        if path == "/":
            return _text(200, f"shopfloor {self.component}: /metrics (Prometheus), /healthz\n")
        return _text(404, "not found; try /metrics or /healthz\n")

    def _healthz(self) -> _Response:
        try:
            ok, details = self.health()
            payload = {"status": "ok" if ok else "unhealthy", **{k: v for k, v in details.items() if k != "status"}}
            body = json.dumps(payload, default=str).encode()
        except Exception as exc:
            self._failed("health", f"{self.component} metrics: the health check failed; /healthz answers 503", exc)
            ok, body = False, json.dumps({"status": "error", "reason": f"health check failed: {exc!r}"}).encode()
        else:
            self._recovered("health", f"{self.component} metrics: the health check works again")
        return _Response(200 if ok else 503, body, "application/json")

    def _failed(self, what: str, message: str, exc: Exception) -> None:
        if what not in self._failing:
            self._failing.add(what)
            log.error("%s (%s: %s)", message, type(exc).__name__, exc, exc_info=exc)

    def _recovered(self, what: str, message: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            log.info(message)


def _text(status: int, text: str) -> _Response:
    return _Response(status, text.encode())


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Split a request head into (method, path without query, lower-cased headers); raise _BadRequest."""
    lines = head.decode("latin-1").split("\r\n")[:-2]
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _BadRequest(400, "malformed request line; expected e.g. 'GET /metrics HTTP/1.1'")
    if len(lines) - 1 > MAX_HEADERS:
        raise _BadRequest(431, f"more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    return parts[0], parts[1].partition("?")[0], headers


async def serve_metrics(
    host: str,
    port: int,
    metrics: Exposition,
    health: HealthCheck,
    *,
    head_timeout_s: float = 5.0,
    write_timeout_s: float = 10.0,
    max_connections: int = 16,
    component: str = "shopfloor",
) -> MetricsServer:
    """Serve /metrics and /healthz on host:port from the running event loop; return the started server."""
    server = MetricsServer(
        metrics,
        health,
        head_timeout_s=head_timeout_s,
        write_timeout_s=write_timeout_s,
        max_connections=max_connections,
        component=component,
    )
    await server.start(host, port)
    return server


class ThreadedMetricsServer:
    """serve_metrics on an event loop of its own thread, for components that are not asyncio programs.

    The metrics and the health check are then called on that thread: they must be thread-safe.
    """

    def __init__(self, metrics: Exposition, health: HealthCheck, *, component: str = "shopfloor") -> None:
        self.metrics = metrics
        self.health = health
        self.component = component
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: MetricsServer | None = None

    @property
    def port(self) -> int:
        """The bound port (0 before start)."""
        return self._server.port if self._server is not None else 0

    def start(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        """Listen on host:port (0: any free port) and return once bound; raise OSError if it cannot bind."""
        if self._thread is not None:
            raise RuntimeError(f"{self.component} metrics server already started")
        loop = asyncio.new_event_loop()
        started: Future[MetricsServer] = Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = loop.run_until_complete(
                    serve_metrics(host, port, self.metrics, self.health, component=self.component)
                )
            except Exception as exc:
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(server)
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=run, name=f"{self.component}-metrics", daemon=True)
        thread.start()
        try:
            self._server = started.result(timeout_s)
        except BaseException:
            thread.join(timeout_s)
            raise
        self._loop, self._thread = loop, thread

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving and end the loop's thread."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is None or thread is None or server is None:
            return
        self._loop = self._thread = None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout_s)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)


__all__ = [
    "DEFAULT_BUCKETS",
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "Exposition",
    "HealthCheck",
    "LatencyHistogram",
    "MetricsServer",
    "ThreadedMetricsServer",
    "histogram_family",
    "serve_metrics",
]
