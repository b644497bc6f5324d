"""A loopback stand-in for Discord for end-to-end tests of a discord.py 2.7 bot.

    from tests.discord_standin import DiscordStandIn, connected_bot

See README.md in this directory.
"""

from .server import (
    DEFAULT_TIMEOUT,
    ChannelSpec,
    CommandSync,
    DiscordStandIn,
    GuildSpec,
    HostedAttachment,
    InteractionCallback,
    InteractionHandle,
    MemberSpec,
    RecordedRequest,
    RoleSpec,
    SentMessage,
    StandInError,
    UploadedFile,
    UserSpec,
    connected_bot,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "ChannelSpec",
    "CommandSync",
    "DiscordStandIn",
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
