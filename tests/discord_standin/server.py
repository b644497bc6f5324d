"""A loopback stand-in for Discord that a real discord.py 2.7 bot connects to.

It serves the REST API under ``/api/v10``, the gateway websocket under ``/gateway`` and
attachment files under ``/attachments``, all on 127.0.0.1. Tests drive the bot by sending
INTERACTION_CREATE events shaped exactly as Discord sends them, and assert on the bodies
the bot sends back (interaction callbacks, follow-ups, edits, channel and DM messages).

See README.md next to this file for the scope and a usage example.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import dataclasses
import datetime
import io
import itertools
import json
import mimetypes
import re
import secrets
import time
import urllib.parse
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import yarl
from aiohttp import BodyPartReader, WSMsgType, web

with warnings.catch_warnings():
    # discord.py imports the stdlib `audioop` module, deprecated since Python 3.11 (PEP 594).
    warnings.filterwarnings("ignore", message=".*audioop.*", category=DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http

__all__ = [
    "DEFAULT_TIMEOUT",
    "ChannelSpec",
    "CommandSync",
    "DiscordStandIn",
    "Gate",
    "GuildSpec",
    "HostedAttachment",
    "InteractionCallback",
    "InteractionHandle",
    "MemberSpec",
    "RecordedRequest",
    "RoleSpec",
    "SentMessage",
    "StandInError",
    "UploadedFile",
    "UserSpec",
    "connected_bot",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
API_PREFIX = "/api/v10"
OAUTH_AUTHORIZE_PATH = "/oauth2/authorize"
OAUTH_SCOPES = ("identify", "email", "guilds", "guilds.members.read", "connections")
GATEWAY_PATH = "/gateway"
ATTACHMENT_PREFIX = "/attachments/"

DISCORD_EPOCH_MS = 1420070400000
_FIXED_BASE = (1704067200000 - DISCORD_EPOCH_MS) << 22  # snowflakes dated 2024-01-01


def _fixed_id(n: int) -> int:
    return _FIXED_BASE + n


# Message flags
EPHEMERAL = 1 << 6
LOADING = 1 << 7

# Gateway intents that change what GUILD_CREATE carries.
_INTENT_MEMBERS = 1 << 1
_INTENT_PRESENCES = 1 << 8

_DEFAULT_EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    use_application_commands=True,
    create_instant_invite=True,
    change_nickname=True,
    connect=True,
    speak=True,
).value
_DEFAULT_APP_PERMISSIONS = (
    _DEFAULT_EVERYONE_PERMISSIONS
    | discord.Permissions(manage_messages=True, manage_threads=True).value
)
_ALL_PERMISSIONS = discord.Permissions.all().value
_ADMINISTRATOR = discord.Permissions(administrator=True).value


class StandInError(AssertionError):
    """Raised when a test asks the stand-in for something Discord would not allow or deliver."""


# --------------------------------------------------------------------------------------------
# Configuration (what the fake Discord "contains")
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UserSpec:
    id: int
    name: str
    global_name: str | None = None
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclasses.dataclass(frozen=True)
class RoleSpec:
    id: int
    name: str
    permissions: int = 0
    position: int = 1

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """A guild text channel (type 0). ``nsfw=True`` makes it age-restricted."""

    id: int
    name: str
    nsfw: bool = False
    type: int = 0
    topic: str | None = None
    position: int = 0


@dataclasses.dataclass(frozen=True)
class MemberSpec:
    """A guild member. ``permissions`` overrides the computed channel permissions."""

    user: UserSpec
    role_ids: tuple[int, ...] = ()
    nick: str | None = None
    permissions: int | None = None


@dataclasses.dataclass
class GuildSpec:
    id: int
    name: str
    channels: list[ChannelSpec] = dataclasses.field(default_factory=list)
    members: list[UserSpec | MemberSpec] = dataclasses.field(default_factory=list)
    roles: list[RoleSpec] = dataclasses.field(default_factory=list)
    owner_id: int | None = None
    everyone_permissions: int = _DEFAULT_EVERYONE_PERMISSIONS
    locale: str = "en-US"

    def member(self, user_id: int) -> MemberSpec | None:
        for m in self.members:
            spec = m if isinstance(m, MemberSpec) else MemberSpec(m)
            if spec.user.id == user_id:
                return spec
        return None


# --------------------------------------------------------------------------------------------
# Records (what the bot did)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class UploadedFile:
    """A file part of a multipart body (``files[n]``), with its bytes."""

    field: str
    index: int | None
    filename: str
    content_type: str
    data: bytes


@dataclasses.dataclass
class HostedAttachment:
    """A file served by the stand-in at ``url`` (what Discord's CDN would do)."""

    id: int
    filename: str
    data: bytes
    content_type: str
    url: str
    width: int | None = None
    height: int | None = None
    ephemeral: bool = False
    description: str | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": len(self.data),
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.width is not None and self.height is not None:
            data["width"] = self.width
            data["height"] = self.height
        if self.ephemeral:
            data["ephemeral"] = True
        if self.description is not None:
            data["description"] = self.description
        return data


@dataclasses.dataclass
class _OAuthGrant:
    """What a code (then its access token) stands for."""

    user: UserSpec
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclasses.dataclass
class RecordedRequest:
    """One REST request the bot made (path is relative to ``/api/v10``)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    files: list[UploadedFile]
    authorization: str | None
    status: int = 0
    response: Any = None


@dataclasses.dataclass(eq=False)
class Gate:
    """Holds matching REST requests in flight until released (see ``DiscordStandIn.hold``)."""

    method: str
    pattern: re.Pattern[str]
    arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    released: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let the held requests (and every later one) through."""
        self.released.set()


@dataclasses.dataclass
class CommandSync:
    """One bulk overwrite of application commands (``bot.tree.sync()``); guild_id None = global."""

    guild_id: int | None
    commands: list[dict[str, Any]]

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.commands]


class SentMessage(dict[str, Any]):
    """A message the bot created, stored as Discord would return it (a plain JSON dict).

    The dict is updated in place when the bot edits the message. Extra attributes:
    ``source`` ("callback", "followup" or "channel"), ``interaction`` (the handle it answers,
    if any), ``files`` (uploaded file parts, with bytes, across creation and edits),
    ``edits`` (bodies of later edits) and ``deleted``.
    """

    def __init__(
        self, payload: Mapping[str, Any], *, source: str, interaction: InteractionHandle | None
    ) -> None:
        super().__init__(payload)
        self.source = source
        self.interaction = interaction
        self.files: list[UploadedFile] = []
        self.edits: list[dict[str, Any]] = []
        self.deleted = False

    @property
    def id(self) -> int:
        return int(self["id"])

    @property
    def channel_id(self) -> int:
        return int(self["channel_id"])

    @property
    def content(self) -> str:
        return self.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.get("embeds") or []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.get("components") or []

    @property
    def flags(self) -> int:
        return int(self.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    def iter_components(self) -> Iterator[dict[str, Any]]:
        """Every component, depth first (action rows, containers, sections, accessories)."""
        yield from _walk_components(self.components)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in self.iter_components() if "custom_id" in c]

    def component(self, custom_id: str) -> dict[str, Any] | None:
        for c in self.iter_components():
            if c.get("custom_id") == custom_id:
                return c
        return None

    def __repr__(self) -> str:
        return (
            f"<SentMessage id={self.get('id')} channel={self.get('channel_id')} "
            f"source={self.source} content={self.content!r} custom_ids={self.custom_ids()}>"
        )


def _walk_components(components: Sequence[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    for c in components:
        yield c  # type: ignore[misc]
        if isinstance(c.get("components"), list):  # action rows, containers, sections
            yield from _walk_components(c["components"])
        for key in ("accessory", "component"):  # section accessory, label child
            if isinstance(c.get(key), dict):
                yield from _walk_components([c[key]])


@dataclasses.dataclass
class InteractionCallback:
    """The bot's answer at ``POST /interactions/{id}/{token}/callback``.

    ``type``: 4 message, 5 deferred message, 6 deferred update, 7 update message,
    8 autocomplete result, 9 modal. ``data`` is the callback's ``data`` as sent.
    ``message`` is the message created (4, 5) or updated (7), live.
    """

    type: int
    data: dict[str, Any] | None
    files: list[UploadedFile]
    message: SentMessage | None
    body: dict[str, Any]

    @property
    def content(self) -> str | None:
        return None if self.data is None else self.data.get("content")

    @property
    def ephemeral(self) -> bool:
        return bool(int((self.data or {}).get("flags") or 0) & EPHEMERAL)


@dataclasses.dataclass(eq=False)
class InteractionHandle:
    """An interaction the stand-in delivered; the bot's responses are attached as they arrive."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    user_id: int
    channel_id: int
    guild_id: int | None
    message: SentMessage | None = None  # the message a component belongs to (type 3)
    callback: InteractionCallback | None = None
    followups: list[SentMessage] = dataclasses.field(default_factory=list)
    original: SentMessage | None = None  # what @original refers to
    created_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.get("data") or {}

    def __repr__(self) -> str:
        return (
            f"<InteractionHandle id={self.id} type={self.type} user={self.user_id} "
            f"callback={None if self.callback is None else self.callback.type} "
            f"followups={len(self.followups)}>"
        )


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _json(status: int, body: Any) -> web.Response:
    if status == 204 or body is None:
        return web.Response(status=204 if status < 300 else status)
    # discord.py only parses JSON when the content type is exactly "application/json".
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _error(status: int, code: int, message: str, errors: Any = None) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"message": message, "code": code}
    if errors is not None:
        body["errors"] = errors
    return status, body


def _form_error(field: str, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return _error(
        400, 50035, "Invalid Form Body", {field: {"_errors": [{"code": code, "message": message}]}}
    )


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.width, im.height
    except Exception:
        return None, None


def _as_id(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value)
    if isinstance(value, Mapping):
        return int(value["id"])
    return int(value.id)


_Handler = Callable[..., tuple[int, Any]]


class _GatewaySession:
    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.seq = 0
        self.session_id = secrets.token_hex(16)
        self.identified = False
        self.intents = 0
        self._lock = asyncio.Lock()

    @property
    def live(self) -> bool:
        return self.identified and not self.ws.closed

    async def send(self, op: int, d: Any = None, t: str | None = None) -> None:
        async with self._lock:
            s = None
            if op == 0:
                self.seq += 1
                s = self.seq
            await self.ws.send_str(json.dumps({"op": op, "d": d, "s": s, "t": t}))


# --------------------------------------------------------------------------------------------
# The stand-in
# --------------------------------------------------------------------------------------------


class DiscordStandIn:
    """A fake Discord on 127.0.0.1 (REST + gateway + attachment CDN). Use ``async with``.

    Everything has defaults: a bot user, an owner, a plain user (``standin.user``) and one
    guild (``standin.guild``) with a SFW channel (``standin.channel``) and an NSFW one
    (``standin.nsfw_channel``), all of them members.
    """

    def __init__(
        self,
        *,
        bot_user: UserSpec | None = None,
        application_id: int | None = None,
        owner: UserSpec | None = None,
        team_members: Sequence[UserSpec | tuple[UserSpec, str]] = (),
        guilds: Sequence[GuildSpec] | None = None,
        users: Sequence[UserSpec] = (),
        token: str = "standin.bot.token",
        app_permissions: int = _DEFAULT_APP_PERMISSIONS,
        interaction_deadline: float | None = None,
        client_secret: str = "standin.client.secret",
    ) -> None:
        """
        team_members: makes the application team-owned; entries are users (role "admin") or
            (user, role) with role in "admin", "developer", "read_only".
        interaction_deadline: if set, callbacks arriving later than this many seconds after
            the interaction was delivered get 404 Unknown interaction (10062), as on Discord
            (3 s there). None (default) disables the check.
        """
        self.bot_user = bot_user or UserSpec(_fixed_id(1), "gazou-standin", bot=True)
        self.application_id = application_id or self.bot_user.id
        self.owner = owner or UserSpec(_fixed_id(101), "owner", "Owner")
        self.user = UserSpec(_fixed_id(102), "alice", "Alice")
        self.team_members: list[tuple[UserSpec, str]] = [
            (m, "admin") if isinstance(m, UserSpec) else (m[0], m[1]) for m in team_members
        ]
        self.team_id = _fixed_id(900)
        self.token = token
        self.app_permissions = app_permissions
        self.interaction_deadline = interaction_deadline
        # OAuth2 (authorization-code grant): who approves on the consent screen, whether
        # they press Cancel instead, the registered redirect URIs (none: any is accepted).
        self.client_secret = client_secret
        self.oauth_user: UserSpec = self.user
        self.oauth_deny = False
        self.oauth_redirect_uris: list[str] = []
        self._oauth_codes: dict[str, _OAuthGrant] = {}
        self._oauth_tokens: dict[str, _OAuthGrant] = {}
        #: every visit of /oauth2/authorize: its query, and where it was sent
        self.authorizations: list[dict[str, str]] = []
        if guilds is None:
            guilds = [
                GuildSpec(
                    id=_fixed_id(201),
                    name="Stand-in Guild",
                    channels=[
                        ChannelSpec(_fixed_id(301), "general", nsfw=False, position=0),
                        ChannelSpec(_fixed_id(302), "after-dark", nsfw=True, position=1),
                    ],
                    members=[self.owner, self.user],
                    owner_id=self.owner.id,
                )
            ]
        self.guilds: list[GuildSpec] = list(guilds)
        for g in self.guilds:
            if g.member(self.bot_user.id) is None:
                g.members.append(self.bot_user)

        self._users: dict[int, UserSpec] = {}
        for u in (self.bot_user, self.owner, self.user, *users, *(m for m, _ in self.team_members)):
            self._users[u.id] = u
        for g in self.guilds:
            for m in g.members:
                u = m.user if isinstance(m, MemberSpec) else m
                self._users.setdefault(u.id, u)

        self._ids = itertools.count(1)
        self._channels: dict[int, tuple[GuildSpec, ChannelSpec]] = {
            c.id: (g, c) for g in self.guilds for c in g.channels
        }
        self._dm_by_user: dict[int, int] = {}
        self._dm_user_by_channel: dict[int, int] = {}
        self._closed_dms: set[int] = set()
        self._hosted: dict[int, HostedAttachment] = {}
        self._messages: dict[int, SentMessage] = {}
        self._interactions: dict[int, InteractionHandle] = {}
        self._interactions_by_token: dict[str, InteractionHandle] = {}
        self._commands: dict[int | None, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, str], int] = {}
        self._overrides: list[list[Any]] = []
        self._gates: list[Gate] = []
        self._sessions: list[_GatewaySession] = []
        self._session_seq: dict[str, int] = {}
        self._routes = self._build_routes()

        #: every REST request, in order
        self.requests: list[RecordedRequest] = []
        #: REST requests that matched no emulated route (answered 404)
        self.unknown_requests: list[RecordedRequest] = []
        #: every interaction callback, in order
        self.callbacks: list[InteractionCallback] = []
        #: every bulk command overwrite (``tree.sync``), in order
        self.command_syncs: list[CommandSync] = []
        #: every IDENTIFY payload received on the gateway
        self.identifies: list[dict[str, Any]] = []
        #: stand-in bugs (exceptions in handlers); re-raised on exit
        self.internal_errors: list[BaseException] = []
        #: the bot used to look up command schemas when commands were not synced
        self.bot: discord.Client | None = None

        self._runner: web.AppRunner | None = None
        self._base_url: yarl.URL | None = None
        self._changed: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> DiscordStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
        if self.internal_errors and exc_info[0] is None:
            raise StandInError(f"stand-in internal errors: {self.internal_errors!r}")

    async def start(self) -> None:
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = yarl.URL.build(scheme="http", host=host, port=port)

    async def close(self) -> None:
        for session in list(self._sessions):
            if not session.ws.closed:
                await session.ws.close(code=1001, message=b"stand-in shutting down")
        self._sessions.clear()
        for gate in self._gates:
            gate.release()  # a held request must not keep the server from closing
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- URLs / patching

    @property
    def base_url(self) -> yarl.URL:
        if self._base_url is None:
            raise StandInError("the stand-in is not started (use `async with DiscordStandIn()`)")
        return self._base_url

    @property
    def api_base(self) -> str:
        """Value for ``discord.http.Route.BASE``."""
        return str(self.base_url.with_path(API_PREFIX))

    @property
    def gateway_url(self) -> yarl.URL:
        """Value for ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (a yarl URL in 2.7)."""
        return self.base_url.with_scheme("ws").with_path(GATEWAY_PATH)

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at the stand-in; restore on exit."""
        route = discord.http.Route
        ws_cls = discord.gateway.DiscordWebSocket
        old_base, old_gateway = route.BASE, ws_cls.DEFAULT_GATEWAY
        route.BASE = self.api_base
        ws_cls.DEFAULT_GATEWAY = self.gateway_url
        try:
            yield
        finally:
            route.BASE = old_base
            ws_cls.DEFAULT_GATEWAY = old_gateway

    # ---------------------------------------------------------------- world accessors

    def _snowflake(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def new_id(self) -> int:
        """A fresh, time-based snowflake."""
        return self._snowflake()

    @property
    def guild(self) -> GuildSpec:
        return self.guilds[0]

    @property
    def channel(self) -> ChannelSpec:
        """The first SFW text channel of the first guild."""
        return next(c for c in self.guild.channels if not c.nsfw)

    @property
    def nsfw_channel(self) -> ChannelSpec:
        """The first NSFW text channel of the first guild."""
        return next(c for c in self.guild.channels if c.nsfw)

    def add_user(
        self, name: str, *, user_id: int | None = None, guild: GuildSpec | None = None
    ) -> UserSpec:
        """Create a user; with ``guild`` it also becomes a member (no event is dispatched)."""
        u = UserSpec(user_id or self._snowflake(), name)
        self._users[u.id] = u
        if guild is not None:
            guild.members.append(u)
        return u

    def get_user(self, user: UserSpec | int) -> UserSpec:
        if isinstance(user, UserSpec):
            self._users.setdefault(user.id, user)
            return user
        uid = _as_id(user)
        if uid not in self._users:
            self._users[uid] = UserSpec(uid, f"user{uid}")
        return self._users[uid]

    def dm_channel_id(self, user: UserSpec | int) -> int:
        """The id of the DM channel between the bot and ``user`` (created on first use)."""
        uid = _as_id(user)
        if uid not in self._dm_by_user:
            cid = self._snowflake()
            self._dm_by_user[uid] = cid
            self._dm_user_by_channel[cid] = uid
        return self._dm_by_user[uid]

    def close_dms(self, user: UserSpec | int, closed: bool = True) -> None:
        """Make ``POST /channels/{dm}/messages`` to ``user`` fail with 403 / code 50007."""
        uid = _as_id(user)
        if closed:
            self._closed_dms.add(uid)
        else:
            self._closed_dms.discard(uid)

    def add_attachment(
        self,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        ephemeral: bool = True,
        description: str | None = None,
    ) -> HostedAttachment:
        """Host ``data`` at a loopback URL; pass the result as an attachment option value."""
        att_id = self._snowflake()
        return self._host(att_id, 0, filename, data, content_type, ephemeral, description)

    def _host(
        self,
        att_id: int,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None,
        ephemeral: bool = False,
        description: str | None = None,
    ) -> HostedAttachment:
        ctype = content_type or _guess_type(filename)
        width = height = None
        if ctype.startswith("image/"):
            width, height = _image_size(data)
        url = str(self.base_url.with_path(f"{ATTACHMENT_PREFIX}{channel_id}/{att_id}/{filename}"))
        hosted = HostedAttachment(
            att_id, filename, data, ctype, url, width, height, ephemeral, description
        )
        self._hosted[att_id] = hosted
        return hosted

    def hosted_file(self, attachment_id: int | Mapping[str, Any]) -> HostedAttachment:
        """The hosted file (with bytes) behind an attachment id or attachment payload."""
        return self._hosted[_as_id(attachment_id)]

    # ---------------------------------------------------------------- recorded state

    def sent_messages(
        self, channel_id: int | ChannelSpec | None = None, *, include_deleted: bool = False
    ) -> list[SentMessage]:
        """Messages the bot created (responses, follow-ups, channel and DMs), oldest first."""
        cid = None if channel_id is None else _as_id(channel_id)
        return [
            m
            for m in self._messages.values()
            if (cid is None or m.channel_id == cid) and (include_deleted or not m.deleted)
        ]

    def dms(self, user: UserSpec | int) -> list[SentMessage]:
        """Messages the bot successfully sent to ``user``'s DM channel."""
        uid = _as_id(user)
        if uid not in self._dm_by_user:
            return []
        return self.sent_messages(self._dm_by_user[uid])

    def get_message(self, message_id: int) -> SentMessage:
        return self._messages[message_id]

    def registered_commands(self, guild: GuildSpec | int | None = None) -> list[dict[str, Any]]:
        """Application commands currently registered (global when ``guild`` is None)."""
        return list(self._commands.get(None if guild is None else _as_id(guild), []))

    def requests_to(self, method: str, pattern: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches and whose path fully matches ``pattern``."""
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method.upper() and rx.fullmatch(r.path)]

    def override(
        self, method: str, pattern: str, status: int, body: Any = None, *, times: int | None = 1
    ) -> None:
        """Answer the next ``times`` requests (None = forever) matching ``method`` and the path
        regex ``pattern`` (relative to /api/v10, full match) with ``status``/``body``.
        Note that discord.py retries 5xx answers with 1-9 s sleeps."""
        self._overrides.append([method.upper(), re.compile(pattern), status, body, times])

    def hold(self, method: str, pattern: str) -> Gate:
        """Hold every request matching ``method`` and the path regex ``pattern`` (relative to
        /api/v10, full match) before it is answered, until ``gate.release()``: a request
        in flight for as long as a test needs. ``await gate.arrived.wait()`` waits for the
        first one. Closing the stand-in releases every gate."""
        gate = Gate(method.upper(), re.compile(pattern))
        self._gates.append(gate)
        return gate

    # ---------------------------------------------------------------- waiting

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_until(
        self,
        predicate: Callable[[], T],
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
        *,
        what: str | None = None,
    ) -> T:
        """Wait until ``predicate()`` is truthy and return its value. Re-checked whenever the
        stand-in records something and every 20 ms (so it can poll bot-side state too)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or predicate!r}; "
                    f"last requests: {self._recent_requests()}"
                )
            event = self._changed
            if event is None:
                await asyncio.sleep(min(remaining, 0.02))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.02))

    def _recent_requests(self, n: int = 8) -> list[str]:
        return [f"{r.method} {r.path} -> {r.status}" for r in self.requests[-n:]]

    async def wait_for_reply(
        self,
        interaction: InteractionHandle,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> InteractionCallback:
        """Wait for the interaction's callback (its initial response)."""

        def check() -> InteractionCallback | None:
            return interaction.callback

        return await self.wait_until(check, timeout, what=f"a callback to {interaction!r}")

    async def wait_for_followup(
        self,
        interaction: InteractionHandle,
        index: int = 0,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> SentMessage:
        """Wait for the ``index``-th follow-up message of the interaction."""

        def check() -> SentMessage | None:
            return interaction.followups[index] if len(interaction.followups) > index else None

        return await self.wait_until(check, timeout, what=f"follow-up #{index} to {interaction!r}")

    async def wait_for_dm(
        self,
        user: UserSpec | int,
        index: int = 0,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> SentMessage:
        """Wait for the ``index``-th DM the bot sent to ``user``."""

        def check() -> SentMessage | None:
            msgs = self.dms(user)
            return msgs[index] if len(msgs) > index else None

        return await self.wait_until(check, timeout, what=f"DM #{index} to {_as_id(user)}")

    async def wait_for_message(
        self,
        channel_id: int | ChannelSpec,
        index: int = 0,
        timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    ) -> SentMessage:
        """Wait for the ``index``-th message the bot created in a channel."""

        def check() -> SentMessage | None:
            msgs = self.sent_messages(channel_id)
            return msgs[index] if len(msgs) > index else None

        return await self.wait_until(
            check, timeout, what=f"message #{index} in {_as_id(channel_id)}"
        )

    # ---------------------------------------------------------------- gateway

    def _live_session(self) -> _GatewaySession:
        live = [s for s in self._sessions if s.live]
        if not live:
            raise StandInError("no bot is connected to the stand-in gateway")
        return live[-1]

    @property
    def connected(self) -> bool:
        return any(s.live for s in self._sessions)

    async def dispatch(self, event: str, data: Any) -> None:
        """Send a DISPATCH (op 0) event to the most recently identified bot session."""
        await self._live_session().send(0, data, event)

    async def _handle_gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        session = _GatewaySession(ws)
        self._sessions.append(session)
        try:
            await session.send(10, {"heartbeat_interval": 41250, "_trace": ["standin"]})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                try:
                    await self._on_gateway_frame(session, json.loads(msg.data))
                except Exception as exc:  # a stand-in bug: keep it visible, re-raised on exit
                    self.internal_errors.append(exc)
                    await ws.close(code=1011)
                    break
        finally:
            if session.identified:
                self._session_seq[session.session_id] = session.seq
            if session in self._sessions:
                self._sessions.remove(session)
            self._notify()
        return ws

    async def _on_gateway_frame(self, session: _GatewaySession, frame: dict[str, Any]) -> None:
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            await session.send(11)
        elif op == 2:
            self.identifies.append(d)
            if d.get("token") != self.token:
                await session.ws.close(code=4004, message=b"Authentication failed.")
                return
            session.intents = int(d.get("intents") or 0)
            await session.send(0, self._ready_payload(session), "READY")
            session.identified = True
            for g in self.guilds:
                await session.send(
                    0, self._guild_create_payload(g, session.intents), "GUILD_CREATE"
                )
            self._notify()
        elif op == 6:
            seq = self._session_seq.get(d.get("session_id"))
            if seq is None or d.get("token") != self.token:
                await session.send(9, False)
                return
            session.session_id = d["session_id"]
            session.seq = seq
            session.identified = True
            await session.send(0, {"_trace": ["standin"]}, "RESUMED")
            self._notify()
        elif op == 8:
            await self._answer_member_request(session, d)
        # op 3 (presence) and op 4 (voice state) are accepted and ignored.

    async def _answer_member_request(self, session: _GatewaySession, d: dict[str, Any]) -> None:
        guild = self._guild(int(d["guild_id"]))
        members = [self._member_payload(guild, m) for m in self._members(guild)]
        not_found: list[str] = []
        if d.get("user_ids"):
            wanted = {str(u) for u in d["user_ids"]}
            found = {m["user"]["id"] for m in members}
            not_found = sorted(wanted - found)
            members = [m for m in members if m["user"]["id"] in wanted]
        elif d.get("query"):
            q = str(d["query"]).lower()
            members = [m for m in members if m["user"]["username"].lower().startswith(q)]
        if d.get("limit"):
            members = members[: int(d["limit"])]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": not_found,
        }
        if d.get("nonce") is not None:
            chunk["nonce"] = d["nonce"]
        if d.get("presences"):
            chunk["presences"] = []
        await session.send(0, chunk, "GUILD_MEMBERS_CHUNK")

    def _ready_payload(self, session: _GatewaySession) -> dict[str, Any]:
        user = self.bot_user.payload() | {"verified": True, "mfa_enabled": True, "email": None}
        return {
            "v": 10,
            "user": user,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in self.guilds],
            "session_id": session.session_id,
            "resume_gateway_url": str(self.gateway_url),
            "session_type": "normal",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
            "_trace": ["standin"],
        }

    # ---------------------------------------------------------------- payload builders

    def _guild(self, guild_id: int) -> GuildSpec:
        for g in self.guilds:
            if g.id == guild_id:
                return g
        raise StandInError(f"unknown guild {guild_id}")

    def _members(self, guild: GuildSpec) -> list[MemberSpec]:
        return [m if isinstance(m, MemberSpec) else MemberSpec(m) for m in guild.members]

    def _permissions(self, guild: GuildSpec, member: MemberSpec) -> int:
        if member.permissions is not None:
            return member.permissions
        if guild.owner_id == member.user.id:
            return _ALL_PERMISSIONS
        perms = guild.everyone_permissions
        for r in guild.roles:
            if r.id in member.role_ids:
                perms |= r.permissions
        return _ALL_PERMISSIONS if perms & _ADMINISTRATOR else perms

    def _roles_payload(self, guild: GuildSpec) -> list[dict[str, Any]]:
        everyone = RoleSpec(guild.id, "@everyone", guild.everyone_permissions, position=0)
        return [everyone.payload(), *(r.payload() for r in guild.roles)]

    def _member_payload(
        self,
        guild: GuildSpec,
        member: MemberSpec,
        *,
        with_user: bool = True,
        permissions: bool = False,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in member.role_ids],
            "nick": member.nick,
            "avatar": None,
            "banner": None,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
            "unusual_dm_activity_until": None,
        }
        if with_user:
            data["user"] = member.user.payload()
        if permissions:
            data["permissions"] = str(self._permissions(guild, member))
        return data

    def _channel_payload(
        self, guild: GuildSpec, channel: ChannelSpec, *, permissions: int | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(guild.id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": [],
            "nsfw": channel.nsfw,
            "topic": channel.topic,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }
        if permissions is not None:
            data["permissions"] = str(permissions)
        return data

    def _dm_channel_payload(self, user: UserSpec) -> dict[str, Any]:
        return {
            "id": str(self.dm_channel_id(user)),
            "type": 1,
            "last_message_id": None,
            "flags": 0,
            "recipients": [user.payload()],
        }

    def _guild_create_payload(self, guild: GuildSpec, intents: int) -> dict[str, Any]:
        members = self._members(guild)
        if not intents & _INTENT_PRESENCES:
            # Without GUILD_PRESENCES Discord only sends the bot itself (and voice users).
            members = [m for m in members if m.user.id == self.bot_user.id]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id or self.owner.id),
            "region": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "features": [],
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "premium_progress_bar_enabled": False,
            "application_id": None,
            "roles": self._roles_payload(guild),
            "emojis": [],
            "stickers": [],
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [self._member_payload(guild, m) for m in members],
            "channels": [
                {k: v for k, v in self._channel_payload(guild, c).items() if k != "guild_id"}
                for c in guild.channels
            ],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "incidents_data": None,
        }

    def _app_info_payload(self) -> dict[str, Any]:
        team = None
        owner = self.owner.payload()
        if self.team_members:
            team = {
                "id": str(self.team_id),
                "name": "stand-in team",
                "icon": None,
                "owner_user_id": str(self.team_members[0][0].id),
                "members": [
                    {
                        "user": u.payload(),
                        "membership_state": 2,
                        "permissions": ["*"],
                        "team_id": str(self.team_id),
                        "role": role,
                    }
                    for u, role in self.team_members
                ],
            }
            # For team-owned applications Discord reports a pseudo-user for the team as owner.
            owner = UserSpec(self.team_id, f"team{self.team_id}").payload() | {"flags": 1024}
        return {
            "id": str(self.application_id),
            "name": self.bot_user.name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": 0,
            "owner": owner,
            "team": team,
            "bot": self.bot_user.payload(),
            "rpc_origins": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "tags": [],
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds),
        }

    # ---------------------------------------------------------------- interactions (test side)

    def _context(
        self,
        user: UserSpec | int | None,
        channel: ChannelSpec | int | None,
        guild: GuildSpec | int | None,
        dm: bool,
    ) -> tuple[UserSpec, int, GuildSpec | None, ChannelSpec | None]:
        u = self.get_user(user) if user is not None else self.user
        if dm:
            return u, self.dm_channel_id(u), None, None
        if channel is None:
            g = self.guild if guild is None else self._guild(_as_id(guild))
            ch = next((c for c in g.channels if not c.nsfw), g.channels[0])
        else:
            cid = _as_id(channel)
            if cid in self._dm_user_by_channel:
                return self.get_user(self._dm_user_by_channel[cid]), cid, None, None
            if cid not in self._channels:
                raise StandInError(f"unknown channel {cid}")
            g, ch = self._channels[cid]
        if g.member(u.id) is None:
            g.members.append(u)  # Discord only delivers interactions from members
        return u, ch.id, g, ch

    async def _deliver(
        self,
        itype: int,
        data: dict[str, Any] | None,
        *,
        user: UserSpec,
        channel_id: int,
        guild: GuildSpec | None,
        channel: ChannelSpec | None,
        message: SentMessage | None = None,
        locale: str = "en-US",
        app_permissions: int | None = None,
    ) -> InteractionHandle:
        iid = self._snowflake()
        token = "standin." + secrets.token_urlsafe(48)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "locale": locale,
            "app_permissions": str(
                self.app_permissions if app_permissions is None else app_permissions
            ),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "channel_id": str(channel_id),
        }
        if data is not None:
            payload["data"] = data
        if guild is not None and channel is not None:
            member = guild.member(user.id) or MemberSpec(user)
            perms = self._permissions(guild, member)
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.locale, "features": []},
                guild_locale=guild.locale,
                channel=self._channel_payload(guild, channel, permissions=perms),
                member=self._member_payload(guild, member, permissions=True),
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                channel=self._dm_channel_payload(user),
                user=user.payload(),
                authorizing_integration_owners={"0": "0"},
                context=1,
            )
        if message is not None:
            payload["message"] = copy.deepcopy(dict(message))
        handle = InteractionHandle(
            id=iid,
            token=token,
            type=itype,
            payload=payload,
            user_id=user.id,
            channel_id=channel_id,
            guild_id=None if guild is None else guild.id,
            message=message,
        )
        self._interactions[iid] = handle
        self._interactions_by_token[token] = handle
        await self.dispatch("INTERACTION_CREATE", payload)
        return handle

    def _command_schema(
        self, path: list[str], guild: GuildSpec | None
    ) -> tuple[dict[str, Any] | None, int | None]:
        """(schema of the top-level command, guild id if it is a guild command)."""
        scopes: list[int | None] = [guild.id] if guild is not None else []
        scopes.append(None)
        for scope in scopes:
            for cmd in self._commands.get(scope, []):
                if cmd["name"] == path[0] and cmd.get("type", 1) == 1:
                    return cmd, scope
        bot = self.bot
        if bot is not None and getattr(bot, "tree", None) is not None:
            tree = bot.tree  # type: ignore[attr-defined]
            for scope in scopes:
                obj = None if scope is None else discord.Object(scope)
                cmd = tree.get_command(path[0], guild=obj)
                if isinstance(cmd, discord.app_commands.Command | discord.app_commands.Group):
                    return cmd.to_dict(tree), scope
        return None, None

    def _build_command_data(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        guild: GuildSpec | None,
        *,
        focused: str | None = None,
    ) -> dict[str, Any]:
        path = name.strip().lstrip("/").split()
        if not path or len(path) > 3:
            raise StandInError(f"bad command path {name!r}")
        schema, scope = self._command_schema(path, guild)
        leaf_schema_options: list[dict[str, Any]] | None = None
        if schema is not None:
            level = schema
            for part in path[1:]:
                sub = next((o for o in level.get("options", []) if o["name"] == part), None)
                if sub is None or sub.get("type") not in (1, 2):
                    raise StandInError(
                        f"/{' '.join(path)}: no subcommand {part!r} in the command schema"
                    )
                level = sub
            leaf_schema_options = level.get("options", [])
        resolved: dict[str, dict[str, Any]] = {}
        leaf_options = self._build_options(options, leaf_schema_options, guild, resolved, focused)
        # Nest as Discord does: group (type 2) > subcommand (type 1) > options.
        nested: list[dict[str, Any]] = leaf_options
        if len(path) == 3:
            nested = [
                {
                    "name": path[1],
                    "type": 2,
                    "options": [{"name": path[2], "type": 1, "options": nested}],
                }
            ]
        elif len(path) == 2:
            nested = [{"name": path[1], "type": 1, "options": nested}]
        key = (scope, path[0])
        cmd_id = None
        if schema is not None and "id" in schema:
            cmd_id = int(schema["id"])
        else:
            cmd_id = self._command_ids.setdefault(key, self._snowflake())
        data: dict[str, Any] = {"id": str(cmd_id), "name": path[0], "type": 1}
        if nested:
            data["options"] = nested
        if resolved:
            data["resolved"] = resolved
        if scope is not None:
            data["guild_id"] = str(scope)
        return data

    def _build_options(
        self,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        schema: list[dict[str, Any]] | None,
        guild: GuildSpec | None,
        resolved: dict[str, dict[str, Any]],
        focused: str | None,
    ) -> list[dict[str, Any]]:
        if options is None:
            return []
        if not isinstance(options, Mapping):  # raw option dicts, passed through untouched
            return [dict(o) for o in options]
        by_name = {o["name"]: o for o in schema or []}
        out: list[dict[str, Any]] = []
        for opt_name, value in options.items():
            spec = by_name.get(opt_name)
            if schema is not None and spec is None:
                raise StandInError(
                    f"option {opt_name!r} is not in the command schema ({sorted(by_name)})"
                )
            otype = spec["type"] if spec is not None else self._infer_type(value)
            entry: dict[str, Any] = {"name": opt_name, "type": otype}
            if opt_name == focused:
                entry["value"] = value if isinstance(value, str) else str(value)
                entry["focused"] = True
            else:
                entry["value"] = self._option_value(otype, value, guild, resolved)
            out.append(entry)
        if focused is not None and focused not in options:
            raise StandInError(f"focused option {focused!r} must be in options")
        return out

    @staticmethod
    def _infer_type(value: Any) -> int:
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        if isinstance(value, HostedAttachment):
            return 11
        if isinstance(value, UserSpec | MemberSpec):
            return 6
        if isinstance(value, ChannelSpec):
            return 7
        if isinstance(value, RoleSpec):
            return 8
        return 3

    def _option_value(
        self, otype: int, value: Any, guild: GuildSpec | None, resolved: dict[str, dict[str, Any]]
    ) -> Any:
        if otype == 3:
            return str(value)
        if otype == 4:
            return int(value)
        if otype == 5:
            return bool(value)
        if otype == 10:
            return float(value)
        if otype == 11:
            att = value if isinstance(value, HostedAttachment) else self.hosted_file(_as_id(value))
            resolved.setdefault("attachments", {})[str(att.id)] = att.payload()
            return str(att.id)
        if otype == 7:
            cid = _as_id(value)
            if cid not in self._channels:
                raise StandInError(f"unknown channel {cid}")
            g, ch = self._channels[cid]
            chp = self._channel_payload(g, ch, permissions=_ALL_PERMISSIONS)
            resolved.setdefault("channels", {})[str(cid)] = chp
            return str(cid)
        if otype == 8 or (otype == 9 and isinstance(value, RoleSpec)):
            if guild is None:
                raise StandInError("role options need a guild")
            rid = _as_id(value)
            roles = {int(r["id"]): r for r in self._roles_payload(guild)}
            if rid not in roles:
                raise StandInError(f"unknown role {rid}")
            resolved.setdefault("roles", {})[str(rid)] = roles[rid]
            return str(rid)
        if otype in (6, 9):
            u = value.user if isinstance(value, MemberSpec) else self.get_user(value)
            resolved.setdefault("users", {})[str(u.id)] = u.payload()
            if guild is not None and guild.member(u.id) is not None:
                member = guild.member(u.id)
                assert member is not None
                mp = self._member_payload(guild, member, with_user=False, permissions=True)
                resolved.setdefault("members", {})[str(u.id)] = mp
            return str(u.id)
        return value

    async def invoke_command(
        self,
        name: str,
        options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        user: UserSpec | int | None = None,
        channel: ChannelSpec | int | None = None,
        guild: GuildSpec | int | None = None,
        dm: bool = False,
        locale: str = "en-US",
        app_permissions: int | None = None,
    ) -> InteractionHandle:
        """Deliver a slash command (INTERACTION_CREATE type 2).

        name: "cmd", "cmd sub" or "cmd group sub" (nested as type 2 / type 1 options).
        options: {option name: value}; types come from the synced commands, else from the
            connected bot's tree, else from the Python values. Values: str/int/float/bool,
            HostedAttachment (from add_attachment), UserSpec/MemberSpec/user id, ChannelSpec,
            RoleSpec. A list of raw option dicts is passed through untouched.
        Default place: ``standin.user`` in ``standin.channel``; ``dm=True`` for the bot DM.
        """
        u, cid, g, ch = self._context(user, channel, guild, dm)
        data = self._build_command_data(name, options, g)
        return await self._deliver(
            2,
            data,
            user=u,
            channel_id=cid,
            guild=g,
            channel=ch,
            locale=locale,
            app_permissions=app_permissions,
        )

    async def autocomplete(
        self,
        name: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        user: UserSpec | int | None = None,
        channel: ChannelSpec | int | None = None,
        guild: GuildSpec | int | None = None,
        dm: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Deliver an autocomplete request (type 4); ``focused`` names the option being typed
        (its value is sent as the typed string). The reply is a type 8 callback."""
        u, cid, g, ch = self._context(user, channel, guild, dm)
        data = self._build_command_data(name, options, g, focused=focused)
        return await self._deliver(
            4, data, user=u, channel_id=cid, guild=g, channel=ch, locale=locale
        )

    def _component_context(
        self, message: SentMessage | int, user: UserSpec | int | None
    ) -> tuple[SentMessage, UserSpec, int, GuildSpec | None, ChannelSpec | None]:
        msg = message if isinstance(message, SentMessage) else self._messages.get(_as_id(message))
        if msg is None:
            raise StandInError(f"unknown message {message!r}")
        msg = self._messages.get(msg.id, msg)
        if msg.deleted:
            raise StandInError(f"message {msg.id} was deleted")
        cid = msg.channel_id
        if msg.ephemeral and msg.interaction is not None:
            owner_id = msg.interaction.user_id
            if user is not None and _as_id(user) != owner_id:
                raise StandInError(f"ephemeral message {msg.id} is only visible to user {owner_id}")
            user = owner_id
        if cid in self._dm_user_by_channel:
            recipient = self._dm_user_by_channel[cid]
            if user is not None and _as_id(user) != recipient:
                raise StandInError(f"message {msg.id} is in the DM of user {recipient}")
            return msg, self.get_user(recipient), cid, None, None
        u, cid, g, ch = self._context(user, cid, None, False)
        return msg, u, cid, g, ch

    async def click(
        self,
        message: SentMessage | int,
        custom_id: str,
        *,
        user: UserSpec | int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Press a button (type 3 interaction, component_type 2) on a message the bot sent.
        Fails if the message has no such button or it is disabled. Default user: the DM
        recipient, the owner of an ephemeral message, else ``standin.user``."""
        msg, u, cid, g, ch = self._component_context(message, user)
        comp = msg.component(custom_id)
        if comp is None:
            raise StandInError(f"no component {custom_id!r} on {msg!r}")
        if comp.get("type") != 2:
            raise StandInError(f"component {custom_id!r} is type {comp.get('type')}, not a button")
        if comp.get("disabled"):
            raise StandInError(f"button {custom_id!r} is disabled")
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._deliver(
            3, data, user=u, channel_id=cid, guild=g, channel=ch, message=msg, locale=locale
        )

    async def select(
        self,
        message: SentMessage | int,
        custom_id: str,
        values: Sequence[str],
        *,
        user: UserSpec | int | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Choose ``values`` in a select menu (type 3 interaction) on a message the bot sent."""
        msg, u, cid, g, ch = self._component_context(message, user)
        comp = msg.component(custom_id)
        if comp is None or comp.get("type") not in (3, 5, 6, 7, 8):
            raise StandInError(f"no select menu {custom_id!r} on {msg!r}")
        if comp.get("disabled"):
            raise StandInError(f"select {custom_id!r} is disabled")
        data = {
            "custom_id": custom_id,
            "component_type": comp["type"],
            "values": [str(v) for v in values],
        }
        return await self._deliver(
            3, data, user=u, channel_id=cid, guild=g, channel=ch, message=msg, locale=locale
        )

    async def submit_modal(
        self,
        interaction: InteractionHandle,
        values: Mapping[str, Any],
        *,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Submit the modal the bot opened (type 9 callback) in answer to ``interaction``;
        ``values`` maps input custom_ids to values (str, or list of str for selects)."""
        cb = interaction.callback
        if cb is None or cb.type != 9 or cb.data is None:
            raise StandInError(f"{interaction!r} was not answered with a modal")
        modal = cb.data

        def answer(c: Mapping[str, Any]) -> dict[str, Any]:
            t = c.get("type")
            if t == 1:
                return {"type": 1, "components": [answer(x) for x in c.get("components", [])]}
            if t == 18:
                return {"type": 18, "id": c.get("id", 0), "component": answer(c["component"])}
            out: dict[str, Any] = {"type": t, "id": c.get("id", 0)}
            if "custom_id" in c:
                out["custom_id"] = c["custom_id"]
                v = values.get(c["custom_id"], c.get("value", "" if t == 4 else []))
                if isinstance(v, list | tuple):
                    out["values"] = [str(x) for x in v]
                else:
                    out["value"] = v
            return out

        data = {
            "custom_id": modal["custom_id"],
            "components": [answer(c) for c in modal.get("components", [])],
        }
        user = self.get_user(interaction.user_id)
        g = None if interaction.guild_id is None else self._guild(interaction.guild_id)
        ch = None if g is None else self._channels[interaction.channel_id][1]
        return await self._deliver(
            5,
            data,
            user=user,
            channel_id=interaction.channel_id,
            guild=g,
            channel=ch,
            message=interaction.message,
            locale=locale,
        )

    # ---------------------------------------------------------------- HTTP plumbing

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _Handler, bool]]:
        # (method, path regex, handler, needs bot authorization)
        table: list[tuple[str, str, _Handler, bool]] = [
            # Bot or Bearer (an OAuth2 access token): the handler checks which.
            ("GET", r"/users/@me", self._r_get_me, False),
            ("POST", r"/oauth2/token", self._r_oauth_token, False),
            ("GET", r"/oauth2/applications/@me", self._r_get_app, True),
            ("GET", r"/users/(?P<user_id>\d+)", self._r_get_user, True),
            ("POST", r"/users/@me/channels", self._r_create_dm, True),
            ("GET", r"/channels/(?P<channel_id>\d+)", self._r_get_channel, True),
            ("POST", r"/channels/(?P<channel_id>\d+)/typing", self._r_typing, True),
            ("POST", r"/channels/(?P<channel_id>\d+)/messages", self._r_create_message, True),
            (
                "GET",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_get_message,
                True,
            ),
            (
                "PATCH",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_edit_message,
                True,
            ),
            (
                "DELETE",
                r"/channels/(?P<channel_id>\d+)/messages/(?P<message_id>\d+)",
                self._r_delete_message,
                True,
            ),
            (
                "GET",
                r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)",
                self._r_get_member,
                True,
            ),
            ("GET", r"/applications/(?P<app_id>\d+)/commands", self._r_get_commands, True),
            ("PUT", r"/applications/(?P<app_id>\d+)/commands", self._r_put_commands, True),
            ("POST", r"/applications/(?P<app_id>\d+)/commands", self._r_post_command, True),
            (
                "DELETE",
                r"/applications/(?P<app_id>\d+)/commands/(?P<command_id>\d+)",
                self._r_delete_command,
                True,
            ),
            (
                "GET",
                r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands",
                self._r_get_commands,
                True,
            ),
            (
                "PUT",
                r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands",
                self._r_put_commands,
                True,
            ),
            (
                "POST",
                r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands",
                self._r_post_command,
                True,
            ),
            (
                "DELETE",
                r"/applications/(?P<app_id>\d+)/guilds/(?P<guild_id>\d+)/commands/(?P<command_id>\d+)",
                self._r_delete_command,
                True,
            ),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self._r_callback,
                False,
            ),
            ("POST", r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)", self._r_followup, False),
            (
                "GET",
                r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_get_webhook_message,
                False,
            ),
            (
                "PATCH",
                r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)/messages/(?P<message_id>@original|\d+)",
                self._r_delete_webhook_message,
                False,
            ),
        ]
        return [(m, re.compile(p), h, auth) for m, p, h, auth in table]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path == GATEWAY_PATH:
            return await self._handle_gateway(request)
        if path.startswith(ATTACHMENT_PREFIX) and request.method in ("GET", "HEAD"):
            return self._serve_attachment(path)
        if path == OAUTH_AUTHORIZE_PATH and request.method == "GET":
            return self._authorize(request)
        if path.startswith(API_PREFIX + "/"):
            rel = path[len(API_PREFIX) :]
        elif path.startswith("/api/") and not re.match(r"/api/v\d+/", path):
            rel = path[len("/api") :]  # no version: Discord's default version
        else:
            return _json(404, {"message": "404: Not Found", "code": 0})
        body, files = await _read_body(request)
        rec = RecordedRequest(
            method=request.method,
            path=rel,
            query=dict(request.query),
            body=body,
            files=files,
            authorization=request.headers.get("Authorization"),
        )
        self.requests.append(rec)
        for gate in self._gates:
            if gate.method == rec.method and gate.pattern.fullmatch(rec.path):
                gate.arrived.set()
                self._notify()
                await gate.released.wait()
        try:
            status, response = self._route(rec)
        except Exception as exc:  # a stand-in bug: answer 400 (no discord.py retries) and keep it
            self.internal_errors.append(exc)
            status, response = _error(400, 0, f"DiscordStandIn internal error: {exc!r}")
        rec.status, rec.response = status, response
        self._notify()
        return _json(status, response)

    def _route(self, rec: RecordedRequest) -> tuple[int, Any]:
        for ov in self._overrides:
            method, rx, status, body, times = ov
            if method == rec.method and rx.fullmatch(rec.path) and (times is None or times > 0):
                if times is not None:
                    ov[4] = times - 1
                return status, body
        for method, rx, handler, needs_auth in self._routes:
            if method != rec.method:
                continue
            m = rx.fullmatch(rec.path)
            if m is None:
                continue
            if needs_auth and rec.authorization != f"Bot {self.token}":
                return _error(401, 0, "401: Unauthorized")
            return handler(rec, **m.groupdict())
        self.unknown_requests.append(rec)
        return _error(404, 0, "404: Not Found")

    def _serve_attachment(self, path: str) -> web.Response:
        parts = path[len(ATTACHMENT_PREFIX) :].split("/")
        hosted = None
        if len(parts) == 3 and parts[1].isdigit():
            hosted = self._hosted.get(int(parts[1]))
        if hosted is None or hosted.filename != parts[2]:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=hosted.data, headers={"Content-Type": hosted.content_type})

    # ---------------------------------------------------------------- REST handlers

    def _r_get_me(self, rec: RecordedRequest) -> tuple[int, Any]:
        auth = rec.authorization or ""
        if auth.startswith("Bearer "):
            grant = self._oauth_tokens.get(auth.removeprefix("Bearer "))
            if grant is None:
                return _error(401, 0, "401: Unauthorized")
            # The `identify` scope: the user object without email.
            return 200, grant.user.payload() | {"mfa_enabled": False, "locale": "en-US"}
        if auth != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        return 200, self.bot_user.payload() | {"verified": True, "mfa_enabled": True, "email": None}

    # ---------------------------------------------------------------- OAuth2

    def _authorize(self, request: web.Request) -> web.Response:
        """The consent screen, already answered: Discord shows an error page (no redirect)
        for an unknown client or redirect URI, else sends the browser back to the
        redirect URI with a code, or with `error=access_denied` when the user cancels."""
        query = dict(request.query)
        self.authorizations.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != str(self.application_id):
            return web.Response(status=400, text="Unknown Application")
        if not redirect_uri or (
            self.oauth_redirect_uris and redirect_uri not in self.oauth_redirect_uris
        ):
            return web.Response(status=400, text="Invalid OAuth2 redirect_uri")
        if query.get("response_type") != "code":
            return web.Response(status=400, text="Invalid response_type")
        scopes = query.get("scope", "").split()
        if not scopes or any(s not in OAUTH_SCOPES for s in scopes):
            return web.Response(status=400, text="Invalid scope")
        answer: dict[str, str]
        if self.oauth_deny:
            answer = {
                "error": "access_denied",
                "error_description": "The resource owner or authorization server denied "
                "the request",
            }
        else:
            code = secrets.token_urlsafe(22)
            self._oauth_codes[code] = _OAuthGrant(self.oauth_user, redirect_uri, tuple(scopes))
            answer = {"code": code}
        if "state" in query:
            answer["state"] = query["state"]
        location = yarl.URL(redirect_uri).update_query(answer)
        return web.Response(status=302, headers={"Location": str(location)})

    def _r_oauth_token(self, rec: RecordedRequest) -> tuple[int, Any]:
        """The token exchange: client credentials by HTTP Basic or in the form; a code
        works once, with the redirect URI it was issued for."""
        form = _form_fields(rec.body)
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = rec.authorization or ""
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth.removeprefix("Basic ")).decode()
            except ValueError:
                decoded = ""
            client_id, _, secret = decoded.partition(":")
        if client_id != str(self.application_id) or secret != self.client_secret:
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        grant = self._oauth_codes.pop(form.get("code", ""), None)
        if grant is None:
            return 400, {
                "error": "invalid_grant",
                "error_description": 'Invalid "code" in request.',
            }
        if form.get("redirect_uri") != grant.redirect_uri:
            return 400, {
                "error": "invalid_grant",
                "error_description": 'Invalid "redirect_uri" in request.',
            }
        access = secrets.token_urlsafe(22)
        self._oauth_tokens[access] = grant
        return 200, {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": 604800,
            "refresh_token": secrets.token_urlsafe(22),
            "scope": " ".join(grant.scopes),
        }

    def _r_get_app(self, rec: RecordedRequest) -> tuple[int, Any]:
        return 200, self._app_info_payload()

    def _r_get_user(self, rec: RecordedRequest, user_id: str) -> tuple[int, Any]:
        u = self._users.get(int(user_id))
        if u is None:
            return _error(404, 10013, "Unknown User")
        return 200, u.payload()

    def _r_get_member(self, rec: RecordedRequest, guild_id: str, user_id: str) -> tuple[int, Any]:
        g = next((g for g in self.guilds if g.id == int(guild_id)), None)
        if g is None:
            return _error(404, 10004, "Unknown Guild")
        m = g.member(int(user_id))
        if m is None:
            return _error(404, 10007, "Unknown Member")
        return 200, self._member_payload(g, m)

    def _r_create_dm(self, rec: RecordedRequest) -> tuple[int, Any]:
        body = rec.body or {}
        uid = int(body.get("recipient_id", 0))
        u = self._users.get(uid)
        if u is None:
            return _error(400, 50033, "Invalid Recipient(s)")
        return 200, self._dm_channel_payload(u)

    def _r_get_channel(self, rec: RecordedRequest, channel_id: str) -> tuple[int, Any]:
        cid = int(channel_id)
        if cid in self._dm_user_by_channel:
            return 200, self._dm_channel_payload(self._users[self._dm_user_by_channel[cid]])
        if cid in self._channels:
            g, ch = self._channels[cid]
            return 200, self._channel_payload(g, ch)
        return _error(404, 10003, "Unknown Channel")

    def _r_typing(self, rec: RecordedRequest, channel_id: str) -> tuple[int, Any]:
        if (
            int(channel_id) not in self._channels
            and int(channel_id) not in self._dm_user_by_channel
        ):
            return _error(404, 10003, "Unknown Channel")
        return 204, None

    def _r_create_message(self, rec: RecordedRequest, channel_id: str) -> tuple[int, Any]:
        cid = int(channel_id)
        if cid not in self._channels and cid not in self._dm_user_by_channel:
            return _error(404, 10003, "Unknown Channel")
        if self._dm_user_by_channel.get(cid) in self._closed_dms:
            return _error(403, 50007, "Cannot send messages to this user")
        payload = rec.body or {}
        problem = self._validate_message(payload, rec.files)
        if problem is not None:
            return problem
        mtype = 19 if payload.get("message_reference") else 0
        msg = self._new_message(
            cid, payload, rec.files, source="channel", mtype=mtype, interaction=None
        )
        return 200, msg

    def _find_channel_message(self, channel_id: str, message_id: str) -> SentMessage | None:
        msg = self._messages.get(int(message_id))
        if msg is None or msg.deleted or msg.channel_id != int(channel_id):
            return None
        if msg.ephemeral:
            return None  # ephemeral messages cannot be reached through the channel API
        return msg

    def _r_get_message(
        self, rec: RecordedRequest, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._find_channel_message(channel_id, message_id)
        return (200, msg) if msg is not None else _error(404, 10008, "Unknown Message")

    def _r_edit_message(
        self, rec: RecordedRequest, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._find_channel_message(channel_id, message_id)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        if int(msg["author"]["id"]) != self.bot_user.id:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        return self._apply_edit(msg, rec.body or {}, rec.files)

    def _r_delete_message(
        self, rec: RecordedRequest, channel_id: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._find_channel_message(channel_id, message_id)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        msg.deleted = True
        return 204, None

    # -- application commands

    def _command_scope(
        self, app_id: str, guild_id: str | None
    ) -> tuple[int | None, tuple[int, Any] | None]:
        if int(app_id) != self.application_id:
            return None, _error(404, 10002, "Unknown Application")
        if guild_id is None:
            return None, None
        if not any(g.id == int(guild_id) for g in self.guilds):
            return None, _error(403, 50001, "Missing Access")
        return int(guild_id), None

    def _register(self, scope: int | None, cmd: Mapping[str, Any]) -> dict[str, Any]:
        key = (scope, cmd["name"])
        cmd_id = self._command_ids.setdefault(key, self._snowflake())
        out: dict[str, Any] = {
            "id": str(cmd_id),
            "application_id": str(self.application_id),
            "version": str(self._snowflake()),
            "default_member_permissions": None,
            "type": 1,
            "nsfw": False,
            "description": "",
            "dm_permission": True,
            "contexts": None,
            "integration_types": [0],
            "name_localizations": None,
            "description_localizations": None,
        }
        out.update(copy.deepcopy(dict(cmd)))
        out["id"] = str(cmd_id)
        if scope is not None:
            out["guild_id"] = str(scope)
        return out

    def _r_get_commands(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        scope, err = self._command_scope(app_id, guild_id)
        return err or (200, self._commands.get(scope, []))

    def _r_put_commands(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        scope, err = self._command_scope(app_id, guild_id)
        if err:
            return err
        body = rec.body
        if not isinstance(body, list):
            return _form_error("_root", "LIST_TYPE_CONVERT", "Must be an array.")
        names = [c.get("name") for c in body]
        if len(names) != len(set(names)):
            return _form_error(
                "_root",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                "Application command names must be unique",
            )
        self.command_syncs.append(CommandSync(scope, copy.deepcopy(body)))
        self._commands[scope] = [self._register(scope, c) for c in body]
        return 200, self._commands[scope]

    def _r_post_command(
        self, rec: RecordedRequest, app_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        scope, err = self._command_scope(app_id, guild_id)
        if err:
            return err
        cmd = self._register(scope, rec.body or {})
        cmds = [c for c in self._commands.get(scope, []) if c["name"] != cmd["name"]]
        self._commands[scope] = [*cmds, cmd]
        return 201, cmd

    def _r_delete_command(
        self, rec: RecordedRequest, app_id: str, command_id: str, guild_id: str | None = None
    ) -> tuple[int, Any]:
        scope, err = self._command_scope(app_id, guild_id)
        if err:
            return err
        cmds = self._commands.get(scope, [])
        kept = [c for c in cmds if c["id"] != command_id]
        if len(kept) == len(cmds):
            return _error(404, 10063, "Unknown application command")
        self._commands[scope] = kept
        return 204, None

    # -- messages

    def _validate_message(
        self, payload: Mapping[str, Any], files: Sequence[UploadedFile]
    ) -> tuple[int, Any] | None:
        content = payload.get("content") or ""
        if len(content) > 2000:
            return _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        if len(payload.get("embeds") or []) > 10:
            return _form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        if not (
            content
            or payload.get("embeds")
            or payload.get("components")
            or files
            or payload.get("poll")
            or payload.get("sticker_ids")
        ):
            return _error(400, 50006, "Cannot send an empty message")
        return None

    def _attachments(
        self,
        channel_id: int,
        declared: Sequence[Mapping[str, Any]] | None,
        files: Sequence[UploadedFile],
        existing: Sequence[Mapping[str, Any]],
        ephemeral: bool,
    ) -> list[dict[str, Any]]:
        by_index = {f.index: f for f in files if f.index is not None}
        kept = {str(a["id"]): a for a in existing}
        out: list[dict[str, Any]] = []
        used: set[int] = set()

        def upload(f: UploadedFile, meta: Mapping[str, Any]) -> dict[str, Any]:
            hosted = self._host(
                self._snowflake(),
                channel_id,
                meta.get("filename") or f.filename,
                f.data,
                None,
                ephemeral,
                meta.get("description"),
            )
            return hosted.payload()

        if declared is None:
            out.extend(dict(a) for a in existing)
            for f in files:
                out.append(upload(f, {}))
            return out
        for a in declared:
            aid = str(a.get("id"))
            if aid in kept:
                out.append(dict(kept[aid]))
            elif aid.isdigit() and int(aid) in by_index and int(aid) not in used:
                used.add(int(aid))
                out.append(upload(by_index[int(aid)], a))
        return out

    def _new_message(
        self,
        channel_id: int,
        payload: Mapping[str, Any],
        files: Sequence[UploadedFile],
        *,
        source: str,
        mtype: int,
        interaction: InteractionHandle | None,
        extra_flags: int = 0,
    ) -> SentMessage:
        flags = int(payload.get("flags") or 0) | extra_flags
        data: dict[str, Any] = {
            "id": str(self._snowflake()),
            "type": mtype,
            "channel_id": str(channel_id),
            "author": self.bot_user.payload(),
            "content": payload.get("content") or "",
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments(
                channel_id, payload.get("attachments"), files, [], bool(flags & EPHEMERAL)
            ),
            "embeds": copy.deepcopy(payload.get("embeds") or []),
            "components": copy.deepcopy(payload.get("components") or []),
            "pinned": False,
            "flags": flags,
        }
        if payload.get("poll"):
            data["poll"] = copy.deepcopy(payload["poll"])
        if payload.get("message_reference"):
            data["message_reference"] = copy.deepcopy(payload["message_reference"])
        if interaction is not None:
            data["webhook_id"] = str(self.application_id)
            data["application_id"] = str(self.application_id)
            meta: dict[str, Any] = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": self.get_user(interaction.user_id).payload(),
                "authorizing_integration_owners": interaction.payload[
                    "authorizing_integration_owners"
                ],
            }
            if interaction.type == 3 and interaction.message is not None:
                meta["interacted_message_id"] = str(interaction.message.id)
            if interaction.original is not None and source == "followup":
                meta["original_response_message_id"] = str(interaction.original.id)
            data["interaction_metadata"] = meta
        msg = SentMessage(data, source=source, interaction=interaction)
        msg.files.extend(files)
        self._messages[msg.id] = msg
        return msg

    def _apply_edit(
        self, msg: SentMessage, payload: Mapping[str, Any], files: Sequence[UploadedFile]
    ) -> tuple[int, Any]:
        if (
            "content" in payload
            and payload["content"] is not None
            and len(payload["content"]) > 2000
        ):
            return _form_error(
                "content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length."
            )
        if "content" in payload:
            msg["content"] = payload["content"] or ""
        for key in ("embeds", "components"):
            if key in payload:
                msg[key] = copy.deepcopy(payload[key] or [])
        if payload.get("poll"):
            msg["poll"] = copy.deepcopy(payload["poll"])
        if "attachments" in payload or files:
            msg["attachments"] = self._attachments(
                msg.channel_id,
                payload.get("attachments"),
                files,
                msg.get("attachments", []),
                msg.ephemeral,
            )
        if "flags" in payload and payload["flags"] is not None:
            # Only SUPPRESS_EMBEDS (and IS_COMPONENTS_V2) can change on edit.
            mutable = (1 << 2) | (1 << 15)
            msg["flags"] = (msg.flags & ~mutable) | (int(payload["flags"]) & mutable)
        msg["flags"] = msg.flags & ~LOADING
        msg["edited_timestamp"] = _now_iso()
        msg.files.extend(files)
        msg.edits.append(copy.deepcopy(dict(payload)))
        return 200, msg

    # -- interactions

    def _interaction_for(self, token: str) -> InteractionHandle | None:
        return self._interactions_by_token.get(token)

    def _r_callback(self, rec: RecordedRequest, interaction_id: str, token: str) -> tuple[int, Any]:
        inter = self._interactions.get(int(interaction_id))
        if inter is None or inter.token != token:
            return _error(404, 10062, "Unknown interaction")
        if (
            self.interaction_deadline is not None
            and time.monotonic() - inter.created_at > self.interaction_deadline
        ):
            return _error(404, 10062, "Unknown interaction")
        if inter.callback is not None:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body = rec.body or {}
        ctype = int(body.get("type", 0))
        data = body.get("data")
        allowed = {
            2: {4, 5, 9, 10, 12},
            3: {4, 5, 6, 7, 9, 10, 12},
            4: {8},
            5: {4, 5, 6, 7} if inter.message is not None else {4, 5},
        }[inter.type]
        if ctype not in allowed:
            return _form_error(
                "type",
                "INTERACTION_RESPONSE_TYPE_INVALID",
                f"Invalid interaction response type {ctype}",
            )
        message: SentMessage | None = None
        mtype = 20 if inter.type == 2 else 0
        if ctype == 4:
            payload = data or {}
            problem = self._validate_message(payload, rec.files)
            if problem is not None:
                return problem
            message = self._new_message(
                inter.channel_id,
                payload,
                rec.files,
                source="callback",
                mtype=mtype,
                interaction=inter,
            )
            inter.original = message
        elif ctype == 5:
            flags = int((data or {}).get("flags") or 0) & EPHEMERAL
            message = self._new_message(
                inter.channel_id,
                {"flags": flags},
                [],
                source="callback",
                mtype=mtype,
                interaction=inter,
                extra_flags=LOADING,
            )
            inter.original = message
        elif ctype == 6:
            inter.original = inter.message
        elif ctype == 7:
            assert inter.message is not None
            status, _ = self._apply_edit(inter.message, data or {}, rec.files)
            if status != 200:
                return status, _
            message = inter.message
            inter.original = message
        cb = InteractionCallback(
            type=ctype, data=data, files=list(rec.files), message=message, body=body
        )
        inter.callback = cb
        self.callbacks.append(cb)
        response: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_loading": ctype == 5,
                "response_message_ephemeral": bool(message is not None and message.ephemeral),
            },
            "resource": {"type": ctype},
        }
        if message is not None:
            response["interaction"]["response_message_id"] = str(message.id)
            response["resource"]["message"] = message
        return 200, response

    def _webhook_interaction(self, app_id: str, token: str) -> InteractionHandle | None:
        if int(app_id) != self.application_id:
            return None
        inter = self._interaction_for(token)
        if inter is None or inter.callback is None:
            return None  # Discord knows no webhook for a token before the initial response
        return inter

    def _r_followup(self, rec: RecordedRequest, app_id: str, token: str) -> tuple[int, Any]:
        inter = self._webhook_interaction(app_id, token)
        if inter is None:
            return _error(404, 10015, "Unknown Webhook")
        payload = rec.body or {}
        problem = self._validate_message(payload, rec.files)
        if problem is not None:
            return problem
        original = inter.original
        assert inter.callback is not None
        if (
            inter.callback.type == 5
            and original is not None
            and original.flags & LOADING
            and not original.deleted  # a deleted loading message is not filled in
        ):
            # The first follow-up after a "thinking" defer replaces the loading message.
            edit = {k: v for k, v in payload.items() if k != "flags"}
            self._apply_edit(original, edit, rec.files)
            msg = original
        else:
            mtype = 20 if inter.type == 2 else 0
            msg = self._new_message(
                inter.channel_id,
                payload,
                rec.files,
                source="followup",
                mtype=mtype,
                interaction=inter,
            )
        inter.followups.append(msg)
        wait = rec.query.get("wait", "").lower() in ("1", "true")
        return (200, msg) if wait else (204, None)

    def _webhook_message(self, app_id: str, token: str, message_id: str) -> SentMessage | None:
        inter = self._webhook_interaction(app_id, token)
        if inter is None:
            return None
        if message_id == "@original":
            msg = inter.original
        else:
            msg = self._messages.get(int(message_id))
            if msg is not None and msg is not inter.original and msg not in inter.followups:
                msg = None
        return None if msg is None or msg.deleted else msg

    def _r_get_webhook_message(
        self, rec: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._webhook_message(app_id, token, message_id)
        return (200, msg) if msg is not None else _error(404, 10008, "Unknown Message")

    def _r_edit_webhook_message(
        self, rec: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._webhook_message(app_id, token, message_id)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        return self._apply_edit(msg, rec.body or {}, rec.files)

    def _r_delete_webhook_message(
        self, rec: RecordedRequest, app_id: str, token: str, message_id: str
    ) -> tuple[int, Any]:
        msg = self._webhook_message(app_id, token, message_id)
        if msg is None:
            return _error(404, 10008, "Unknown Message")
        msg.deleted = True
        return 204, None


def _form_fields(body: Any) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (read as text) as a dict."""
    if isinstance(body, dict):
        return {str(k): str(v) for k, v in body.items()}
    if not isinstance(body, str):
        return {}
    return {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}


async def _read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    if not request.body_exists:
        return None, []
    if request.content_type.startswith("multipart/"):
        payload: Any = None
        files: list[UploadedFile] = []
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: never sent by discord.py
            raw = bytes(await part.read(decode=False))
            name = part.name or ""
            if name == "payload_json":
                payload = json.loads(raw)
                continue
            m = re.fullmatch(r"files\[(\d+)\]", name)
            filename = part.filename or name
            files.append(
                UploadedFile(
                    field=name,
                    index=int(m.group(1)) if m else None,
                    filename=filename,
                    content_type=_guess_type(filename),
                    data=raw,
                )
            )
        return payload, files
    raw_body = await request.read()
    if not raw_body:
        return None, []
    try:
        return json.loads(raw_body), []
    except ValueError:
        return raw_body.decode(errors="replace"), []


# --------------------------------------------------------------------------------------------
# Pytest-friendly helper
# --------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def connected_bot(
    standin: DiscordStandIn,
    bot: discord.Client,
    *,
    token: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
    guild_ready_timeout: float | None = 0.05,
) -> AsyncIterator[discord.Client]:
    """Run ``bot`` against ``standin`` until the block exits, then close it cleanly.

    Patches ``Route.BASE`` / ``DEFAULT_GATEWAY`` for the duration, starts ``bot.start(token)``
    in a task and waits until the bot is ready (READY + GUILD_CREATEs processed).
    ``guild_ready_timeout`` (if not None) overrides the bot's wait after the last
    GUILD_CREATE (discord.py's default is 2 s). A closed discord.py client cannot be
    restarted: to test a restart, exit this block and enter it again with a NEW bot object.
    """
    with standin.patch_discord():
        if guild_ready_timeout is not None:
            bot._connection.guild_ready_timeout = guild_ready_timeout
        previous_bot = standin.bot
        standin.bot = bot
        task = asyncio.create_task(bot.start(token or standin.token), name="discord-standin-bot")
        failed = False
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not bot.is_ready():
                if task.done():
                    task.result()  # raises the start-up error (LoginFailure, ConnectionClosed...)
                    raise StandInError("bot.start() returned before the bot became ready")
                if loop.time() > deadline:
                    raise TimeoutError(
                        f"bot not ready after {timeout}s; requests: {standin._recent_requests()}"
                    )
                await asyncio.sleep(0.01)
            yield bot
        except BaseException:
            failed = True
            raise
        finally:
            standin.bot = previous_bot
            try:
                await asyncio.wait_for(bot.close(), timeout)
            finally:
                done, _ = await asyncio.wait({task}, timeout=timeout)
                if not done:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                exc = None if task.cancelled() else task.exception()
            if exc is not None and not failed:
                raise exc
