"""The one module that imports the MQTT client library (paho-mqtt 2.x); everything else gets plain objects."""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where the broker is and how to log in."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive_s: int = 30

    @classmethod
    def from_url(cls, url: str) -> MqttSettings:
        """Parse mqtt://user:pass@host:port (mqtts:// for TLS)."""
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
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A received message, detached from the client library."""

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
    """Tracks one publish until the broker acknowledged it."""

    def __init__(self, info: paho.MQTTMessageInfo) -> None:
        self._info = info

    @property
    def mid(self) -> int:
        """Message id."""
        return int(self._info.mid)

    def wait(self, timeout_s: float) -> bool:
        """Block until the broker acknowledged (QoS1) or sent (QoS0); return whether it did in time."""
        try:
            self._info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError):
            return False
        return bool(self._info.is_published())


class MqttLink:
    """A connection to the broker that reconnects by itself and resubscribes after each connect."""

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
        max_inflight: int = 100,
    ) -> None:
        self.settings = settings
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent_session,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        if settings.username:
            self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._filters: list[tuple[str, int]] = []
        self._on_message = on_message
        self._on_connect_cb = on_connect
        self._connected = threading.Event()
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._lock = threading.Lock()
        self._stopping = False

    @property
    def connected(self) -> bool:
        """Whether the link is up right now."""
        return self._connected.is_set()

    def _handle_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s refused the connection: %s", self.settings, reason)
            return
        log.info("connected to MQTT broker %s", self.settings)
        with self._lock:
            filters = list(self._filters)
        if filters:
            client.subscribe(filters)
        self._connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _handle_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if self._stopping:
            log.info("disconnected from MQTT broker %s", self.settings)
        elif self._connected.is_set():
            log.warning("lost MQTT broker %s (%s); reconnecting", self.settings, reason)
        self._connected.clear()

    def _handle_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        self._on_message(InboundMessage(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid))

    def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        """Subscribe now (if connected) and after every reconnect."""
        with self._lock:
            self._filters.extend((f, qos) for f in filters)
        if self.connected:
            self._client.subscribe([(f, qos) for f in filters])

    def start(self) -> None:
        """Connect in the background; the link keeps reconnecting until stop()."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected; return whether it happened in time."""
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> PublishHandle:
        """Queue a message; QoS>0 messages are kept and sent once the broker is reachable."""
        return PublishHandle(self._client.publish(topic, payload, qos=qos, retain=retain))

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a received message (manual-ack links only)."""
        self._client.ack(mid, qos)

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Optionally publish a last retained message, then disconnect cleanly."""
        self._stopping = True
        if final is not None and self.connected:
            self.publish(final[0], final[1], qos=1, retain=True).wait(2.0)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
