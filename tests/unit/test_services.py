"""Helpers that start local services: port allocation."""

from __future__ import annotations

import socket

from launcher.services import free_port, free_ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    for port in [*ports[:5], free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
