"""The HTTP server around the app: aiohttp's, with limits on slow and idle clients.

aiohttp closes a connection that waits for a request longer than its keep-alive
timeout (counted from the connection, then from each response), and bounds a
request head's size (8190 bytes a line, 128 headers), but it keeps any number of
idle connections and gives a head as long as an idle connection. Here, with the
settings of the same names:
- a request's head must be complete within HEADER_TIMEOUT_SECONDS of a fresh
  connection, or of the first bytes of the next request on a kept-alive one, so a
  client that sends nothing and a slowloris trickling header bytes are both closed;
- a kept-alive connection idles at most KEEPALIVE_TIMEOUT_SECONDS between requests;
- at most MAX_IDLE_CONNECTIONS connections wait for a request at once: past it the
  one idle longest is closed. Every socket is a file descriptor, and once they run
  out accept() fails ("out of system resource") and the server answers nobody.
A connection whose head is complete is busy until its response is written; what
the handlers read of its body is capped by each dialect (api/forms.py)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from core.settings import Settings


class _Handler(RequestHandler):
    """One connection: aiohttp's protocol, telling its server when it idles."""

    __slots__ = ("_server",)

    def __init__(self, manager: _Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._close_idle_by(self._loop.time() + self._server.header_timeout)
        self._server.idles(self)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # a whole head arrived: busy until its response is written
            self._server.busy(self)
        elif self._waiter is not None and data:  # part of a head: it gets the header timeout
            self._close_idle_by(self._loop.time() + self._server.header_timeout)

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        resp, reset = await super().finish_response(request, resp, start_time)
        if resp.keep_alive and not reset:
            self._server.idles(self)
        return resp, reset

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server.busy(self)
        super().connection_lost(exc)

    def _close_idle_by(self, when: float) -> None:
        """Close the connection at `when` if it is still waiting for a head then
        (aiohttp's keep-alive timer; never moved later)."""
        if self._keepalive_handle is not None:
            if when >= self._next_keepalive_close_time:
                return
            self._keepalive_handle.cancel()
        self._next_keepalive_close_time = when
        self._keepalive_handle = self._loop.call_at(when, self._process_keepalive)


class _Server(web.Server):
    """aiohttp's connection factory, making _Handlers and keeping their idle ones in
    the order they became idle."""

    def __init__(self, *args: Any, header_timeout: float, max_idle: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_idle = max_idle
        self._idle: OrderedDict[_Handler, None] = OrderedDict()

    def __call__(self) -> _Handler:
        return _Handler(self, loop=self._loop, **self._kwargs)

    def idles(self, handler: _Handler) -> None:
        """`handler` waits for a request; past the cap, close the longest idle."""
        self._idle[handler] = None
        self._idle.move_to_end(handler)
        while len(self._idle) > self.max_idle:
            oldest, _ = self._idle.popitem(last=False)
            oldest.force_close()

    def busy(self, handler: _Handler) -> None:
        """`handler` is serving a request (or gone)."""
        self._idle.pop(handler, None)


class _Runner(web.AppRunner):
    __slots__ = ("_settings",)

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5,
            keepalive_timeout=settings.keepalive_timeout,
        )
        self._settings = settings

    async def _make_server(self) -> web.Server:
        # aiohttp builds its Server after the app's startup; rebuild it as a _Server
        # with the very same arguments.
        base = await super()._make_server()
        return _Server(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            header_timeout=self._settings.header_timeout,
            max_idle=self._settings.max_idle_connections,
            **base._kwargs,
        )


def make_runner(app: web.Application, settings: Settings) -> web.AppRunner:
    """The runner `bot.py serve` (and the connection tests) serve `app` with:
    aiohttp's AppRunner with the slow and idle client limits of `settings`."""
    return _Runner(app, settings)
