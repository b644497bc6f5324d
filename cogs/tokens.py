"""API tokens from Discord: members request, owners decide by DM; owner commands to
issue, revoke and list. A secret only ever appears in a DM or an ephemeral reply."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from cogs.client import GazouBot, report_error
from cogs.shared import member, require_owner, split_list
from core.models import IssuedToken, Token, TokenRequest, User
from core.tokens import KNOWN_SCOPES, SCOPE_CUSTOM_EXPIRY, parse_scopes

log = logging.getLogger("gazou.bot.tokens")

GAZOU = User(id="gazou", name="gazou")
STATUS_COLOURS = {
    "pending": discord.Colour.gold(),
    "approved": discord.Colour.green(),
    "denied": discord.Colour.red(),
}


# Where each request was DMed, to update every owner's copy on the decision.
DMS_WHILE_PENDING = timedelta(days=30)
DMS_AFTER_DECISION = timedelta(days=1)


def _dm_key(request_id: str) -> str:
    return f"discord:token-request:{request_id}"


def request_embed(request: TokenRequest, note: str | None = None) -> discord.Embed:
    """A token request as the owners see it, with who decided it once decided."""
    embed = discord.Embed(
        title="API token request",
        colour=STATUS_COLOURS.get(request.status, discord.Colour.default()),
        description=request.purpose[:4000],
    )
    embed.add_field(
        name="From",
        value=f"<@{request.requester_id}> ({request.requester_name})"
        if request.requester_id.isdigit()
        else request.requester_name,
    )
    status = request.status
    if request.decider_name:
        status += f" by {request.decider_name}"
    embed.add_field(name="Status", value=status)
    if note:
        embed.add_field(name="Note", value=note, inline=False)
    embed.set_footer(text=f"request {request.id}")
    return embed


def secret_message(issued: IssuedToken, intro: str) -> str:
    """The one message that carries a secret."""
    token = issued.token
    expiry = f", expires {token.expires_at:%Y-%m-%d}" if token.expires_at else ""
    return (
        f"{intro}\n```\n{issued.secret}\n```\nThis is the only time it is shown; keep "
        f"it safe. Token id `{token.id}`, scopes: {', '.join(token.scopes) or 'none'}"
        f"{expiry}. Most clients send it as `Authorization: Bearer <token>`."
    )


class TokenDecision(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"token:(?P<action>approve|deny):(?P<id>[0-9a-f-]{36})",
):
    """Approve or Deny on the owners' copies of a token request (persistent)."""

    def __init__(self, action: str, request_id: str) -> None:
        approve = action == "approve"
        super().__init__(
            discord.ui.Button(
                label="Approve" if approve else "Deny",
                style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
                custom_id=f"token:{action}:{request_id}",
            )
        )
        self.action = action
        self.request_id = request_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> TokenDecision:
        return cls(match["action"], match["id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        try:
            await decide_request(interaction, self.request_id, self.action == "approve")
        except Exception as exc:
            await report_error(interaction, exc)


def decision_view(request_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(TokenDecision("approve", request_id))
    view.add_item(TokenDecision("deny", request_id))
    return view


async def decide_request(
    interaction: discord.Interaction[GazouBot], request_id: str, approve: bool
) -> None:
    """Approve (issue and DM the token) or deny a request; update every owner's copy."""
    bot = interaction.client
    await require_owner(bot, interaction.user)
    tokens = bot.services.tokens
    owner = member(interaction.user)
    await interaction.response.defer()  # a deferred update of the owner's message
    note = None
    if approve:
        request, issued = await tokens.approve_request(request_id, owner)
        requester_id = int(request.requester_id) if request.requester_id.isdigit() else None
        sent = requester_id is not None and await bot.send_dm(
            requester_id,
            content=secret_message(
                issued, f"Your API token request was approved by {owner.name}. Your token:"
            ),
        )
        if not sent:
            # Undeliverable secrets must not stay valid: nobody will ever see them.
            await tokens.revoke(issued.token.id)
            note = (
                "The member's DMs are closed, so the token could not be delivered and "
                "was revoked. They can open their DMs and request again."
            )
    else:
        request = await tokens.deny_request(request_id, owner)
        if request.requester_id.isdigit():
            await bot.send_dm(
                int(request.requester_id),
                content=(
                    f"Your API token request ({request.purpose[:200]}) was denied by the owners."
                ),
            )
    embed = request_embed(request, note)
    await interaction.edit_original_response(embed=embed, view=None)
    stored = await bot.services.kv.kv_get(_dm_key(request_id))
    if stored:
        others = [
            (c, m)
            for c, m in json.loads(stored)
            if interaction.message is None or m != interaction.message.id
        ]
        await bot.edit_messages(others, embed=embed, view=None)
        await bot.services.kv.kv_set(_dm_key(request_id), stored, expires_in=DMS_AFTER_DECISION)
    if note:
        await interaction.followup.send(note, ephemeral=True)


class Tokens(commands.Cog):
    """API tokens: members request them, owners issue, revoke and list them."""

    token = app_commands.Group(name="token", description="API tokens for gazou's HTTP API")

    def __init__(self, bot: GazouBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(TokenDecision)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(TokenDecision)

    @token.command(name="request")
    @app_commands.describe(purpose="what you will use the token for")
    async def request(
        self, interaction: discord.Interaction[GazouBot], purpose: app_commands.Range[str, 1, 500]
    ) -> None:
        """Ask the owners for an API token; it arrives by DM when approved."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        tokens = self.bot.services.tokens
        request = await tokens.request(member(interaction.user), purpose)

        async def build() -> dict[str, Any]:
            return {"embed": request_embed(request), "view": decision_view(request.id)}

        sent = await self.bot.dm_each(await self.bot.owner_user_ids(), build)
        if not sent:
            await tokens.deny_request(request.id, GAZOU)
            await interaction.followup.send(
                "No owner can be reached by DM right now, so your request could not be "
                "delivered. Please try again later.",
                ephemeral=True,
            )
            return
        refs = [(m.channel.id, m.id) for m in sent]
        await self.bot.services.kv.kv_set(
            _dm_key(request.id), json.dumps(refs), expires_in=DMS_WHILE_PENDING
        )
        await interaction.followup.send(
            "Your request was sent to the owners. If they approve it, the token arrives by "
            "DM, so keep DMs from this server open.",
            ephemeral=True,
        )

    @token.command(name="issue")
    @app_commands.describe(
        user="who the token is for",
        scopes="comma-separated scopes, e.g. image:upload,image:list",
        expires="days until the token stops working (default: never)",
        purpose="what the token is for",
    )
    async def issue(
        self,
        interaction: discord.Interaction[GazouBot],
        user: discord.User,
        scopes: str,
        expires: app_commands.Range[int, 1, 3650] | None = None,
        purpose: str = "",
    ) -> None:
        """(owners) Issue a token to a member; they get it by DM."""
        await require_owner(self.bot, interaction.user)
        await interaction.response.defer(ephemeral=True, thinking=True)
        issued = await self.bot.services.tokens.issue(
            member(user),
            scopes=parse_scopes(scopes),
            expires_in=timedelta(days=expires) if expires else None,
            purpose=purpose,
            issued_by=f"{interaction.user.name} ({interaction.user.id})",
        )
        sent = await self.bot.send_dm(
            user.id,
            content=secret_message(
                issued, f"{interaction.user.name} issued you an API token for gazou:"
            ),
        )
        if sent:
            text = (
                f"Issued token `{issued.token.id}` to {user.mention} "
                f"({', '.join(issued.token.scopes)}); it was sent to them by DM."
            )
        else:
            text = secret_message(
                issued, f"{user.mention} doesn't accept DMs; give them this token yourself:"
            )
        await interaction.followup.send(text, ephemeral=True)

    @token.command(name="revoke")
    @app_commands.describe(token_id="the token's id (or a unique prefix of it)")
    @app_commands.rename(token_id="id")
    async def revoke(self, interaction: discord.Interaction[GazouBot], token_id: str) -> None:
        """(owners) Revoke a token; it stops working at once."""
        await require_owner(self.bot, interaction.user)
        revoked = await self.bot.services.tokens.revoke(token_id.strip())
        await interaction.response.send_message(
            f"Revoked token `{revoked.id}` of {revoked.owner_name}.", ephemeral=True
        )

    @token.command(name="list")
    @app_commands.describe(user="only this member's tokens")
    async def list_tokens(
        self, interaction: discord.Interaction[GazouBot], user: discord.User | None = None
    ) -> None:
        """(owners) List tokens: ids, owners, scopes and state (never the secrets)."""
        await require_owner(self.bot, interaction.user)
        found = await self.bot.services.tokens.list_tokens(str(user.id) if user else None)
        if not found:
            await interaction.response.send_message("No tokens.", ephemeral=True)
            return
        lines = [self._line(t) for t in found[:25]]
        more = f"\n… and {len(found) - 25} more" if len(found) > 25 else ""
        embed = discord.Embed(
            title=f"Tokens ({len(found)})", description=("\n".join(lines) + more)[:4096]
        )
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @staticmethod
    def _line(token: Token) -> str:
        now = datetime.now(UTC)
        state = "revoked" if token.revoked_at else "expired" if not token.active(now) else "active"
        used = f", last used {token.last_used_at:%Y-%m-%d}" if token.last_used_at else ""
        return (
            f"`{token.id[:8]}` **{token.owner_name}** {state} "
            f"[{' '.join(token.scopes)}]{used}"
            + (f" — {token.purpose[:60]}" if token.purpose else "")
        )

    @issue.autocomplete("scopes")
    async def complete_scopes(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        head, _, last = current.rpartition(",")
        earlier = split_list(head)
        prefix = ",".join(earlier) + "," if earlier else ""
        options = [*KNOWN_SCOPES, f"{SCOPE_CUSTOM_EXPIRY}:86400"]
        return [
            app_commands.Choice(name=prefix + s, value=prefix + s)
            for s in options
            if last.strip() in s and s not in earlier
        ]

    @revoke.autocomplete("token_id")
    async def complete_token_ids(
        self, interaction: discord.Interaction[GazouBot], current: str
    ) -> list[app_commands.Choice[str]]:
        if not await self.bot.is_gazou_owner(interaction.user):
            return []
        now = datetime.now(UTC)
        needle = current.strip().lower()
        choices = []
        for t in await self.bot.services.tokens.list_tokens():
            label = f"{t.owner_name} · {t.purpose or 'no purpose'} · {t.id[:8]}"
            if t.active(now) and (needle in t.id or needle in label.lower()):
                choices.append(app_commands.Choice(name=label[:100], value=t.id))
        return choices[:25]


async def setup(bot: GazouBot) -> None:
    await bot.add_cog(Tokens(bot))
