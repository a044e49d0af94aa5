"""GET /v1/stream: the live board's server-sent events, masked per connection by api.policy.

First `event: snapshot` ({"machines": [...]}) or, on a reconnect whose Last-Event-ID the hub still covers, the
machines that changed since; then `event: machine` per change, `: ping` every PING_S. A viewer is sent a change only
when what it may see of the machine changed: an event that masks to what it already has would tell a tenant when
another tenant's machine changed (report by exception: a new sample marks each part made).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from api.deps import PrincipalDep
from api.live import CLOSED, RESYNC, Event, LiveHub, LiveMachine, Opening, Subscription, parse_last_event_id
from api.models import MachinePublic
from api.policy import Field, Principal, mask_machine, sees_everything, visible_fields

PING_S = 15.0
RETRY_MS = 2000
# A stream ends after this long and the browser reconnects (resuming by Last-Event-ID): a revoked key or a
# signed-out session stops receiving within this time.
MAX_STREAM_S = 600.0

router = APIRouter(prefix="/v1", tags=["live"])


def machine_dict(principal: Principal, entry: LiveMachine, now_ms: int) -> dict[str, Any]:
    """Return what principal may see of a live machine: GET /v1/machines' fields plus reason and shift."""
    view = mask_machine(principal, entry.view)
    public = MachinePublic.of_view(entry.machine, entry.name, entry.profile, view, now_ms)
    out = public.model_dump(mode="json")
    # Why a machine is UNKNOWN is part of its state: shown exactly where the state is (as mask_interval does).
    out["reason"] = entry.reason if Field.STATE in visible_fields(principal, entry.view.occupancy) else None
    shift = entry.shift
    if sees_everything(principal) and shift is not None:
        out["shift"] = {"name": shift.name, "good": shift.good, "reject": shift.reject, "oee": shift.oee}
    else:
        out["shift"] = None
    return out


def _encode(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _same_key(data: dict[str, Any]) -> str:
    """What decides whether a viewer's machine changed: everything but the age, which changes by itself."""
    return _encode({k: v for k, v in data.items() if k != "age_s"})


def sse(event: str, data: str, event_id: int | None = None) -> str:
    """Format one server-sent event (data is one line of JSON)."""
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return f"{head}data: {data}\n\n"


class _Viewer:
    """One connection's masking: what it was last sent of each machine, renderings shared per kind of viewer."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        # mask_machine depends on the role and the tenant only: viewers alike share an event's rendering.
        self.kind = (principal.role, principal.tenant)
        self.sent: dict[str, str] = {}

    def render(self, entry: LiveMachine, now_ms: int) -> tuple[str, str]:
        data = machine_dict(self.principal, entry, now_ms)
        return _same_key(data), _encode(data)

    def render_event(self, event: Event) -> tuple[str, str]:
        cached: tuple[str, str] | None = event.cache.get(self.kind)
        if cached is None:
            cached = event.cache[self.kind] = self.render(event.entry, event.at_ms)
        return cached

    def snapshot(self, opening: Opening, now_ms: int) -> str:
        machines = []
        self.sent.clear()
        for machine, entry in opening.current.items():
            key, data = self.render(entry, now_ms)
            self.sent[machine] = key
            machines.append(data)
        return sse("snapshot", '{"machines":[' + ",".join(machines) + "]}", opening.id)

    def resume(self, opening: Opening, now_ms: int) -> list[str]:
        out = []
        for machine, entry in opening.prior.items():
            self.sent[machine] = self.render(entry, now_ms)[0]
        for machine, event_id in sorted(opening.changed.items(), key=lambda kv: kv[1]):
            key, data = self.render(opening.current[machine], now_ms)
            if key != self.sent.get(machine):
                self.sent[machine] = key
                out.append(sse("machine", data, event_id))
        return out

    def change(self, event: Event) -> str | None:
        key, data = self.render_event(event)
        if key == self.sent.get(event.entry.machine):
            return None
        self.sent[event.entry.machine] = key
        return sse("machine", data, event.id)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def events(hub: LiveHub, principal: Principal, last_event_id: int | None) -> AsyncIterator[str]:
    """Yield the stream of one connection until the hub stops, the client leaves or MAX_STREAM_S passes."""
    sub: Subscription
    sub, opening = hub.subscribe(last_event_id)
    viewer = _Viewer(principal)
    loop = asyncio.get_running_loop()
    ends = loop.time() + MAX_STREAM_S
    try:
        yield f"retry: {RETRY_MS}\n\n"
        floor = opening.id  # events up to here are in the opening already
        if opening.resume:
            for chunk in viewer.resume(opening, _now_ms()):
                yield chunk
        else:
            yield viewer.snapshot(opening, _now_ms())
        while True:
            left = ends - loop.time()
            if left <= 0:
                return
            try:
                item = await asyncio.wait_for(sub.get(), timeout=min(PING_S, left))
            except TimeoutError:
                yield ": ping\n\n"
                continue
            if item == CLOSED:
                return
            if item == RESYNC:
                fresh = hub.snapshot()
                floor = fresh.id
                yield viewer.snapshot(fresh, _now_ms())
                continue
            assert isinstance(item, Event)
            if item.id <= floor:
                continue
            change = viewer.change(item)
            if change is not None:
                yield change
    finally:
        hub.unsubscribe(sub)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 503: {"description": "no live hub in this API"}},
)
async def stream(
    request: Request,
    principal: PrincipalDep,
    last_event_id: Annotated[
        str | None, Header(description="the last id received; resumes where still buffered")
    ] = None,
) -> StreamingResponse:
    """Stream live machine changes as server-sent events, masked for the caller."""
    hub: LiveHub | None = getattr(request.app.state, "live", None)
    if hub is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="live board not available in this API")
    return StreamingResponse(
        events(hub, principal, parse_last_event_id(last_event_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def include(app: FastAPI) -> None:
    """Add GET /v1/stream to app (the hub is app.state.live)."""
    app.include_router(router)
