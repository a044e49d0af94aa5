"""The one module that imports the MQTT client library (paho-mqtt 2.1); everything else gets plain objects.

paho runs the network loop on its own thread: every callback given to MqttLink is called on that thread.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

PROTOCOLS = ("auto", "5", "3.1.1")
# CONNACK "unsupported protocol version": what a 3.1.1-only broker answers a v5 CONNECT with (paho maps it to 0x84).
_UNSUPPORTED_PROTOCOL = 0x84
DEFAULT_SESSION_EXPIRY_S = 86_400
_KEEPALIVE_TIMEOUT = "Keep alive timeout"  # paho's reason when no packet came for a keepalive
_FALLBACKS_LOGGED: set[str] = set()  # brokers whose lack of v5 was logged at WARNING by this process
_FALLBACKS_LOCK = threading.Lock()


# Bytes read from the socket at once. paho reads each packet in three recv calls and one select(); a consumer of
# small QoS 1 messages spends most of its time there (measured: bench/mqtt_receive.py).
_READ_SIZE = 65536
_PUBACK_HEADER = bytes([int(paho.PUBACK), 2])


class _Client(paho.Client):
    """paho's client with a leaner receive path: buffered reads, PUBLISH parsed without a Properties object when it
    carries none, and acks sent in one write. Overrides paho 2.1 internals (`loop_read`, `_handle_publish`,
    `_sock_close`), so paho is pinned to 2.1.*; tests/integration/test_mqtt_receive.py checks the wire behaviour.

    deliver: gets each QoS 0/1 PUBLISH as an InboundMessage, without paho's MQTTMessage and its on_message
    dispatch (per-topic callbacks, message_callback_add, are not called; MqttLink uses none). QoS 2 keeps paho's
    path, on_message included.
    """

    def __init__(self, *args: Any, deliver: Callable[[InboundMessage], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._bad_packet_logged = False
        self._deliver = deliver

    def _sock_close(self) -> None:
        super()._sock_close()
        self._rbuf.clear()  # a new connection starts on a packet boundary

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read what the socket has (one recv) and handle every whole packet in it; keep the partial tail."""
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = self._sock_recv(_READ_SIZE)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError as err:
            self._easy_log(paho.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        buf = self._rbuf
        buf += data
        size = len(buf)
        pos = 0
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while size - pos >= 2:
            # Remaining length: 1 to 4 bytes of 7 bits each, low first, the last without the high bit.
            length, mult, i, more = 0, 1, pos + 1, True
            while more and i < size:
                byte = buf[i]
                length += (byte & 127) * mult
                mult *= 128
                i += 1
                more = bool(byte & 128)
                if more and i - pos > 4:
                    rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
                    break
            if rc or more or size - i < length:
                break  # a protocol error, or the packet is not whole yet
            self._in_packet = {
                "command": buf[pos],
                "have_remaining": 1,
                "remaining_count": list(buf[pos + 1 : i]),
                "remaining_mult": mult,
                "remaining_length": length,
                "packet": bytes(buf[i : i + length]),  # type: ignore[typeddict-item]
                "to_process": 0,
                "pos": 0,
            }
            pos = i + length
            try:
                rc = self._packet_handle()
            except (struct.error, IndexError, ValueError, KeyError) as exc:
                # A packet paho cannot parse would otherwise end its network thread: drop the connection instead.
                if not self._bad_packet_logged:
                    self._bad_packet_logged = True
                    log.error(
                        "MQTT broker %s:%s sent a packet that cannot be parsed (%s: %s); dropping the connection and "
                        "reconnecting (logged once per client)",
                        self._host,
                        self._port,
                        type(exc).__name__,
                        exc,
                    )
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
            if rc or self._sock is None:
                break
        if self._sock is not None:
            del buf[:pos]
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        with self._msgtime_mutex:
            self._last_msg_in = paho.time_func()
        if rc:
            return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        packet = self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        v5 = self._protocol == paho.MQTTv5
        if qos > 1 or len(packet) < 2:
            return super()._handle_publish()  # QoS 2 keeps paho's state machine; paho judges a short packet
        end = 2 + ((packet[0] << 8) | packet[1])
        topic = bytes(packet[2:end])
        if len(topic) != end - 2 or (not v5 and not topic):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        mid = 0
        if qos:
            if len(packet) < end + 2:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            mid = (packet[end] << 8) | packet[end + 1]
            end += 2
        if v5:
            if len(packet) <= end:
                return MQTTErrorCode.MQTT_ERR_PROTOCOL  # v5 requires the properties length
            if packet[end] == 0:
                end += 1  # no properties: the usual case, and paho's Properties() costs ~15 µs to build
            else:
                _props, props_len = Properties(PacketTypes.PUBLISH).unpack(packet[end:])  # type: ignore[no-untyped-call]
                end += props_len
        # What paho's dispatch does for on_message, minus the MQTTMessage: the topic decoded (invalid UTF-8 raises,
        # as MQTTMessage.topic does: loop_read then drops the connection), the call under its callback lock, an
        # exception logged and raised.
        inbound = InboundMessage(topic.decode(), bytes(packet[end:]), qos, bool(header & 0x01), mid)
        with self._in_callback_mutex:
            try:
                self._deliver(inbound)
            except Exception as err:
                self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                if not self.suppress_exceptions:
                    raise
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: Sequence[int]) -> None:
        """Queue one PUBACK per mid as a single write (manual-ack QoS 1 messages)."""
        if mids:
            data = b"".join(_PUBACK_HEADER + mid.to_bytes(2, "big") for mid in mids)
            self._packet_queue(int(paho.PUBACK), data, 0, 0)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where the broker is, how to log in and how to behave while it is away."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    keepalive_s: int = 30
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # Skips the check that the broker's certificate names its host (paho's tls_insecure_set), nothing else.
    tls_insecure: bool = False
    protocol: str = "auto"  # "auto": MQTT v5, falling back to 3.1.1 when the broker refuses v5
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S  # v5, persistent sessions only
    # QoS>0 messages paho keeps in memory (in flight or waiting for the broker); 0 = unbounded.
    max_queued_messages: int = 10_000
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    reconnect_jitter: float = 0.2

    def __post_init__(self) -> None:
        where = f"MQTT settings for {self.host}:{self.port}"
        if not self.host:
            raise ValueError("MQTT settings: no host")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"{where}: port must be 1..65535, got {self.port!r}")
        if not 0 <= self.keepalive_s <= 65535:
            raise ValueError(f"{where}: keepalive must be 0..65535 s, got {self.keepalive_s!r}")
        if self.password is not None and not self.username:
            raise ValueError(f"{where}: a password needs a username")
        if (self.ca_file or self.cert_file or self.key_file or self.tls_insecure) and not self.tls:
            raise ValueError(f"{where}: TLS options given but TLS is off; use an mqtts:// URL or tls=True")
        if self.key_file and not self.cert_file:
            raise ValueError(f"{where}: key_file given without cert_file")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"{where}: protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if not 0 <= self.session_expiry_s <= 2**32 - 1:
            raise ValueError(f"{where}: session expiry must be 0..4294967295 s, got {self.session_expiry_s!r}")
        if self.max_queued_messages < 0:
            raise ValueError(f"{where}: max_queued_messages must be >= 0, got {self.max_queued_messages!r}")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(
                f"{where}: reconnect delays need 0 < min <= max, got {self.reconnect_min_s!r}, {self.reconnect_max_s!r}"
            )
        if not 0 <= self.reconnect_jitter < 1:
            raise ValueError(f"{where}: reconnect jitter must be in [0, 1), got {self.reconnect_jitter!r}")

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> MqttSettings:
        """Parse mqtt://user:pass@host:port (mqtts:// for TLS); keyword arguments set any other field."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"MQTT URL {url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"MQTT URL {url!r}: no host")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ValueError(f"MQTT URL {url!r}: invalid port") from exc
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"MQTT settings: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})"
            )
        values: dict[str, Any] = {
            "host": parts.hostname,
            "port": port,
            "username": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "tls": tls,
        }
        values.update(overrides)
        return cls(**values)

    def backoff_s(self, failures: int, rng: Callable[[], float] = random.random) -> float:
        """Return the wait before the next connect after failures failed attempts: doubling, capped, jittered."""
        base = min(self.reconnect_max_s, self.reconnect_min_s * 2.0 ** min(failures, 30))
        return float(base * (1 + self.reconnect_jitter * (2 * rng() - 1)))

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


class InboundMessage(NamedTuple):
    """A received message, detached from the client library (a named tuple: one is made per message received)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


@dataclass(frozen=True, slots=True)
class Will:
    """Message the broker publishes for us if we vanish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


class PublishHandle:
    """Tracks one publish until the broker acknowledged or refused it."""

    def __init__(self, info: paho.MQTTMessageInfo, *, queued: bool = True) -> None:
        self._info = info
        self._done = threading.Event()
        self._ok = False
        self._reason = "" if queued else "queue full"
        self.queued = queued
        if not queued:
            self._done.set()

    @property
    def mid(self) -> int:
        """Message id (meaningless when not queued)."""
        return int(self._info.mid)

    @property
    def done(self) -> bool:
        """Whether the broker answered (or the publish was refused locally)."""
        return self._done.is_set()

    @property
    def ok(self) -> bool:
        """Whether the broker accepted the message (False until it did)."""
        return self._ok

    @property
    def reason(self) -> str:
        """Why the message was refused ('queue full', or the broker's reason), '' otherwise."""
        return self._reason

    def _resolve(self, ok: bool, reason: str) -> None:
        self._ok, self._reason = ok, reason
        self._done.set()

    def wait(self, timeout_s: float) -> bool:
        """Block until the broker acknowledged (QoS1) or sent (QoS0); return whether it accepted in time."""
        return self._done.wait(timeout_s) and self._ok


PublishDone = Callable[[int, bool, str], None]


class MqttLink:
    """A connection to the broker that reconnects by itself (jittered backoff) and resubscribes after each connect.

    Callbacks (on_message, on_connect, on_publish_done) run on paho's network thread; keep them short.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        will: Will | None = None,
        persistent_session: bool = False,
        manual_ack: bool = False,
        on_message: Callable[[InboundMessage], None] | None = None,
        on_connect: Callable[[], None] | None = None,
        on_publish_done: PublishDone | None = None,
        max_inflight: int = 100,
        receive_maximum: int | None = None,
    ) -> None:
        if receive_maximum is not None and not 1 <= receive_maximum <= 65535:
            raise ValueError(f"MQTT receive maximum must be 1..65535, got {receive_maximum!r}")
        self._receive_maximum = receive_maximum
        self.settings = settings
        self.client_id = client_id
        self._persistent = persistent_session
        self._v5 = settings.protocol != "3.1.1"
        self._client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if self._v5 else not persistent_session,
            protocol=paho.MQTTv5 if self._v5 else paho.MQTTv311,
            manual_ack=manual_ack,
            deliver=self._deliver,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(settings.max_queued_messages)
        self._set_delay(settings.reconnect_min_s)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                self._client.tls_set(
                    ca_certs=settings.ca_file,
                    certfile=settings.cert_file,
                    keyfile=settings.key_file,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"MQTT {settings}: cannot load the TLS files ({exc})") from exc
            if settings.tls_insecure:
                self._client.tls_insecure_set(True)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._filters: list[tuple[str, int]] = []
        self._message_listeners = [on_message] if on_message is not None else []
        self._connect_listeners = [on_connect] if on_connect is not None else []
        self._publish_listeners = [on_publish_done] if on_publish_done is not None else []
        self._connected = threading.Event()
        self._client.on_pre_connect = self._handle_pre_connect
        self._client.on_connect = self._handle_connect
        self._client.on_connect_fail = self._handle_connect_fail
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message  # QoS 2 (paho's own state machine)
        self._client.on_publish = self._handle_publish
        self._lock = threading.Lock()
        self._stopping = False
        # Reconnect state (network thread only): attempts since the last good connect, outage start.
        self._attempts = 0
        self._ever_connected = False
        self._down_since: float | None = None
        self._down_reason = ""
        self._logged_protocol = False
        # "auto" falling back: _falling_back while the next attempt speaks 3.1.1 after a refusal; _probing while it
        # tries 3.1.1 because a v5 CONNECT went unanswered (kept only if that attempt connects); _connack: whether
        # the broker answered the current attempt.
        self._falling_back = False
        self._probing = False
        self._connack = False
        self._v5_connect: tuple[Any, Any, Any] | None = None
        self._shared: bool | None = None
        self._logged_refusals: set[str] = set()
        self._queue_full_logged = False
        # Handles by mid until the broker answers; `early` holds answers that beat the handle's registration.
        self._handles: dict[int, PublishHandle] = {}
        self._early: dict[int, tuple[bool, str]] = {}
        self._counts: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self._refused_connects: Counter[str] = Counter()

    # ---- listeners (register before start) -------------------------------------------------------------------

    def add_message_listener(self, callback: Callable[[InboundMessage], None]) -> None:
        """Also call callback with every received message (on the network thread)."""
        self._message_listeners.append(callback)

    def add_connect_listener(self, callback: Callable[[], None]) -> None:
        """Also call callback after every successful connect (on the network thread)."""
        self._connect_listeners.append(callback)

    def on_publish_done(self, callback: PublishDone) -> None:
        """Call callback(mid, ok, reason) when the broker accepts or refuses a publish (on the network thread)."""
        self._publish_listeners.append(callback)

    # ---- state -----------------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the link is up right now."""
        return self._connected.is_set()

    @property
    def protocol(self) -> str:
        """The MQTT version spoken: '5' or '3.1.1'."""
        return "5" if self._v5 else "3.1.1"

    @property
    def shared_subscriptions(self) -> bool | None:
        """Whether the broker takes `$share/<group>/` filters (None before the first connect). When it does not (MQTT
        3.1.1, or a v5 broker that says so) such filters are subscribed without the prefix: every subscriber gets
        every message."""
        return self._shared

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since start: connects, disconnects, refused publishes by reason, queue-full refusals, ..."""
        with self._lock:
            return {
                "connects": self._counts["connects"],
                "disconnects": self._counts["disconnects"],
                "connect_failures": self._counts["connect_failures"],
                "refused_connects": dict(self._refused_connects),
                "refused_publishes": dict(self._refused),
                "queue_full": self._counts["queue_full"],
                "awaiting_ack": len(self._handles),
                "protocol": self.protocol,
            }

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # ---- network thread --------------------------------------------------------------------------------------

    def _set_delay(self, delay_s: float) -> None:
        # paho waits `min` before its next attempt (reconnect_delay_set resets its doubling), so setting min = max
        # before every wait gives our own jittered schedule. paho annotates int; it does float arithmetic with it.
        self._client.reconnect_delay_set(cast(int, delay_s), cast(int, delay_s))

    def _handle_pre_connect(self, _client: paho.Client, _userdata: Any) -> None:
        self._attempts += 1
        self._connack = False

    def _failed(self, reason: str) -> None:
        """One connect attempt failed or the link dropped: log once per outage, arm the next (jittered) wait."""
        self._count("connect_failures")
        delay = self.settings.backoff_s(self._attempts)
        self._set_delay(delay)
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_reason = reason
            if not self._ever_connected:
                log.warning(
                    "cannot connect to MQTT broker %s (%s); retrying with backoff up to %.0f s",
                    self.settings,
                    reason,
                    self.settings.reconnect_max_s,
                )

    def _handle_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        self._failed("connection refused or unreachable")

    def _handle_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connack = True
        if reason.is_failure:
            if self._probing:
                self._end_probe(kept=False)
            if self._v5 and self.settings.protocol == "auto" and reason.value == _UNSUPPORTED_PROTOCOL:
                self._fall_back_to_311()
                return
            name = str(reason)
            with self._lock:
                self._refused_connects[name] += 1
            if name not in self._logged_refusals:
                self._logged_refusals.add(name)
                log.error(
                    "MQTT broker %s refused the connection of %r: %s; check the username, password and ACL. "
                    "Retrying with backoff up to %.0f s",
                    self.settings,
                    self.client_id,
                    name,
                    self.settings.reconnect_max_s,
                )
            return  # paho disconnects next; _handle_disconnect arms the backoff
        self._attempts = 0
        self._falling_back = False
        if self._probing:
            self._end_probe(kept=True)
        self._set_delay(self.settings.reconnect_min_s)
        available = getattr(props, "SharedSubscriptionAvailable", 1) if self._v5 else 0
        self._shared = bool(available)
        if not self._logged_protocol:
            self._logged_protocol = True
            log.info("connected to MQTT broker %s as %r (MQTT %s)", self.settings, self.client_id, self.protocol)
        elif self._down_since is not None:
            log.info(
                "MQTT broker %s is back after %.1f s (down: %s)",
                self.settings,
                time.monotonic() - self._down_since,
                self._down_reason,
            )
        self._down_since = None
        self._ever_connected = True
        self._count("connects")
        with self._lock:
            filters = self._effective(self._filters)
        if filters:
            client.subscribe(filters)
        self._connected.set()
        for callback in list(self._connect_listeners):
            try:
                callback()
            except Exception:
                log.exception("MQTT %s: on_connect listener failed", self.settings)

    def _effective(self, filters: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """filters as subscribed: without a `$share/<group>/` prefix when the broker has no shared subscriptions."""
        if self._shared is not False:
            return list(filters)
        out: list[tuple[str, int]] = []
        for f, qos in filters:
            parts = f.split("/", 2)
            plain = parts[2] if f.startswith("$share/") and len(parts) == 3 else f
            if (plain, qos) not in out:
                out.append((plain, qos))
        return out

    def _speak_311(self) -> None:
        # paho 2.1 has no public way to change a client's protocol; it downgrades 3.1.1 to 3.1 by setting the same
        # attributes (paho is pinned to 2.1.*). The next attempt, after the usual backoff, speaks 3.1.1.
        client = self._client
        if self._v5_connect is None:
            self._v5_connect = (
                getattr(client, "_clean_session", None),
                client._clean_start,
                client._connect_properties,
            )
        self._v5 = False
        client._protocol = paho.MQTTv311
        client._clean_session = not self._persistent
        client._clean_start = paho.MQTT_CLEAN_START_FIRST_ONLY
        client._connect_properties = None

    def _fall_back_to_311(self) -> None:
        self._speak_311()
        self._falling_back = True
        self._set_delay(self.settings.reconnect_min_s)
        # Once per broker and process at WARNING: every link of a process (a collector's resume makes a new one)
        # falls back, and the first line said it all.
        where = str(self.settings)
        with _FALLBACKS_LOCK:
            first = where not in _FALLBACKS_LOGGED
            _FALLBACKS_LOGGED.add(where)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "MQTT broker %s does not speak MQTT v5; falling back to MQTT 3.1.1",
            self.settings,
        )

    def _end_probe(self, *, kept: bool) -> None:
        """A 3.1.1 attempt after an unanswered v5 CONNECT ended: keep 3.1.1 if it connected, else speak v5 again."""
        self._probing = False
        if kept:
            log.warning(
                "MQTT broker %s did not answer an MQTT v5 CONNECT but accepts MQTT 3.1.1; staying on MQTT 3.1.1",
                self.settings,
            )
            return
        saved = self._v5_connect
        if saved is not None:
            client = self._client
            self._v5 = True
            client._protocol = paho.MQTTv5
            client._clean_session, client._clean_start, client._connect_properties = saved

    def _handle_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        was_up = self._connected.is_set()
        self._connected.clear()
        if self._stopping:
            log.info("disconnected from MQTT broker %s", self.settings)
            return
        if self._falling_back and not was_up:
            return  # the broker closes after refusing v5; the next attempt (armed already) speaks 3.1.1
        if not was_up and not self._connack and str(reason) == _KEEPALIVE_TIMEOUT:
            # A whole keepalive without a CONNACK on an open connection. Some 3.1.1 brokers (amqtt 0.12 for one)
            # never answer a v5 CONNECT that carries properties: try 3.1.1 once. (A connection merely closed
            # before the CONNACK is a broker going away, not one that cannot read v5.)
            if self._probing:
                self._end_probe(kept=False)
            elif self._v5 and self.settings.protocol == "auto":
                self._speak_311()
                self._probing = True
        if was_up:
            self._count("disconnects")
            log.warning(
                "lost MQTT broker %s (%s); reconnecting with backoff up to %.0f s",
                self.settings,
                reason,
                self.settings.reconnect_max_s,
            )
            self._down_since = time.monotonic()
            self._down_reason = str(reason)
        self._failed(str(reason))

    def _handle_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._deliver(InboundMessage(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid))

    def _deliver(self, inbound: InboundMessage) -> None:
        for callback in self._message_listeners:
            callback(inbound)

    def _handle_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode, _props: Any) -> None:
        # Runs while paho holds its message lock: never call into paho from here, take only our own lock.
        ok = not reason.is_failure
        text = "" if ok else str(reason)
        if not ok:
            with self._lock:
                self._refused[text] += 1
                first = self._refused[text] == 1
            if first:
                log.error(
                    "MQTT broker %s refused a publish of %r: %s (reason 0x%02x); not stored by the broker. "
                    "Further %r refusals are only counted (link.stats)",
                    self.settings,
                    self.client_id,
                    text,
                    reason.value,
                    text,
                )
        with self._lock:
            handle = self._handles.pop(mid, None)
            if handle is None:
                self._early[mid] = (ok, text)
        if handle is not None:
            handle._resolve(ok, text)
        for callback in self._publish_listeners:
            try:
                callback(mid, ok, text)
            except Exception:
                log.exception("MQTT %s: on_publish_done listener failed", self.settings)

    # ---- caller's thread -------------------------------------------------------------------------------------

    def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        """Subscribe now (if connected) and after every reconnect."""
        with self._lock:
            self._filters.extend((f, qos) for f in filters)
        if self.connected:
            self._client.subscribe(self._effective([(f, qos) for f in filters]))

    def start(self) -> None:
        """Connect in the background; the link keeps reconnecting until stop()."""
        if self._v5:
            props: Properties | None = None
            if self._persistent or self._receive_maximum is not None:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                if self._persistent:
                    props.SessionExpiryInterval = self.settings.session_expiry_s
                if self._receive_maximum is not None:
                    # How many QoS 1 messages the broker may have in flight to us: a consumer that acks only after
                    # its store wrote sizes this to its batch, so the broker keeps the batch coming.
                    props.ReceiveMaximum = self._receive_maximum
            self._client.connect_async(
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive_s,
                clean_start=not self._persistent,
                properties=props,
            )
        else:
            self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected; return whether it happened in time."""
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> PublishHandle:
        """Queue a message; QoS>0 messages are kept (up to max_queued_messages) and sent once the broker is back.

        A message refused because the queue is full gets a handle with queued=False; nothing is raised.
        """
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            with self._lock:
                self._counts["queue_full"] += 1
                first = not self._queue_full_logged
                self._queue_full_logged = True
            if first:
                log.warning(
                    "MQTT %s: %d messages already queued for the broker; refusing more until it drains "
                    "(counted in link.stats['queue_full'])",
                    self.settings,
                    self.settings.max_queued_messages,
                )
            return PublishHandle(info, queued=False)
        handle = PublishHandle(info)
        if qos == 0 and info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            handle._resolve(False, paho.error_string(info.rc))
            return handle
        with self._lock:
            self._queue_full_logged = False
            early = self._early.pop(handle.mid, None)
            if early is None:
                self._handles[handle.mid] = handle
        if early is not None:
            handle._resolve(*early)
        return handle

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual-ack links only)."""
        self._client.ack(mid, qos)

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge received QoS 1 messages, in this order, in one write (manual-ack links only)."""
        if self._client._manual_ack:
            self._client.ack_many(mids)

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Optionally publish a last retained message, then disconnect cleanly."""
        if final is not None and self.connected:
            self.publish(final[0], final[1], qos=1, retain=True).wait(2.0)
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
