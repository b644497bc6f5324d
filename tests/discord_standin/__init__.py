"""A loopback stand-in for Discord for end-to-end tests of a discord.py 2.7 bot.

    from tests.discord_standin import DiscordStandIn, connected_bot

See README.md in this directory.
"""

from . import server
from .server import *  # noqa: F403 (the public names are listed once, in server.__all__)

__all__ = server.__all__
