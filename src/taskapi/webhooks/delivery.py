"""Sending one delivery: the Standard Webhooks signature, where a URL may point, and one
HTTP attempt that connects only to the address it checked.

SSRF: the host is resolved once per attempt, every address it resolves to must be public
(not loopback, private, link-local — cloud metadata among them — multicast, reserved or
otherwise non-global; an IPv6 address that carries an IPv4 one, as NAT64 and 6to4 do, is
judged as that IPv4 address, see `is_public`), and the request then goes to the checked
address itself, with the name in `Host` and in TLS (SNI and certificate check), so a second
DNS answer cannot redirect it. Redirects are never
followed, the whole attempt has 10 s, and at most 1 KiB of the answer is read.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
ATTEMPT_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 1024
USER_AGENT = "taskapi-webhooks/1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, *, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_in_use: Sequence[str], *, message_id: str, timestamp: int, body: str
) -> str:
    """One signature per secret, space-separated: during a rotation a receiver holding
    either secret verifies the delivery."""
    return " ".join(
        sign(secret, message_id=message_id, timestamp=timestamp, body=body)
        for secret in secrets_in_use
    )


class TargetRefused(Exception):
    """The URL may not be called: it resolves to a non-public address, or not at all."""


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NEVER_PUBLIC_IPV6 = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    ipaddress.IPv6Network("2001::/32"),
    ipaddress.IPv6Network("::/96"),
)


def is_public(address: IPAddress) -> bool:
    """An IPv6 address that carries an IPv4 one reaches that IPv4 address through a
    translator or tunnel, so the stdlib's verdict on the IPv6 address says nothing: an
    IPv4-mapped address (::ffff:0:0/96), one of the NAT64 well-known prefix (64:ff9b::/96,
    RFC 6052, the IPv4 address in its last 32 bits) and a 6to4 one (2002::/16, bits 16-48)
    are judged as the IPv4 address they carry.

    Refused whatever they carry: the NAT64 local-use prefix (64:ff9b:1::/48, RFC 8215),
    which translates into the operator's own networks, with the IPv4 address at a place
    the operator chooses; Teredo (2001::/32), whose client address is whatever NAT the
    client sits behind and which no receiver needs; and the deprecated IPv4-compatible
    addresses (::/96, RFC 4291), which some stacks still tunnel to their IPv4 address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC_IPV6):
            return False
        carried = _carried_ipv4(address)
        if carried is not None:
            address = carried
    return address.is_global and not address.is_multicast


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address the host resolves to (tests replace this to stand in for DNS)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def checked_address(url: httpx.URL, *, allow_private: bool) -> IPAddress:
    """The address to connect to for `url`: TargetRefused unless every address its host
    resolves to is public (or `allow_private`)."""
    host = url.host
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = await resolve_host(host, url.port or _default_port(url))
        except (OSError, UnicodeError) as error:  # UnicodeError: a name IDNA cannot encode
            raise TargetRefused(f"the host {host!r} does not resolve") from error
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    if not allow_private and not all(is_public(address) for address in addresses):
        raise TargetRefused(f"the host {host!r} is not a public address")
    return addresses[0]


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


@cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every attempt: building one loads the CA store."""
    return ssl.create_default_context()


@dataclass(frozen=True, slots=True)
class Attempt:
    status_code: int | None
    duration_ms: int
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def attempt(url: str, *, headers: dict[str, str], body: str, allow_private: bool) -> Attempt:
    """POST `body` to `url` once; never raises for what the target does."""
    started = time.monotonic()
    target = httpx.URL(url)

    def outcome(status_code: int | None, error: str | None) -> Attempt:
        return Attempt(status_code, round((time.monotonic() - started) * 1000), error)

    try:
        async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
            address = await checked_address(target, allow_private=allow_private)
            host_header = target.host if target.port is None else f"{target.host}:{target.port}"
            request_headers = {
                **headers,
                "Host": host_header,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            }
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            async with (
                httpx.AsyncClient(
                    verify=_tls(),
                    follow_redirects=False,
                    trust_env=False,
                    timeout=ATTEMPT_TIMEOUT_SECONDS,
                ) as client,
                client.stream(
                    "POST",
                    target.copy_with(host=str(address)),
                    content=body.encode(),
                    headers=request_headers,
                    extensions=extensions,
                ) as response,
            ):
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
                status_code = response.status_code
    except TargetRefused as refused:
        return outcome(None, str(refused))
    except TimeoutError:
        return outcome(None, f"no answer within {ATTEMPT_TIMEOUT_SECONDS:g} s")
    except httpx.HTTPError as error:
        return outcome(None, f"{type(error).__name__}: {error}"[:500])
    if 200 <= status_code < 300:
        return outcome(status_code, None)
    return outcome(status_code, f"answered {status_code}")
