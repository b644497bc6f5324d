"""Safe downloads of an upload's `source` URL.

Only http(s); every address a request would reach is checked after DNS resolution
and on every redirect (followed by hand, at most MAX_REDIRECTS), and the connection
goes to exactly the addresses that were checked (the resolver below is the only one
the connector uses, and it returns only checked addresses), so a DNS answer that
changes between check and connect cannot slip a private address in. The body is
streamed under a byte cap and the whole download under one time limit. Every
failure is InvalidInput with a message a client can act on."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from core.errors import InvalidInput

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
_USER_AGENT = "gazou (image fetch for an upload)"


@dataclass(frozen=True, slots=True)
class Fetched:
    """A downloaded body and what the server said about it."""

    data: bytes
    url: str  # the final URL, after redirects
    filename: str | None
    content_type: str | None


class BlockedAddress(OSError):
    """A host resolved to an address uploads may not reach."""


def address_allowed(address: str) -> bool:
    """Whether `address` is a public unicast address (not private, loopback,
    link-local, multicast, reserved, unspecified or shared)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


class CheckedResolver(AbstractResolver):
    """Resolves with the system resolver and refuses the whole answer if any address
    in it is not allowed; what it returns is what the connector connects to."""

    def __init__(self, is_allowed: Callable[[str], bool] = address_allowed) -> None:
        self._inner = ThreadedResolver()
        self._is_allowed = is_allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not self._is_allowed(result["host"]):
                raise BlockedAddress(f"{host} resolves to a private or reserved address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: str, is_allowed: Callable[[str], bool] | None) -> str:
    """The URL if it is http(s) with a host, and not a literal blocked address
    (literal IPs never reach a resolver)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidInput(f"Invalid source URL: {url[:200]}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise InvalidInput("The source URL must be an http:// or https:// URL")
    if is_allowed is not None:
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return url  # a name: the resolver checks what it resolves to
        if not is_allowed(host):
            raise InvalidInput("The source URL points to a private or reserved address")
    return url


def _blocked(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, BlockedAddress):
            return True
        seen.add(id(current))
        nested = getattr(current, "os_error", None)
        current = (
            nested
            if isinstance(nested, BaseException)
            else (current.__cause__ or current.__context__)
        )
    return False


def _filename(url: str) -> str | None:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name[:200] or None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise InvalidInput(f"The source URL's file is larger than {_mb(max_bytes)} MB")
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise InvalidInput(f"The source URL's file is larger than {_mb(max_bytes)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}"


async def fetch_url(
    url: str,
    *,
    max_bytes: int,
    time_limit: float,
    allow_private: bool = False,
    is_allowed: Callable[[str], bool] = address_allowed,
) -> Fetched:
    """Download `url` under the rules above; InvalidInput on any refusal or failure.
    `allow_private` turns the address checks off (tests, closed networks);
    `is_allowed` is the address rule (the tests stand a loopback host in for a
    public one with it)."""
    rule = None if allow_private else is_allowed
    connector_args: dict[str, Any] = {"use_dns_cache": False, "force_close": True}
    if rule is not None:
        connector_args["resolver"] = CheckedResolver(rule)
    try:
        async with asyncio.timeout(time_limit):
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**connector_args),
                headers={"User-Agent": _USER_AGENT, "Accept": "image/*"},
                auto_decompress=True,
                trust_env=False,
            ) as session:
                current = _check_url(url, rule)
                for _ in range(MAX_REDIRECTS + 1):
                    async with session.get(current, allow_redirects=False) as response:
                        if response.status in _REDIRECTS:
                            location = response.headers.get("Location")
                            if not location:
                                raise InvalidInput("The source URL redirects nowhere")
                            current = _check_url(urljoin(current, location), rule)
                            continue
                        if response.status != 200:
                            raise InvalidInput(f"The source URL answered HTTP {response.status}")
                        data = await _read_capped(response, max_bytes)
                        return Fetched(
                            data, current, _filename(current), response.headers.get("Content-Type")
                        )
                raise InvalidInput(f"The source URL redirects more than {MAX_REDIRECTS} times")
    except TimeoutError:
        raise InvalidInput(
            f"The source URL took longer than {time_limit:g} s to download"
        ) from None
    except aiohttp.ClientError as exc:
        if _blocked(exc):
            raise InvalidInput("The source URL points to a private or reserved address") from None
        raise InvalidInput(f"Could not download the source URL: {exc.__class__.__name__}") from None
