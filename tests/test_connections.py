"""Slow and idle clients, and bodies past a dialect's cap, over real loopback sockets
against the server `bot.py serve` builds (api/server.py's runner around the app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from api.app import create_app
from api.server import make_runner
from core.services import Services, open_services
from tests.conftest import MEMBER, make_settings
from tests.test_cli import ROOT, child_env, free_port

MB = 1024 * 1024
# Long enough never to close a connection by itself in these tests.
LONG = "60"


@asynccontextmanager
async def serving(tmp_path: Path, **env: str) -> AsyncIterator[tuple[int, Services]]:
    """gazou's app behind the production runner on a free loopback port."""
    settings = make_settings(tmp_path / "data", RATE_LIMITS="off", **env)
    async with open_services(settings) as services:
        runner = make_runner(create_app(services), settings)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            yield runner.addresses[0][1], services
        finally:
            await runner.cleanup()


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10) -> bool:
    """True once the server closes the connection (EOF), False if it stays open."""
    try:
        return await asyncio.wait_for(reader.read(), timeout=within) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def response_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, headers = await response_head(reader)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return status, body


async def hang_up(writer: asyncio.StreamWriter) -> None:
    """Close our end and wait for it (so the server sees it before it shuts down)."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


# ---- slow and idle clients ------------------------------------------------------------


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, HEADER_TIMEOUT_SECONDS="0.5", KEEPALIVE_TIMEOUT_SECONDS=LONG) as (
        port,
        _,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader)
        await hang_up(writer)


async def test_a_slowloris_head_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path, HEADER_TIMEOUT_SECONDS="0.5", KEEPALIVE_TIMEOUT_SECONDS=LONG) as (
        port,
        _,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"X-Slow: " + b"a" * 200
        sent = 0
        with pytest.raises(ConnectionError):
            for byte in head:  # one byte every 0.05 s: 10 s for all of them
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(0.05)
                if reader.at_eof():
                    raise ConnectionResetError
        assert sent < len(head)
        await hang_up(writer)


async def test_a_kept_alive_connection_trickling_its_next_head_gets_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, HEADER_TIMEOUT_SECONDS="0.5", KEEPALIVE_TIMEOUT_SECONDS=LONG) as (
        port,
        _,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        writer.write(b"GET /hea")  # and never the rest
        assert await closed_by_server(reader)
        await hang_up(writer)


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, HEADER_TIMEOUT_SECONDS=LONG, KEEPALIVE_TIMEOUT_SECONDS="0.5") as (
        port,
        _,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTHZ)
        assert (await response(reader))[0] == 200
        assert await closed_by_server(reader)
        await hang_up(writer)


async def test_a_kept_alive_connection_within_its_timeouts_stays_open(tmp_path: Path) -> None:
    async with serving(tmp_path, HEADER_TIMEOUT_SECONDS="5", KEEPALIVE_TIMEOUT_SECONDS="5") as (
        port,
        _,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
        assert not await closed_by_server(reader, within=0.3)
        await hang_up(writer)


async def test_past_max_idle_connections_the_longest_idle_are_closed(tmp_path: Path) -> None:
    async with serving(
        tmp_path,
        HEADER_TIMEOUT_SECONDS=LONG,
        KEEPALIVE_TIMEOUT_SECONDS=LONG,
        MAX_IDLE_CONNECTIONS="5",
    ) as (port, _):
        connections = []
        for _ in range(10):  # one after the other, each idle after its answer
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
            connections.append((reader, writer))
        for reader, _ in connections[:5]:
            assert await closed_by_server(reader)
        for reader, writer in connections[5:]:
            writer.write(HEALTHZ)
            assert (await response(reader))[0] == 200
        for _, writer in connections:
            await hang_up(writer)


def _low_fd_limit() -> None:
    # In the server child only: few descriptors, as on a default `ulimit -n` of 1024
    # against 1,500 sockets, but small enough for a test.
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1024, reason="needs 1024 file descriptors"
)
async def test_many_idle_sockets_do_not_stop_healthz(tmp_path: Path) -> None:
    """300 idle sockets against a server with 256 descriptors: without the idle cap
    accept() fails ("out of system resource") and /healthz stops answering."""
    port = free_port()
    env = child_env(tmp_path / "data", PORT=str(port), MAX_IDLE_CONNECTIONS="64")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "bot.py",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_low_fd_limit,
    )
    assert proc.stdout is not None
    idle: list[asyncio.StreamWriter] = []
    try:
        while b"listening on" not in await asyncio.wait_for(proc.stdout.readline(), 15):
            pass
        for _ in range(300):
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            idle.append(writer)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(20):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as answer:
                    assert answer.status == 200
    finally:
        for writer in idle:
            await hang_up(writer)
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), 10)
        except TimeoutError:
            proc.kill()
            output, _ = await proc.communicate()
    assert b"out of system resource" not in output
    assert b"Traceback" not in output


# ---- bodies past a dialect's cap ------------------------------------------------------


def _headers_only(path: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {length}"]
    lines.append("Content-Type: multipart/form-data; boundary=b")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _token(services: Services) -> str:
    return (await services.tokens.issue(MEMBER, issued_by="t")).secret


# path, the token's header (None: no token), length, expected status, expected body check
CASES: list[
    tuple[str, Callable[[str], dict[str, str]] | None, int, int, Callable[[dict], bool]]
] = [
    (
        "/api/add",
        lambda t: {"Authorization": f"Bearer {t}"},
        5 * MB + MB,
        413,
        lambda b: "5 MB" in b["message"],
    ),
    (
        "/api/v1/images",
        lambda t: {"Authorization": t},
        3 * MB + MB,
        400,
        lambda b: b == {"message": "File too large (max 3 MB)"},
    ),
    ("/api/upload", lambda t: {"token": t}, 51 * MB, 413, lambda b: b["success"] is False),
    ("/api/1/upload", lambda t: {"X-API-Key": t}, 49 * MB, 413, lambda b: b["status_code"] == 413),
    # No key anywhere yet: the key may be in the body, but not in 49 MB of it.
    ("/api/1/upload", None, 49 * MB, 413, lambda b: b["status_code"] == 413),
]


@pytest.mark.parametrize(("path", "auth", "length", "status", "check"), CASES)
async def test_a_too_large_content_length_is_refused_before_the_body_is_sent(
    tmp_path: Path,
    path: str,
    auth: Callable[[str], dict[str, str]] | None,
    length: int,
    status: int,
    check: Callable[[dict], bool],
) -> None:
    async with serving(tmp_path) as (port, services):
        headers = auth(await _token(services)) if auth else {}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_headers_only(path, length, **headers))  # and not one byte of body
        answer, body = await response(reader)
        assert answer == status
        assert check(json.loads(body))
        await hang_up(writer)


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/add", {}, 401),
        ("/api/add", {"Authorization": "Bearer junk"}, 401),
        ("/api/v1/images", {}, 400),  # nekos.moe's "Authentication required"
        ("/api/v1/images", {"Authorization": "junk"}, 401),
        ("/api/upload", {}, 401),
        ("/api/1/upload", {"X-API-Key": "junk"}, 400),  # Chevereto's "Invalid API v1 key."
    ],
)
async def test_a_body_without_a_valid_token_is_refused_before_it_is_sent(
    tmp_path: Path, path: str, headers: dict[str, str], status: int
) -> None:
    async with serving(tmp_path) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_headers_only(path, 2 * MB, **headers))  # under every cap
        assert (await response(reader))[0] == status
        await hang_up(writer)


MULTIPART_FILE = b"--b\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\n"


@pytest.mark.parametrize(
    ("path", "auth", "opening", "status", "check"),
    [
        ("/api/add", "Bearer", MULTIPART_FILE, 413, lambda b: "5 MB" in b["message"]),
        ("/api/v1/images", "", MULTIPART_FILE, 400, lambda b: "max 3 MB" in b["message"]),
        # Keyless, urlencoded base64 text: Chevereto's cap is 5/3 of its 20 MB.
        ("/api/1/upload", None, b"source=", 413, lambda b: b["status_code"] == 413),
    ],
)
async def test_a_chunked_body_past_the_cap_is_refused_before_it_ends(
    tmp_path: Path,
    path: str,
    auth: str | None,
    opening: bytes,
    status: int,
    check: Callable[[dict], bool],
) -> None:
    async with serving(tmp_path) as (port, services):
        headers = (
            {"Authorization": f"{auth} {await _token(services)}".strip()}
            if auth is not None
            else {}
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = _headers_only(path, 0, **headers).replace(
            b"Content-Length: 0", b"Transfer-Encoding: chunked"
        )
        if not opening.startswith(b"--"):
            head = head.replace(
                b"multipart/form-data; boundary=b", b"application/x-www-form-urlencoded"
            )
        writer.write(head + b"%x\r\n%s\r\n" % (len(opening), opening))
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"A" * 64 * 1024)
        answered = asyncio.create_task(response(reader))
        sent = 0
        # 60 MB, past the largest cap by more than loopback's socket buffers hold.
        while sent < 60 * MB and not answered.done():
            writer.write(chunk)
            await writer.drain()
            sent += 64 * 1024
            await asyncio.sleep(0)
        answer, body = await answered
        assert answer == status
        assert check(json.loads(body))
        assert sent < 60 * MB
        await hang_up(writer)


# ---- Expect: 100-continue --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "length", "status"),
    [
        ("/api/add", {}, 2 * MB, 401),  # no token
        ("/api/upload", {"token": "junk"}, 2 * MB, 401),  # a bad one
        ("/api/1/upload", {"X-API-Key": "junk"}, 2 * MB, 400),
        ("/api/add", {"Authorization": "Bearer {token}"}, 6 * MB, 413),  # past Miku's 5 MB
    ],
)
async def test_a_refused_upload_waiting_on_100_continue_gets_only_the_final_answer(
    tmp_path: Path, path: str, headers: dict[str, str], length: int, status: int
) -> None:
    """No "100 Continue" for a body that will be refused: the final answer comes first,
    so the client never sends that body."""
    async with serving(tmp_path) as (port, services):
        token = await _token(services)
        headers = {k: v.format(token=token) for k, v in headers.items()}
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_headers_only(path, length, Expect="100-continue", **headers))
        first = await asyncio.wait_for(reader.readline(), timeout=10)
        assert first.split()[1] == str(status).encode(), first
        await hang_up(writer)


async def test_an_accepted_upload_gets_100_continue_then_its_answer(tmp_path: Path) -> None:
    from tests.conftest import make_image

    async with serving(tmp_path) as (port, services):
        token = await _token(services)
        body = (
            MULTIPART_FILE.replace(b"a.png", b"a.png\r\nContent-Type: image/png")
            + make_image(seed=7)
            + b"\r\n--b--\r\n"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            _headers_only(
                "/api/add", len(body), Expect="100-continue", Authorization=f"Bearer {token}"
            )
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        answer, payload = await response(reader)
        assert answer == 200, payload
        assert json.loads(payload)["filename"].endswith(".png")
        await hang_up(writer)
