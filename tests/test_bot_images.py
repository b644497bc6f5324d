"""/random, /search, /upload, /stats and autocomplete, through the real discord.py
against the Discord stand-in."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests import botkit
from tests.botkit import bot_settings, embed_image_id, store_image
from tests.conftest import ALL_BACKENDS, make_image
from tests.discord_standin import DiscordStandIn, SentMessage, connected_bot

# isort: split
from cogs.client import GENERIC_FAILURE, GazouBot
from cogs.shared import NSFW_REFUSAL, image_embed, show_image
from core.models import Rating
from core.services import Services, open_services

BACKENDS = ALL_BACKENDS

# The bot fixtures (module-level names, so they win over conftest's settings/services).
settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot


async def run_random(standin: DiscordStandIn, options: dict | None = None, **where) -> dict:
    """Invoke /random and return the public message it posted."""
    inter = await standin.invoke_command("random", options, **where)
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 5, reply
    return await standin.wait_for_followup(inter)


async def test_random_posts_the_image_as_an_attachment_with_its_metadata(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(
        services, 1, tags=("cat", "cute"), title="Nap", source_url="https://example.org/nap"
    )
    message = await run_random(standin)
    embed = message["embeds"][0]
    assert embed["title"] == "Nap"
    assert embed["color"] == int(image.dominant_color[1:], 16)
    assert embed["image"]["url"] == f"attachment://{image.filename}"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Artist"] == "someone"
    assert fields["Tags"] == "cat, cute"
    assert fields["Size"].startswith("80×60")
    assert message.files[0].data == await services.images.read_bytes(image)
    assert not message.ephemeral
    source = next(c for c in message.iter_components() if c.get("label") == "Source")
    assert source["url"] == "https://example.org/nap"


async def test_random_in_an_age_restricted_channel_shows_nsfw_images(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1, rating=Rating.NSFW)
    message = await run_random(standin, channel=standin.nsfw_channel)
    assert embed_image_id(message) == image.id


async def test_random_in_a_sfw_channel_only_shows_sfw_images(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    sfw = await store_image(services, 1)
    for seed in (2, 3, 4):
        await store_image(services, seed, rating=Rating.QUESTIONABLE)
    shown = {embed_image_id(await run_random(standin)) for _ in range(3)}
    assert shown == {sfw.id}


async def test_random_asking_for_nsfw_outside_an_age_restricted_channel_is_refused(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, rating=Rating.NSFW)
    inter = await standin.invoke_command("random", {"rating": "nsfw"})
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 4 and reply.ephemeral
    assert reply.content == NSFW_REFUSAL


async def test_random_in_a_dm_is_sfw_only(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    sfw = await store_image(services, 1)
    await store_image(services, 2, rating=Rating.NSFW)
    shown = {embed_image_id(await run_random(standin, dm=True)) for _ in range(2)}
    assert shown == {sfw.id}


async def test_random_asking_for_nsfw_in_a_dm_is_refused(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, rating=Rating.NSFW)
    inter = await standin.invoke_command("random", {"rating": "nsfw"}, dm=True)
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral and reply.content == NSFW_REFUSAL


async def test_random_shows_every_match_once_before_repeating(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    ids = {(await store_image(services, seed)).id for seed in range(4)}
    shown = [embed_image_id(await run_random(standin)) for _ in range(4)]
    assert sorted(shown) == sorted(ids)


async def test_random_with_no_match_says_so_ephemerally(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("dog",))
    inter = await standin.invoke_command("random", {"tags": "cat"})
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral and reply.content == "No image matches those filters."


async def test_another_rerolls_with_the_same_filters(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    cats = {(await store_image(services, seed, tags=("cat",))).id for seed in (1, 2)}
    await store_image(services, 3, tags=("dog",))
    first = await run_random(standin, {"tags": "cat"})
    again = next(i for i in first.custom_ids() if i.startswith("img:again:"))
    click = await standin.click(first, again)
    assert (await standin.wait_for_reply(click)).type == 5
    second = await standin.wait_for_followup(click)
    assert {embed_image_id(first), embed_image_id(second)} == cats


async def test_another_in_a_sfw_channel_keeps_to_sfw(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    sfw = await store_image(services, 1)
    await store_image(services, 2, rating=Rating.NSFW)
    first = await run_random(standin)
    again = next(i for i in first.custom_ids() if i.startswith("img:again:"))
    click = await standin.click(first, again)
    await standin.wait_for_reply(click)
    assert embed_image_id(await standin.wait_for_followup(click)) == sfw.id


async def test_like_button_toggles_the_members_like(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    message = await run_random(standin)
    like = f"img:like:{image.id}"
    first = await standin.wait_for_reply(await standin.click(message, like))
    second = await standin.wait_for_reply(await standin.click(message, like))
    assert first.ephemeral and first.content == "You like this image (1 like)."
    assert second.content == "You no longer like this image (0 likes)."


async def test_random_with_a_public_url_points_the_embed_at_it(
    standin: DiscordStandIn, tmp_path
) -> None:
    settings = bot_settings(tmp_path / "pub", PUBLIC_URL="https://img.example.org")
    async with open_services(settings) as services:
        image = await store_image(services, 1)
        async with connected_bot(standin, GazouBot(services)):
            message = await run_random(standin)
    assert message["embeds"][0]["image"]["url"] == f"https://img.example.org/image/{image.id}"
    assert message.files == []


async def test_unexpected_error_is_a_short_ephemeral_message_and_logged(
    standin: DiscordStandIn, bot: GazouBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    image = await store_image(services, 1)
    # The bytes vanished behind gazou's back.
    await services.storage.blobs.remove(services.images.blob_key(image))
    inter = await standin.invoke_command("random")
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 4 and reply.ephemeral
    assert reply.content == GENERIC_FAILURE
    assert "BlobNotFound" in caplog.text
    assert "Traceback" in caplog.text


# ---- /search ------------------------------------------------------------------------


async def run_search(standin: DiscordStandIn, options: dict | None = None, **where) -> SentMessage:
    inter = await standin.invoke_command("search", options, **where)
    await standin.wait_for_reply(inter)
    return await standin.wait_for_followup(inter)


def page_button(message: SentMessage, action: str) -> str:
    """The custom id of a page button (previous, jump, next) on a results message."""
    return next(i for i in message.custom_ids() if i.startswith(f"search:{action}:"))


async def turn_page(standin: DiscordStandIn, message: SentMessage, action: str) -> None:
    """Press a page button and wait for the bot to edit the results."""
    edits = len(message.edits)
    reply = await standin.wait_for_reply(await standin.click(message, page_button(message, action)))
    assert reply.type == 6  # acknowledged at once, edited after
    await standin.wait_until(lambda: len(message.edits) > edits, what="the page edited")


async def test_search_pages_through_results_with_buttons(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    stored = [await store_image(services, seed) for seed in range(3)]
    message = await run_search(standin, {"sort": "oldest"})
    assert message.content == "Page 1 of 3"
    assert embed_image_id(message) == stored[0].id
    assert message.component(page_button(message, "previous"))["disabled"] is True
    await turn_page(standin, message, "next")
    assert message.content == "Page 2 of 3"
    assert embed_image_id(message) == stored[1].id
    assert message.files[-1].data == await services.images.read_bytes(stored[1])
    await turn_page(standin, message, "next")
    assert message.content == "Page 3 of 3"
    assert message.component(page_button(message, "next"))["disabled"] is True
    await turn_page(standin, message, "previous")
    assert embed_image_id(message) == stored[1].id


async def test_search_jumps_to_a_page_through_a_modal(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    stored = [await store_image(services, seed) for seed in range(4)]
    message = await run_search(standin, {"sort": "oldest"})
    jump = await standin.click(message, page_button(message, "jump"))
    assert (await standin.wait_for_reply(jump)).type == 9
    [field] = [c for c in standin.callbacks[-1].data["components"][0]["components"]]
    submit = await standin.submit_modal(jump, {field["custom_id"]: "4"})
    assert (await standin.wait_for_reply(submit)).type == 6
    await standin.wait_until(lambda: message.content == "Page 4 of 4", what="page 4")
    assert embed_image_id(message) == stored[3].id


async def test_search_buttons_refuse_another_member(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    for seed in range(2):
        await store_image(services, seed)
    message = await run_search(standin)
    reply = await standin.wait_for_reply(
        await standin.click(message, page_button(message, "next"), user=standin.owner)
    )
    assert reply.ephemeral and "belong to the member who searched" in reply.content
    assert message.content == "Page 1 of 2"


async def test_search_in_a_sfw_channel_leaves_out_nsfw_images(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    sfw = await store_image(services, 1)
    await store_image(services, 2, rating=Rating.NSFW)
    message = await run_search(standin)
    assert message.content == "Page 1 of 1"
    assert embed_image_id(message) == sfw.id


async def test_search_with_no_results_says_so(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("dog",))
    inter = await standin.invoke_command("search", {"tags": "cat"})
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral and reply.content == "No image matches that search."


# ---- /upload ------------------------------------------------------------------------


async def run_upload(
    standin: DiscordStandIn, data: bytes, user=None, filename: str = "pic.png"
) -> str:
    attachment = standin.add_attachment(filename, data)
    inter = await standin.invoke_command(
        "upload", {"image": attachment, "tags": "cat, cute", "artist": "alice"}, user=user
    )
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 5 and reply.ephemeral
    followup = await standin.wait_for_followup(inter)
    assert followup.ephemeral
    return followup.content


async def test_member_upload_starts_pending(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    text = await run_upload(standin, make_image(seed=7))
    assert "is pending" in text
    image_id = text.split("`")[1]
    image = await services.images.get(image_id, include_pending=True)
    assert image.status == "pending"
    assert image.uploader is not None and image.uploader.id == str(standin.user.id)
    assert image.tag_names == ["cat", "cute"]


async def test_owner_upload_is_approved_at_once(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    text = await run_upload(standin, make_image(seed=7), user=standin.owner)
    # PUBLIC_URL is on loopback here: a link would lead nowhere, so there is none.
    assert re.fullmatch(r"Added to the collection \(id `[0-9a-f-]{36}`\)\.", text), text
    image_id = text.split("`")[1]
    assert (await services.images.get(image_id)).status == "approved"


async def test_owner_upload_links_the_image_when_public_url_is_public(
    standin: DiscordStandIn, tmp_path
) -> None:
    settings = bot_settings(tmp_path / "pub", PUBLIC_URL="https://img.example.org")
    async with open_services(settings) as services:
        async with connected_bot(standin, GazouBot(services)):
            text = await run_upload(standin, make_image(seed=7), user=standin.owner)
    image_id = text.split("`")[1]
    assert text == (
        f"Added to the collection: https://img.example.org/image/{image_id} (id `{image_id}`)."
    )


async def test_duplicate_upload_links_the_existing_image(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    existing = await store_image(services, 7)
    text = await run_upload(standin, make_image(seed=7, size=(80, 60)))
    assert text == f"Duplicate: this image is already in the collection (id `{existing.id}`)."


async def test_upload_of_a_non_image_is_refused_with_the_reason(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    text = await run_upload(standin, b"%PDF-1.4 not an image", filename="doc.png")
    assert text.startswith("Upload refused: ")
    assert len(text) > len("Upload refused: ")
    assert (await services.images.stats()).pending == 0


# ---- autocomplete and /stats ----------------------------------------------------------


async def test_tag_autocomplete_completes_the_last_item_of_a_list(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("cat", "catgirl", "dog"))
    inter = await standin.autocomplete("random", {"tags": "dog, ca"}, focused="tags")
    reply = await standin.wait_for_reply(inter)
    assert reply.type == 8
    assert [c["value"] for c in reply.data["choices"]] == ["dog, cat", "dog, catgirl"]


async def test_artist_autocomplete_matches_anywhere_in_the_name(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, artist="Hokusai")
    await store_image(services, 2, artist="Hiroshige")
    inter = await standin.autocomplete("search", {"artist": "kus"}, focused="artist")
    reply = await standin.wait_for_reply(inter)
    assert [c["name"] for c in reply.data["choices"]] == ["Hokusai"]


async def test_stats_shows_the_counts(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1)
    await store_image(services, 2, rating=Rating.NSFW)
    await store_image(services, 3, trusted=False)
    reply = await standin.wait_for_reply(await standin.invoke_command("stats"))
    fields = {f["name"]: f["value"] for f in reply.data["embeds"][0]["fields"]}
    assert fields["Images"] == "2"
    assert fields["Pending review"] == "1"
    assert fields["By rating"] == "sfw: 1\nquestionable: 0\nnsfw: 1"


async def test_search_shows_a_lower_bound_when_the_total_is_not_exact(
    standin: DiscordStandIn, bot: GazouBot, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_module = type(services.storage.repo).__module__
    monkeypatch.setattr(f"{repo_module}.TOTAL_CAP", 2)  # counting stops here, as at 10 000
    for seed in range(3):
        await store_image(services, seed)
    message = await run_search(standin, {"tags": "cat"})  # tag and rating: a counted total
    assert message.content == "Page 1 of 2+"
    await turn_page(standin, message, "next")
    await turn_page(standin, message, "next")
    assert message.content == "Page 3 of 3+"
    assert message.component(page_button(message, "next"))["disabled"] is False


async def test_image_over_the_upload_limit_is_shown_by_its_thumbnail(
    bot: GazouBot, services: Services
) -> None:
    image = await store_image(services, 1)
    embed = image_embed(image)
    [attached] = await show_image(bot, image, embed, limit=image.size - 1)
    assert attached.filename == f"{image.id}-thumbnail.jpg"
    assert embed.image.url == f"attachment://{image.id}-thumbnail.jpg"
    assert attached.fp.read() == await services.images.read_bytes(image, thumbnail=True)


async def test_search_buttons_ask_for_a_new_search_once_the_results_are_forgotten(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    for seed in range(2):
        await store_image(services, seed)
    message = await run_search(standin)
    [(key, expires_at)] = await services.storage.repo._all(
        "SELECT key, expires_at FROM kv WHERE key LIKE 'discord:search:%'"
    )
    assert expires_at is not None  # kept for a while, not for ever
    await services.storage.repo.kv_set(key, "{}", expires_in=timedelta(seconds=-1))
    reply = await standin.wait_for_reply(await standin.click(message, page_button(message, "next")))
    assert reply.ephemeral
    assert reply.content == "These results are no longer kept; run /search again."
    assert message.content == "Page 1 of 2"


async def test_random_outside_age_restricted_channels_says_when_only_nsfw_matches(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("cat",), rating=Rating.NSFW)
    await store_image(services, 2, tags=("dog",))
    inter = await standin.invoke_command("random", {"tags": "cat"})
    reply = await standin.wait_for_reply(inter)
    assert reply.ephemeral and reply.content == (
        "No sfw image matches those filters. Images above sfw match, but they are only "
        "shown in age-restricted channels; try there."
    )
    # Where nothing matches at all, it says just that.
    inter = await standin.invoke_command("random", {"tags": "bird"})
    reply = await standin.wait_for_reply(inter)
    assert reply.content == "No image matches those filters."


async def test_search_outside_age_restricted_channels_says_when_only_nsfw_matches(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    await store_image(services, 1, tags=("cat",), rating=Rating.QUESTIONABLE)
    reply = await standin.wait_for_reply(await standin.invoke_command("search", {"tags": "cat"}))
    assert reply.ephemeral and reply.content.startswith("No sfw image matches that search.")
    in_nsfw = await run_search(standin, {"tags": "cat"}, channel=standin.nsfw_channel)
    assert in_nsfw.content == "Page 1 of 1"


async def test_failure_after_a_public_defer_replaces_the_loading_message_privately(
    standin: DiscordStandIn, bot: GazouBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    await store_image(services, 1)
    # Discord refuses the message that would fill the "thinking..." reply.
    standin.override(
        "POST",
        r"/webhooks/\d+/[^/]+",
        400,
        {"message": "Invalid Form Body", "code": 50035},
        times=1,
    )
    inter = await standin.invoke_command("random")
    assert (await standin.wait_for_reply(inter)).type == 5
    notice = await standin.wait_until(
        lambda: next((m for m in standin.sent_messages() if m.source == "followup"), None),
        what="the error follow-up",
    )
    assert notice.ephemeral and notice.content == GENERIC_FAILURE
    assert inter.original is not None and inter.original.deleted
    assert "Invalid Form Body" in caplog.text
