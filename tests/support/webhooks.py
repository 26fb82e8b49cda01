"""Webhook receivers for tests: a real HTTP server on loopback that records what it is sent
and answers the statuses it is told to, and a resolver that stands in for DNS and records
what it was asked."""

from __future__ import annotations

import ipaddress
import socket
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook as Verifier

from taskapi.webhooks import delivery

WEBHOOKS = "/api/v1/webhooks"


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: str

    def verified_by(self, secret: str) -> dict[str, Any]:
        """The body, if `secret` verifies its signature (standardwebhooks raises if not)."""
        payload: dict[str, Any] = Verifier(secret).verify(self.body, self.headers)
        return payload


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    """Statuses to answer, in order; 204 once used up."""
    location: str | None = None
    """Sent with a 3xx answer."""

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@dataclass
class FakeDns:
    """Host names to addresses, instead of DNS; `asked` lists every host looked up."""

    names: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def resolve(self, host: str, _port: int) -> list[delivery.IPAddress]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"{host} does not resolve")
        return [ipaddress.ip_address(address) for address in self.names[host]]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
