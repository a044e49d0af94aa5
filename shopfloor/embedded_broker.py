"""The one module that imports the embedded MQTT broker library (amqtt 0.12): an in-process broker for the demo.

amqtt speaks MQTT 3.1.1 only (a v5 CONNECT is answered "unacceptable protocol version", so MqttLink's "auto" falls
back) and has no shared subscriptions (a `$share/<group>/...` filter is accepted and never matches, so the collector
subscribes without the prefix). Three of its 3.1.1 behaviours the chain relies on are replaced here, on amqtt's own
extension points (a protocol handler subclass and a broker subclass), because amqtt 0.12.1 as shipped:

- drops an outgoing QoS 1 message that is not acknowledged within 5 s, and every unacknowledged one when its client
  disconnects, so nothing is redelivered after a reconnect (the collector acks only after its store wrote);
- sends every QoS 1 message at once (no inflight window: the collector's Receive Maximum cannot be honoured);
- delivers a QoS 0 publish at the subscription's QoS (1), which then takes a place in the window;
- sends every client, on each connect, every retained message matching any client's subscription (at QoS 0);
- never closes a connection whose keepalive expired (so a client that vanished without a FIN never gets its will),
  and keeps no messages for an anonymous client while it is away.

Here each session has its own queue: at most max_inflight QoS 1 messages are out unacknowledged, they wait for the
client's PUBACK as long as it takes, stay with the session when the client drops and are resent (DUP) first on the
next connect of the same client id with clean session off; messages for a disconnected persistent session are
queued (at most max_queued, dropping the oldest, logged once) until session_expiry_s after it left. A connection
silent for 1.5 x its keepalive is closed, which publishes its will. Sessions and retained messages live in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import hmac
import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter  # type: ignore[import-untyped]
from amqtt.broker import Broker  # type: ignore[import-untyped]
from amqtt.mqtt.constants import QOS_1  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler  # type: ignore[import-untyped]
from amqtt.mqtt.puback import PubackPacket  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin  # type: ignore[import-untyped]
from amqtt.session import OutgoingApplicationMessage, Session  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT = 1000  # as launcher.services.Mosquitto
DEFAULT_MAX_QUEUED = 100_000  # per disconnected session, as launcher.services.Mosquitto
DEFAULT_SESSION_EXPIRY_S = 86_400  # as shopfloor.mqtt.DEFAULT_SESSION_EXPIRY_S
START_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0  # a client that sends no CONNECT in this long after connecting is dropped
MAX_CONNECT_BYTES = 65_536  # a CONNECT this large is no honest client's
MQTT_311_LEVEL = 4
CONNACK_BAD_PROTOCOL = b"\x20\x02\x00\x01"  # CONNACK, "unacceptable protocol version"
STOP_TIMEOUT_S = 10.0
# amqtt's own loggers: INFO is a line per connection and more.
_LIBRARY_LOGGERS = ("amqtt", "transitions")
_SUBSCRIBING: contextvars.ContextVar[bool] = contextvars.ContextVar("subscribing", default=False)
_PUBLISH_QOS: contextvars.ContextVar[int | None] = contextvars.ContextVar("publish_qos", default=None)
_STATE = "shopfloor.embedded_broker"  # key of our per-session state in Session.attributes


class BrokerStartError(RuntimeError):
    """The embedded broker could not start (for example, its port is taken)."""


@dataclass(slots=True)
class _SessionQueue:
    """What one session has waiting for its client (pending) besides what is in flight (session.inflight_out)."""

    pending: deque[OutgoingApplicationMessage] = field(default_factory=deque)
    dropped: int = 0


def _queue_of(session: Session) -> _SessionQueue:
    state = session.attributes.get(_STATE)
    if not isinstance(state, _SessionQueue):
        state = _SessionQueue()
        session.attributes[_STATE] = state
    return state


class _Handler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's broker-side protocol handler with a QoS 1 window that keeps unacknowledged messages in the session."""

    max_inflight = DEFAULT_MAX_INFLIGHT  # set per broker (a subclass per EmbeddedBroker)

    _sender: asyncio.Task[None] | None
    _wake: asyncio.Event

    def _setup(self) -> None:
        self._sender = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        await super().start()  # runs _retry_deliveries (a no-op here)
        self._sender = asyncio.create_task(self._send_loop())

    async def stop(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and sender is not asyncio.current_task():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        await super().stop()

    async def _retry_deliveries(self) -> None:
        # amqtt resends in-flight messages through its own flow (5 s timeout, then dropped); _send_loop resends them.
        return

    def handle_read_timeout(self) -> None:
        # Keepalive expired (1.5 x the client's, see _Broker): close, so the broker publishes the will.
        writer = self.writer
        if writer is not None:
            self._loop.create_task(_close_quietly(writer))

    async def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> OutgoingApplicationMessage:
        if qos != QOS_1 or self.session is None:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        message = OutgoingApplicationMessage(None, topic, qos, data, retain)
        _queue_of(self.session).pending.append(message)
        self._wake.set()
        return message

    async def handle_puback(self, puback: PubackPacket) -> None:
        session = self.session
        packet_id = puback.variable_header.packet_id if puback.variable_header is not None else None
        if session is not None and packet_id is not None and packet_id in session.inflight_out:
            session.inflight_out.pop(packet_id).puback_packet = puback
            self._wake.set()
            return
        await super().handle_puback(puback)

    async def _send_loop(self) -> None:
        try:
            await self._send_all()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever it was, a session whose sender died would stall while connected: drop the connection,
            # the client reconnects and a new sender resends what is in flight.
            log.warning("embedded MQTT broker: sending to %r failed (%r); closing its connection", self._client(), exc)
            if self.writer is not None:
                await _close_quietly(self.writer)

    def _client(self) -> str | None:
        return self.session.client_id if self.session is not None else None

    async def _send_all(self) -> None:
        session = self.session
        if session is None:
            return
        queue = _queue_of(session)
        # What the client had not acknowledged when it dropped goes first, in order, flagged as a resend.
        for message in list(session.inflight_out.values()):
            packet = message.build_publish_packet(dup=True)
            message.publish_packet = packet
            await self._send_packet(packet)
        while True:
            while queue.pending and len(session.inflight_out) < self.max_inflight:
                message = queue.pending.popleft()
                message.packet_id = session.next_packet_id
                # In flight before it is written: if the write fails the message is resent on the next connect.
                session.inflight_out[message.packet_id] = message
                packet = message.build_publish_packet()
                message.publish_packet = packet
                await self._send_packet(packet)
            self._wake.clear()
            await self._wake.wait()


async def _close_quietly(writer: Any) -> None:
    with contextlib.suppress(Exception):
        await writer.close()


class _Auth(BaseAuthPlugin):  # type: ignore[misc]
    """Anonymous access when no users are given, else user name and password must match (constant-time compare).

    Unlike amqtt's anonymous plugin it does not flag sessions anonymous, which would make amqtt discard them.
    """

    @dataclass
    class Config:
        users: dict[str, str] | None = None

    async def authenticate(self, *, session: Session) -> bool | None:
        users: dict[str, str] | None = self.config.users
        if users is None:
            return True
        expected = users.get(session.username or "")
        given = (session.password or "").encode()
        if expected is None:
            hmac.compare_digest(given, given)  # the same work as for a known user
            return False
        return hmac.compare_digest(given, expected.encode())


class _Broker(Broker):  # type: ignore[misc]
    """amqtt's broker with the handler above, the offline queue bounded and the keepalive allowance at 1.5x."""

    handler_class: type[_Handler] = _Handler
    max_queued = DEFAULT_MAX_QUEUED

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[BrokerProtocolHandler, Session]:
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        # amqtt builds a plain handler from the CONNECT; give it our behaviour (it holds no state of its own yet).
        handler.__class__ = self.handler_class
        assert isinstance(handler, _Handler)
        handler._setup()
        session.keep_alive += (session.keep_alive + 1) // 2  # [MQTT-3.1.2-24]: one and a half keepalives
        return handler, session

    async def _handle_message_delivery(self, session: Session, handler: Any, wait_deliver: Any) -> bool:
        message = wait_deliver.result()
        token = _PUBLISH_QOS.set(getattr(message, "qos", None))
        try:
            return bool(await super()._handle_message_delivery(session, handler, wait_deliver))
        finally:
            _PUBLISH_QOS.reset(token)

    async def _broadcast_message(
        self, session: Session | None, topic: str | None, data: Any, force_qos: int | None = None
    ) -> None:
        # amqtt delivers at the subscription's QoS; MQTT at the lower of it and the publish's [MQTT-3.8.4-6]. For
        # QoS 0 and 1 that is: a QoS 0 publish goes out at QoS 0 to everyone.
        if force_qos is None and _PUBLISH_QOS.get() == 0:
            force_qos = 0
        await super()._broadcast_message(session, topic, data, force_qos)

    async def _handle_subscription(self, *args: Any, **kwargs: Any) -> None:
        token = _SUBSCRIBING.set(True)
        try:
            await super()._handle_subscription(*args, **kwargs)
        finally:
            _SUBSCRIBING.reset(token)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        # amqtt also sends, on every connect, each retained message matching any client's subscription, at QoS 0,
        # subscribed or not. MQTT sends retained messages when a subscription is made, only then.
        if _SUBSCRIBING.get():
            await super()._publish_retained_messages_for_subscription(subscription, session)

    async def _retain_broadcast_message(self, broadcast: dict[str, Any], qos: int, target_session: Session) -> None:
        # A message for a disconnected persistent session: queue it with the session (bounded), not amqtt's queue.
        queue = _queue_of(target_session)
        if len(queue.pending) >= self.max_queued:
            queue.pending.popleft()
            queue.dropped += 1
            if queue.dropped == 1:
                log.warning(
                    "embedded MQTT broker: %d messages queued for disconnected client %r; dropping the oldest "
                    "(further drops are not logged)",
                    self.max_queued,
                    target_session.client_id,
                )
        queue.pending.append(OutgoingApplicationMessage(None, broadcast["topic"], qos, broadcast["data"], False))

    async def _client_connected(self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        # amqtt parses a v5 CONNECT's properties as its payload and, when they are not empty (session expiry,
        # receive maximum), waits for bytes that never come. Read the CONNECT here first: answer a protocol level
        # other than 3.1.1's with CONNACK 0x01 and close, as [MQTT-3.1.2-2] wants, and drop a client that sends
        # no CONNECT in time or garbage instead of one.
        try:
            first = await asyncio.wait_for(_read_packet(reader), CONNECT_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, OSError):
            await _close_quietly(writer)
            return
        level = _connect_level(first)
        if level is None:
            await _close_quietly(writer)
            return
        if level != MQTT_311_LEVEL:
            with contextlib.suppress(Exception):
                writer.write(CONNACK_BAD_PROTOCOL)
                await writer.drain()
            await _close_quietly(writer)
            return
        await super()._client_connected(listener_name, _Replay(first, reader), writer)


class _Replay(ReaderAdapter):  # type: ignore[misc]
    """A reader that first returns bytes already read, then reads on."""

    def __init__(self, first: bytes, inner: ReaderAdapter) -> None:
        self._buffer = bytearray(first)
        self._inner = inner

    async def read(self, n: int = -1) -> bytes:
        if not self._buffer:
            return bytes(await self._inner.read(n))
        if n == -1:
            data = bytes(self._buffer) + bytes(await self._inner.read(-1))
        elif n <= len(self._buffer):
            data = bytes(self._buffer[:n])
            del self._buffer[:n]
            return data
        else:
            data = bytes(self._buffer) + bytes(await self._inner.read(n - len(self._buffer)))
        self._buffer.clear()
        return data

    def feed_eof(self) -> None:
        self._inner.feed_eof()


async def _read_packet(reader: ReaderAdapter) -> bytes:
    """One whole MQTT packet, raw; ValueError for a bad length or one over MAX_CONNECT_BYTES."""
    head = bytearray(await reader.read(1))
    length, multiplier = 0, 1
    for _ in range(4):
        byte = (await reader.read(1))[0]
        head.append(byte)
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            break
    else:
        raise ValueError("remaining length over 4 bytes")
    if length > MAX_CONNECT_BYTES:
        raise ValueError(f"CONNECT of {length} bytes")
    return bytes(head) + (await reader.read(length) if length else b"")


def _connect_level(packet: bytes) -> int | None:
    """The protocol level of a CONNECT packet (4: 3.1.1, 5: v5), None when packet is no CONNECT of MQTT."""
    if not packet or packet[0] != 0x10:
        return None
    start = 1
    while packet[start] & 0x80:
        start += 1
    body = packet[start + 1 :]
    # Protocol name (2-byte length, "MQTT"; "MQIsdp" for 3.1), then the level.
    if len(body) < 3:
        return None
    name_len = int.from_bytes(body[:2], "big")
    if body[2 : 2 + name_len] not in (b"MQTT", b"MQIsdp") or len(body) <= 2 + name_len:
        return None
    return body[2 + name_len]


class EmbeddedBroker:
    """An in-process MQTT 3.1.1 broker (amqtt) on its own event loop in a daemon thread; same shape as Mosquitto.

    port None (or 0) picks a free port when starting. Anonymous when users is None; otherwise only those
    user names with those passwords may connect.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_queued: int = DEFAULT_MAX_QUEUED,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        users: Mapping[str, str] | None = None,
    ) -> None:
        if not host:
            raise ValueError("embedded MQTT broker: no host to listen on")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"embedded MQTT broker: port must be 0..65535, got {port!r}")
        if not 1 <= max_inflight <= 65535:
            raise ValueError(f"embedded MQTT broker: max_inflight must be 1..65535, got {max_inflight!r}")
        if max_queued < 1:
            raise ValueError(f"embedded MQTT broker: max_queued must be at least 1, got {max_queued!r}")
        if session_expiry_s < 1:
            raise ValueError(f"embedded MQTT broker: session_expiry_s must be at least 1, got {session_expiry_s!r}")
        if users is not None:
            for name, password in users.items():
                if not isinstance(name, str) or not name or not isinstance(password, str):
                    raise ValueError("embedded MQTT broker: users must map non-empty user names to passwords")
        self.host = host
        self.port = port or 0
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.session_expiry_s = session_expiry_s
        self._users = dict(users) if users is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: _Broker | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker (the port is known once started when it was left to the system)."""
        return f"mqtt://{self.host}:{self.port}"

    def running(self) -> bool:
        """Whether the broker is serving."""
        thread = self._thread
        return self._broker is not None and thread is not None and thread.is_alive()

    def start(self) -> EmbeddedBroker:
        """Start listening; return once connections are accepted. Raise BrokerStartError naming host:port."""
        with self._lock:
            if self.running():
                return self
            for name in _LIBRARY_LOGGERS:
                library = logging.getLogger(name)
                if library.level == logging.NOTSET:
                    library.setLevel(logging.WARNING)
            loop = asyncio.new_event_loop()
            ready: threading.Event = threading.Event()
            outcome: list[BaseException | _Broker] = []
            thread = threading.Thread(
                target=self._serve, args=(loop, ready, outcome), name=f"embedded-mqtt-{self.port}", daemon=True
            )
            thread.start()
            if not ready.wait(START_TIMEOUT_S):
                raise BrokerStartError(
                    f"embedded MQTT broker on {self.host}:{self.port} did not start within {START_TIMEOUT_S:.0f} s"
                )
            result = outcome[0]
            if isinstance(result, BaseException):
                thread.join(STOP_TIMEOUT_S)
                cause = _root(result)
                hint = (
                    "; is another broker running there? Choose another port"
                    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
                    else ""
                )
                raise BrokerStartError(
                    f"embedded MQTT broker cannot listen on {self.host}:{self.port} "
                    f"({str(cause) or type(cause).__name__}){hint}"
                ) from result
            self._loop, self._thread, self._broker = loop, thread, result
        log.info(
            "embedded MQTT broker (MQTT 3.1.1, %s) listening on %s",
            "anonymous" if self._users is None else f"{len(self._users)} user(s)",
            self.url,
        )
        return self

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event, outcome: list[Any]) -> None:
        asyncio.set_event_loop(loop)
        broker: _Broker | None = None
        try:
            broker = loop.run_until_complete(self._create())
            loop.run_until_complete(broker.start())
            sockets = broker._servers["default"].instance.sockets
            self.port = int(sockets[0].getsockname()[1])
        except BaseException as exc:
            outcome.append(exc)
            ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            return
        outcome.append(broker)
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(_shutdown(broker))
            _cancel_all(loop)
            loop.close()

    async def _create(self) -> _Broker:
        handler = type("_BrokerHandler", (_Handler,), {"max_inflight": self.max_inflight})
        broker_class = type("_EmbeddedBroker", (_Broker,), {"handler_class": handler, "max_queued": self.max_queued})
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only our login check: no $SYS publisher, no per-packet loggers.
            "plugins": {f"{__name__}._Auth": {"users": self._users}},
            "timeout_disconnect_delay": 0,
            # A persistent session nobody reconnects to is forgotten after this long, as MQTT v5 clients ask of
            # Mosquitto (MqttSettings.session_expiry_s); 3.1.1 has no way to ask.
            "session_expiry_interval": self.session_expiry_s,
        }
        broker: _Broker = broker_class(config, loop=asyncio.get_running_loop())
        return broker

    def stop(self) -> None:
        """Stop serving: close every connection (no wills are sent) and the listener; idempotent, bounded."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = self._broker = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop ended already
            loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
        if thread.is_alive():
            log.error("embedded MQTT broker %s did not stop within %.0f s", self.url, STOP_TIMEOUT_S)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, _type: type[BaseException] | None, _value: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()


async def _shutdown(broker: Broker) -> None:
    await asyncio.wait_for(broker.shutdown(), STOP_TIMEOUT_S / 2)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(tasks, timeout=STOP_TIMEOUT_S / 2))


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc
