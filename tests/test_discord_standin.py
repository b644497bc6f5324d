"""Tests of the Discord stand-in itself, driven through a tiny throwaway bot."""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.discord_standin import (
    DiscordStandIn,
    StandInError,
    UserSpec,
    connected_bot,
)

# isort: split
# discord.py is imported after the stand-in, which silences discord.py's import-time
# DeprecationWarning about `audioop` (fatal under filterwarnings = "error").
import discord
from discord import app_commands
from discord.ext import commands

PERSISTENT_ID = "standin-test:panel-ack"


class CounterView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)
        self.count = 0

    @discord.ui.button(label="+1", custom_id="standin-test:count")
    async def bump(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.count += 1
        await interaction.response.edit_message(content=f"count={self.count}", view=self)


class PanelView(discord.ui.View):
    """Persistent: no timeout, stable custom_id, registered with bot.add_view at start-up."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Ack", custom_id=PERSISTENT_ID, style=discord.ButtonStyle.success)
    async def ack(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        button.disabled = True
        boot = interaction.client.boot  # type: ignore[attr-defined]
        await interaction.response.edit_message(
            content=f"acked by {interaction.user.id} on boot {boot}", view=self
        )


class FeedbackModal(discord.ui.Modal, title="Feedback"):
    text = discord.ui.TextInput(label="Text", custom_id="standin-test:feedback-text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


class TinyBot(commands.Bot):
    def __init__(self, boot: int = 1) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            help_command=None,
        )
        self.boot = boot
        tree = self.tree

        @tree.command(name="hello", description="Say hello")
        async def hello(interaction: discord.Interaction, name: str) -> None:
            channel = interaction.channel
            where = "dm" if interaction.guild is None else f"guild {interaction.guild.id}"
            nsfw = getattr(channel, "nsfw", False)
            await interaction.response.send_message(
                f"hello {name} in {where} nsfw={nsfw}", view=CounterView()
            )
            await interaction.followup.send("a private counter", view=CounterView(), ephemeral=True)

        @hello.autocomplete("name")
        async def hello_name(interaction: discord.Interaction, current: str):
            names = ["alice", "albert", "bob"]
            return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

        token = app_commands.Group(name="token", description="API tokens")
        admin = app_commands.Group(name="admin", description="Admin", parent=token)

        @token.command(name="request", description="Request a token")
        async def request(interaction: discord.Interaction, purpose: str, days: int = 30) -> None:
            await interaction.response.send_message(
                f"token for {purpose!r} ({days} days)", ephemeral=True
            )

        @admin.command(name="revoke", description="Revoke a user's tokens")
        async def revoke(interaction: discord.Interaction, user: discord.User) -> None:
            kind = type(user).__name__
            await interaction.response.send_message(f"revoked {user.id} ({kind})")

        tree.add_command(token)

        @tree.command(name="upload", description="Echo an attachment")
        async def upload(interaction: discord.Interaction, file: discord.Attachment) -> None:
            await interaction.response.defer(thinking=True)
            data = await file.read()
            digest = hashlib.sha256(data).hexdigest()
            await interaction.followup.send(
                f"{file.filename} {len(data)} {digest}",
                file=discord.File(io.BytesIO(data[::-1]), filename="reversed.bin"),
            )

        @tree.command(name="panel", description="Post the persistent panel")
        async def panel(interaction: discord.Interaction) -> None:
            assert interaction.channel is not None
            await interaction.channel.send("panel", view=PanelView())  # type: ignore[union-attr]
            await interaction.response.send_message("posted", ephemeral=True)

        @tree.command(name="notify", description="DM a user")
        async def notify(interaction: discord.Interaction, user: discord.User) -> None:
            try:
                await user.send(f"ping from {interaction.user.id}")
            except discord.Forbidden as exc:
                await interaction.response.send_message(f"closed:{exc.code}", ephemeral=True)
            else:
                await interaction.response.send_message("sent", ephemeral=True)

        @tree.command(name="feedback", description="Open a modal")
        async def feedback(interaction: discord.Interaction) -> None:
            await interaction.response.send_modal(FeedbackModal())

    async def setup_hook(self) -> None:
        self.add_view(PanelView())


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandIn]:
    async with DiscordStandIn() as s:
        yield s


@pytest.fixture
async def bot(standin: DiscordStandIn) -> AsyncIterator[TinyBot]:
    async with connected_bot(standin, TinyBot()) as connected:
        yield connected  # type: ignore[misc]


async def test_bot_becomes_ready_with_configured_guilds(
    standin: DiscordStandIn, bot: TinyBot
) -> None:
    assert bot.user is not None and bot.user.id == standin.bot_user.id
    assert bot.application_id == standin.application_id
    assert [g.id for g in bot.guilds] == [standin.guild.id]
    guild = bot.guilds[0]
    assert guild.get_channel(standin.channel.id).nsfw is False  # type: ignore[union-attr]
    assert guild.get_channel(standin.nsfw_channel.id).nsfw is True  # type: ignore[union-attr]
    assert guild.default_role.id == guild.id
    assert guild.me is not None
    identify = standin.identifies[-1]
    assert identify["intents"] == discord.Intents.default().value
    assert [(r.method, r.path) for r in standin.requests[:2]] == [
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
    ]


async def test_is_owner_sees_owner() -> None:
    async with DiscordStandIn() as standin, connected_bot(standin, TinyBot()) as bot:
        assert await bot.is_owner(discord.Object(standin.owner.id))  # type: ignore[arg-type]
        assert not await bot.is_owner(discord.Object(standin.user.id))  # type: ignore[arg-type]


async def test_is_owner_sees_team_members() -> None:
    dev = UserSpec(4242, "dev")
    viewer = UserSpec(4343, "viewer")
    standin = DiscordStandIn(
        team_members=[UserSpec(4141, "lead"), (dev, "developer"), (viewer, "read_only")]
    )
    async with standin, connected_bot(standin, TinyBot()) as bot:
        assert await bot.is_owner(discord.Object(4141))  # type: ignore[arg-type]
        assert await bot.is_owner(discord.Object(dev.id))  # type: ignore[arg-type]
        assert not await bot.is_owner(discord.Object(viewer.id))  # type: ignore[arg-type]
        assert not await bot.is_owner(discord.Object(standin.owner.id))  # type: ignore[arg-type]


async def test_slash_command_reply_and_followup_are_recorded(
    standin: DiscordStandIn, bot: TinyBot
) -> None:
    inter = await standin.invoke_command("hello", {"name": "Ann"})
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 4
    assert reply.data is not None and reply.data["content"] == (
        f"hello Ann in guild {standin.guild.id} nsfw=False"
    )
    assert reply.message is not None and reply.message.custom_ids() == ["standin-test:count"]
    assert reply.message.channel_id == standin.channel.id
    assert inter.payload["channel"]["nsfw"] is False
    assert inter.payload["context"] == 0

    followup = await standin.wait_for_followup(inter)
    assert followup.ephemeral and followup.content == "a private counter"
    assert standin.sent_messages(standin.channel) == [reply.message, followup]

    nsfw = await standin.invoke_command("hello", {"name": "Bo"}, channel=standin.nsfw_channel)
    assert (await standin.wait_for_reply(nsfw)).content.endswith("nsfw=True")  # type: ignore[union-attr]

    dm = await standin.invoke_command("hello", {"name": "Cy"}, dm=True)
    assert (await standin.wait_for_reply(dm)).content == "hello Cy in dm nsfw=False"
    assert dm.payload["context"] == 1 and dm.payload["channel"]["type"] == 1


async def test_subcommand_and_group_options_arrive(standin: DiscordStandIn, bot: TinyBot) -> None:
    inter = await standin.invoke_command("token request", {"purpose": "ci", "days": 7})
    reply = await standin.wait_for_reply(inter)
    assert reply.content == "token for 'ci' (7 days)" and reply.ephemeral
    assert inter.data["options"] == [
        {
            "name": "request",
            "type": 1,
            "options": [
                {"name": "purpose", "type": 3, "value": "ci"},
                {"name": "days", "type": 4, "value": 7},
            ],
        }
    ]

    revoke = await standin.invoke_command("token admin revoke", {"user": standin.owner})
    assert (await standin.wait_for_reply(revoke)).content == f"revoked {standin.owner.id} (Member)"
    group = revoke.data["options"][0]
    assert (group["name"], group["type"]) == ("admin", 2)
    assert group["options"][0]["options"] == [
        {"name": "user", "type": 6, "value": str(standin.owner.id)}
    ]
    assert str(standin.owner.id) in revoke.data["resolved"]["members"]

    with pytest.raises(StandInError):
        await standin.invoke_command("token request", {"nope": 1})


async def test_autocomplete(standin: DiscordStandIn, bot: TinyBot) -> None:
    inter = await standin.autocomplete("hello", {"name": "al"}, focused="name")
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 8
    assert reply.data == {
        "choices": [{"name": "alice", "value": "alice"}, {"name": "albert", "value": "albert"}]
    }


async def test_attachment_option_is_downloadable(standin: DiscordStandIn, bot: TinyBot) -> None:
    payload = bytes(range(256)) * 10
    att = standin.add_attachment("data.bin", payload)
    inter = await standin.invoke_command("upload", {"file": att})
    assert inter.data["resolved"]["attachments"][str(att.id)]["url"] == att.url

    deferred = await standin.wait_for_reply(inter)
    assert deferred.type == 5 and deferred.message is not None
    followup = await standin.wait_for_followup(inter)
    assert followup.content == f"data.bin {len(payload)} {hashlib.sha256(payload).hexdigest()}"
    # The first follow-up after a "thinking" defer replaces the loading message.
    assert followup is deferred.message and followup.flags == 0
    assert [f.data for f in followup.files] == [payload[::-1]]
    assert standin.hosted_file(followup["attachments"][0]).data == payload[::-1]


async def test_button_click_edits_the_message(standin: DiscordStandIn, bot: TinyBot) -> None:
    inter = await standin.invoke_command("hello", {"name": "Ann"})
    message = (await standin.wait_for_reply(inter)).message
    assert message is not None
    for n in (1, 2):
        click = await standin.click(message, "standin-test:count")
        update = await standin.wait_for_reply(click)
        assert update.type == 7 and update.data is not None
        assert update.data["content"] == f"count={n}"
        assert message.content == f"count={n}"  # the recorded message is edited in place
    assert click.payload["message"]["id"] == str(message.id)
    assert click.payload["data"] == {"custom_id": "standin-test:count", "component_type": 2}

    # Buttons on an ephemeral follow-up work too (clicked by the invoking user).
    private = await standin.wait_for_followup(inter)
    update = await standin.wait_for_reply(await standin.click(private, "standin-test:count"))
    assert update.type == 7 and private.content == "count=1"
    with pytest.raises(StandInError):
        await standin.click(private, "standin-test:count", user=standin.owner)
    with pytest.raises(StandInError):
        await standin.click(message, "no-such-button")


async def test_modal_submit(standin: DiscordStandIn, bot: TinyBot) -> None:
    inter = await standin.invoke_command("feedback")
    modal = await standin.wait_for_reply(inter)
    assert modal.type == 9 and modal.data is not None and modal.data["title"] == "Feedback"
    submit = await standin.submit_modal(inter, {"standin-test:feedback-text": "great"})
    assert (await standin.wait_for_reply(submit)).content == "thanks: great"


async def test_persistent_view_survives_a_restart(standin: DiscordStandIn) -> None:
    async with connected_bot(standin, TinyBot(boot=1)):
        inter = await standin.invoke_command("panel")
        assert (await standin.wait_for_reply(inter)).content == "posted"
        panel = await standin.wait_for_message(standin.channel)
        assert panel.source == "channel" and panel.custom_ids() == [PERSISTENT_ID]
    assert not standin.connected

    async with connected_bot(standin, TinyBot(boot=2)):
        click = await standin.click(panel, PERSISTENT_ID, user=standin.owner)
        update = await standin.wait_for_reply(click)
        assert update.type == 7
        assert panel.content == f"acked by {standin.owner.id} on boot 2"
        assert panel.component(PERSISTENT_ID)["disabled"] is True  # type: ignore[index]
        with pytest.raises(StandInError):
            await standin.click(panel, PERSISTENT_ID)
    assert len(standin.identifies) == 2


async def test_dm_is_recorded_and_closed_dm_is_forbidden(
    standin: DiscordStandIn, bot: TinyBot
) -> None:
    inter = await standin.invoke_command("notify", {"user": standin.user}, user=standin.owner)
    assert (await standin.wait_for_reply(inter)).content == "sent"
    dm = await standin.wait_for_dm(standin.user)
    assert dm.content == f"ping from {standin.owner.id}"
    assert dm.channel_id == standin.dm_channel_id(standin.user)

    standin.close_dms(standin.user)
    inter = await standin.invoke_command("notify", {"user": standin.user}, user=standin.owner)
    assert (await standin.wait_for_reply(inter)).content == "closed:50007"

    user = await bot.fetch_user(standin.user.id)
    with pytest.raises(discord.Forbidden) as caught:
        await user.send("direct")
    assert caught.value.code == 50007 and caught.value.status == 403
    assert len(standin.dms(standin.user)) == 1


async def test_command_sync_is_recorded(standin: DiscordStandIn, bot: TinyBot) -> None:
    synced = await bot.tree.sync()
    guild = discord.Object(standin.guild.id)
    bot.tree.copy_global_to(guild=guild)
    guild_synced = await bot.tree.sync(guild=guild)

    assert [s.guild_id for s in standin.command_syncs] == [None, standin.guild.id]
    expected = ["hello", "token", "upload", "panel", "notify", "feedback"]
    assert standin.command_syncs[0].names == expected
    assert [c.name for c in synced] == expected and [c.name for c in guild_synced] == expected
    token = next(c for c in standin.registered_commands() if c["name"] == "token")
    assert {o["name"] for o in token["options"]} == {"request", "admin"}

    # Once synced, invocations carry the registered ids (guild commands win in their guild).
    inter = await standin.invoke_command("hello", {"name": "x"})
    guild_hello = next(c for c in guild_synced if c.name == "hello")
    assert inter.data["id"] == str(guild_hello.id) and inter.data["guild_id"] == str(guild.id)
    await standin.wait_for_reply(inter)


async def test_unknown_routes_are_recorded_and_404(standin: DiscordStandIn, bot: TinyBot) -> None:
    with pytest.raises(discord.NotFound) as caught:
        await bot.fetch_guild(standin.guild.id)
    assert caught.value.text == "404: Not Found"
    assert [(r.method, r.path) for r in standin.unknown_requests] == [
        ("GET", f"/guilds/{standin.guild.id}")
    ]


class DmButtonView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=60)

    @discord.ui.button(label="Done", custom_id="standin-test:dm-done")
    async def done(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.defer()  # type 6: deferred update of the DM message
        await interaction.edit_original_response(content="done", view=None)


def extras_bot(intents: discord.Intents) -> commands.Bot:
    bot = commands.Bot(command_prefix="!", intents=intents, help_command=None)

    @bot.tree.command(name="files", description="Reply with files, then edit them")
    async def files(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            "one file", file=discord.File(io.BytesIO(b"first"), filename="a.txt")
        )
        sent = await interaction.original_response()
        more = discord.File(io.BytesIO(b"second"), filename="b.txt")
        await interaction.edit_original_response(
            content="two files", attachments=[*sent.attachments, more]
        )

    @bot.tree.command(name="dmbutton", description="DM a button")
    async def dmbutton(interaction: discord.Interaction) -> None:
        await interaction.user.send("press when done", view=DmButtonView())
        await interaction.response.send_message("check your DMs", ephemeral=True)

    @bot.tree.command(name="slow", description="Answer too late")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as exc:
            await interaction.channel.send(f"expired:{exc.code}")  # type: ignore[union-attr]

    return bot


async def test_members_intent_guild_is_chunked_over_the_gateway(standin: DiscordStandIn) -> None:
    intents = discord.Intents.default()
    intents.members = True
    async with connected_bot(standin, extras_bot(intents)) as bot:
        guild = bot.guilds[0]
        assert guild.chunked
        assert {m.id for m in guild.members} == {
            standin.bot_user.id,
            standin.owner.id,
            standin.user.id,
        }


async def test_multipart_callback_deferred_update_and_dm_buttons(standin: DiscordStandIn) -> None:
    async with connected_bot(standin, extras_bot(discord.Intents.default())):
        inter = await standin.invoke_command("files")
        reply = await standin.wait_for_reply(inter)
        assert [(f.filename, f.data) for f in reply.files] == [("a.txt", b"first")]
        message = reply.message
        assert message is not None
        await standin.wait_until(lambda: message.content == "two files")
        assert [a["filename"] for a in message["attachments"]] == ["a.txt", "b.txt"]
        assert [f.data for f in message.files] == [b"first", b"second"]

        inter = await standin.invoke_command("dmbutton")
        assert (await standin.wait_for_reply(inter)).ephemeral
        dm = await standin.wait_for_dm(standin.user)
        click = await standin.click(dm, "standin-test:dm-done")
        assert click.payload["context"] == 1 and "user" in click.payload
        assert (await standin.wait_for_reply(click)).type == 6
        await standin.wait_until(lambda: dm.content == "done")
        assert dm.components == []


async def test_deadline_overrides_and_bad_token() -> None:
    async with DiscordStandIn(interaction_deadline=0.1) as standin:
        async with connected_bot(standin, extras_bot(discord.Intents.default())) as bot:
            inter = await standin.invoke_command("slow")
            expired = await standin.wait_for_message(standin.channel)
            assert expired.content == "expired:10062" and inter.callback is None

            standin.override(
                "POST", r"/channels/\d+/messages", 403, {"message": "Missing Access", "code": 50001}
            )
            channel = bot.get_channel(standin.channel.id)
            assert isinstance(channel, discord.TextChannel)
            with pytest.raises(discord.Forbidden) as caught:
                await channel.send("blocked")
            assert caught.value.code == 50001
            assert (await channel.send("allowed again")).content == "allowed again"

        with pytest.raises(discord.LoginFailure):
            async with connected_bot(standin, extras_bot(discord.Intents.default()), token="bad"):
                pass


# ---- OAuth2 (authorization-code grant) ---------------------------------------------------


async def test_oauth2_endpoints_follow_discords_documented_shapes() -> None:
    async with DiscordStandIn() as standin, aiohttp.ClientSession() as http:
        authorize = str(standin.base_url.with_path("/oauth2/authorize"))
        query = {
            "response_type": "code",
            "client_id": str(standin.application_id),
            "scope": "identify",
            "state": "s1",
            "redirect_uri": "http://app.test/cb",
        }
        async with http.get(
            authorize, params={**query, "client_id": "1"}, allow_redirects=False
        ) as wrong_client:
            assert wrong_client.status == 400
        standin.oauth_redirect_uris = ["http://app.test/other"]
        async with http.get(authorize, params=query, allow_redirects=False) as unregistered:
            assert unregistered.status == 400
        standin.oauth_redirect_uris = ["http://app.test/cb"]
        async with http.get(authorize, params=query, allow_redirects=False) as consent:
            assert consent.status == 302
            back = consent.headers["Location"]
        assert back.startswith("http://app.test/cb?code=") and back.endswith("&state=s1")
        code = back.split("code=")[1].split("&")[0]
        token_url = str(standin.base_url.with_path("/api/oauth2/token"))  # no version
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://app.test/cb",
        }
        creds = {"client_id": str(standin.application_id), "client_secret": "wrong"}
        async with http.post(token_url, data={**form, **creds}) as bad_client:
            assert bad_client.status == 401 and (await bad_client.json()) == {
                "error": "invalid_client"
            }
        creds["client_secret"] = standin.client_secret
        async with http.post(token_url, data={**form, **creds}) as exchanged:
            grant = await exchanged.json()
        assert exchanged.status == 200 and grant["token_type"] == "Bearer"
        assert grant["scope"] == "identify" and grant["expires_in"] == 604800
        async with http.post(token_url, data={**form, **creds}) as reused:
            assert reused.status == 400 and (await reused.json())["error"] == "invalid_grant"
        me_url = str(standin.base_url.with_path("/api/users/@me"))
        bearer = {"Authorization": f"Bearer {grant['access_token']}"}
        async with http.get(me_url, headers=bearer) as me:
            user = await me.json()
        assert user["id"] == str(standin.user.id) and user["username"] == "alice"
        async with http.get(me_url, headers={"Authorization": "Bearer nope"}) as unknown:
            assert unknown.status == 401
        standin.oauth_deny = True
        async with http.get(authorize, params=query, allow_redirects=False) as cancelled:
            assert "error=access_denied" in cancelled.headers["Location"]
            assert "state=s1" in cancelled.headers["Location"]
