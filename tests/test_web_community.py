"""What signed-in members do in the gallery: the Like button (htmx swaps its count) and
their likes, their tag blacklist (applied to every page that shows images, edited on
/me/blacklist) and reports reaching the owners in Discord. Every role and refusal,
through aiohttp's test client and the production app; the report through the real bot
against the Discord stand-in."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests import botkit
from tests.botkit import EXTRA_OWNER_ID
from tests.discord_standin import DiscordStandIn

# isort: split
from api.app import create_app
from cogs.client import GazouBot
from cogs.reports import REPORT_CONTENT
from core import blacklist as blacklists
from core.models import IngestMetadata, Rating, User
from core.services import Services
from tests.conftest import MEMBER, OWNER, make_image
from tests.test_web_gallery import page_csrf, sign_in, store

settings = botkit.settings
services = botkit.services
standin = botkit.standin
bot = botkit.bot

OTHERS = [User(str(300 + n), f"fan{n}") for n in range(4)]
ANY_IMAGE = re.compile(r"/i/([0-9a-f-]{36})")


async def member_client(client: TestClient, services: Services, user: User = MEMBER) -> str:
    """Sign `user` in on `client`; the CSRF token of their forms."""
    await sign_in(client, services, user, owner=False)
    return await page_csrf(client, "/me")


async def blacklist(services: Services, user: User, *tags: str) -> None:
    await blacklists.add_tags(services.kv, blacklists.member_key(user.id), tags)


def shown_ids(page: str) -> set[str]:
    return set(ANY_IMAGE.findall(page))


# ---- roles and refusals ------------------------------------------------------------------


async def test_a_visitor_gets_no_like_or_report_form_and_is_refused(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 1)
    page = await (await client.get(f"/i/{image.id}")).text()
    assert f'action="/i/{image.id}/like"' not in page
    assert f'action="/i/{image.id}/report"' not in page
    csrf = await page_csrf(client, "/login")  # a visitor's own (double-submit) token
    for path, data in (
        (f"/i/{image.id}/like", {"csrf": csrf, "on": "1"}),
        (f"/i/{image.id}/report", {"csrf": csrf, "reason": "duplicate"}),
        ("/me/blacklist", {"csrf": csrf, "action": "add", "q": "cat"}),
    ):
        response = await client.post(path, data=data, allow_redirects=False)
        assert response.status == 403, path
        assert "Sign in first." in await response.text()
    for path in ("/me/likes", "/me/blacklist"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == f"/login?next={path}"
    assert (await services.images.get(image.id)).likes == 0
    assert await services.storage.repo.reports_of(image.id) == []


async def test_every_member_form_refuses_a_bad_csrf_token(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 1)
    await member_client(client, services)
    for path, data in (
        (f"/i/{image.id}/like", {"on": "1"}),
        (f"/i/{image.id}/report", {"reason": "duplicate"}),
        ("/me/blacklist", {"action": "add", "q": "cat"}),
    ):
        for token in ({}, {"csrf": "not-the-token"}):
            response = await client.post(path, data={**data, **token}, allow_redirects=False)
            assert response.status == 403, (path, token)
            assert "This form has expired" in await response.text()
    assert (await services.images.get(image.id)).likes == 0
    assert await services.storage.repo.reports_of(image.id) == []
    assert await blacklists.read_list(services.kv, blacklists.member_key(MEMBER.id)) == ()


# ---- likes ---------------------------------------------------------------------------------


async def test_like_without_javascript_goes_back_to_the_image(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 1)
    csrf = await member_client(client, services)
    page = await (await client.get(f"/i/{image.id}")).text()
    assert 'aria-pressed="false"' in page and 'name="on" value="1"' in page
    response = await client.post(
        f"/i/{image.id}/like", data={"csrf": csrf, "on": "1"}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == f"/i/{image.id}"
    page = await (await client.get(f"/i/{image.id}")).text()
    assert 'aria-pressed="true"' in page and 'name="on" value="0"' in page
    assert '<span class="like-count" role="status">1</span>' in page
    # The same like the bot's button records.
    assert await services.images.liked(image.id, MEMBER)


async def test_like_with_htmx_swaps_the_button_and_its_count(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 1)
    await services.images.set_like(image.id, OTHERS[0])
    csrf = await member_client(client, services)
    htmx = {"HX-Request": "true"}
    liked = await client.post(f"/i/{image.id}/like", data={"csrf": csrf, "on": "1"}, headers=htmx)
    fragment = await liked.text()
    assert liked.status == 200 and "<html" not in fragment
    assert fragment.startswith('<form class="like inline"')
    assert '<span class="like-count" role="status">2</span>' in fragment
    assert 'aria-pressed="true"' in fragment
    # A resent "like" changes nothing twice; "unlike" takes it back.
    again = await client.post(f"/i/{image.id}/like", data={"csrf": csrf, "on": "1"}, headers=htmx)
    assert '<span class="like-count" role="status">2</span>' in await again.text()
    unliked = await client.post(f"/i/{image.id}/like", data={"csrf": csrf, "on": "0"}, headers=htmx)
    fragment = await unliked.text()
    assert '<span class="like-count" role="status">1</span>' in fragment
    assert 'aria-pressed="false"' in fragment
    assert (await services.images.get(image.id)).likes == 1


async def test_like_refuses_a_pending_image_and_a_bad_value(
    client: TestClient, services: Services
) -> None:
    pending = await store(services, 1, trusted=False, uploader=MEMBER)
    image = await store(services, 2)
    csrf = await member_client(client, services)
    page = await (await client.get(f"/i/{pending.id}")).text()
    assert "/like" not in page and "/report" not in page
    response = await client.post(f"/i/{pending.id}/like", data={"csrf": csrf, "on": "1"})
    assert response.status == 404
    response = await client.post(f"/i/{image.id}/like", data={"csrf": csrf, "on": "yes"})
    assert response.status == 400 and "on must be 1" in await response.text()
    response = await client.post("/i/not-an-id/like", data={"csrf": csrf, "on": "1"})
    assert response.status == 404


async def test_your_likes_page_newest_like_first(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.community.PAGE_SIZE", 2)
    images = [await store(services, n) for n in range(1, 4)]
    unliked = await store(services, 9)
    for image in (images[1], images[0], images[2]):  # liked in this order
        await services.images.set_like(image.id, MEMBER)
    await services.images.set_like(unliked.id, OTHERS[0])
    await member_client(client, services)
    assert 'href="/me/likes"' in await (await client.get("/me")).text()
    first = await (await client.get("/me/likes")).text()
    assert "3 images you like" in first
    order = ANY_IMAGE.findall(first[first.index('<ul class="grid">') :])
    assert order == [images[2].id, images[0].id]
    assert 'href="/me/likes?page=2"' in first
    second = await (await client.get("/me/likes?page=2")).text()
    assert ANY_IMAGE.findall(second[second.index('<ul class="grid">') :]) == [images[1].id]
    assert unliked.id not in first + second
    assert (await client.get("/me/likes?page=0")).status == 400


async def test_your_likes_above_sfw_wait_for_the_age_confirmation(
    client: TestClient, services: Services
) -> None:
    nsfw = await store(services, 1, rating=Rating.NSFW)
    await services.images.set_like(nsfw.id, MEMBER)
    csrf = await member_client(client, services)
    assert nsfw.id not in await (await client.get("/me/likes")).text()
    await client.post("/age", data={"csrf": csrf, "next": "/"}, allow_redirects=False)
    assert nsfw.id in await (await client.get("/me/likes")).text()


# ---- the blacklist ---------------------------------------------------------------------------


async def test_the_blacklist_page_adds_and_removes_the_discord_list(
    client: TestClient, services: Services
) -> None:
    csrf = await member_client(client, services)
    assert 'href="/me/blacklist"' in await (await client.get("/me")).text()
    page = await (await client.get("/me/blacklist")).text()
    # The home page's tag autocomplete.
    assert 'hx-get="/tags"' in page and 'list="tag-options"' in page
    response = await client.post(
        "/me/blacklist",
        data={"csrf": csrf, "action": "add", "q": "spider, gore, Spider"},
        allow_redirects=False,
    )
    assert response.status == 303 and response.headers["Location"] == "/me/blacklist"
    key = blacklists.member_key(MEMBER.id)
    assert await blacklists.read_list(services.kv, key) == ("spider", "gore")
    page = await (await client.get("/me/blacklist")).text()
    assert 'aria-label="Remove spider"' in page and 'aria-label="Remove gore"' in page
    await client.post("/me/blacklist", data={"csrf": csrf, "action": "remove", "tag": "SPIDER"})
    assert await blacklists.read_list(services.kv, key) == ("gore",)


async def test_the_blacklist_page_refuses_bad_edits_and_keeps_the_list(
    client: TestClient, services: Services
) -> None:
    csrf = await member_client(client, services)
    key = blacklists.member_key(MEMBER.id)
    await blacklist(services, MEMBER, *(f"t{n}" for n in range(blacklists.MAX_TAGS)))
    response = await client.post("/me/blacklist", data={"csrf": csrf, "action": "add", "q": "x"})
    assert response.status == 400
    page = await response.text()
    assert "A blacklist holds at most 50 tags" in page and 'aria-label="Remove t49"' in page
    for data in ({"action": "add", "q": " , "}, {"action": "remove"}, {"action": "drop"}):
        response = await client.post("/me/blacklist", data={"csrf": csrf, **data})
        assert response.status == 400, data
    assert len(await blacklists.read_list(services.kv, key)) == blacklists.MAX_TAGS


async def stock(services: Services) -> tuple[set[str], set[str]]:
    """Five images tagged `spider` (any case, some also `cat`) and five without, by the
    same artist and character; their ids (bad, good)."""
    bad, good = set(), set()
    for n in range(5):
        tags = ("spider", "cat") if n % 2 else ("Spider",)
        meta = IngestMetadata(tags=tags, artist="ann", characters=("kiki",))
        image = await services.images.ingest(
            make_image(seed=100 + n, size=(70, 50)), meta, OWNER, trusted=True
        )
        bad.add(image.id)
        meta = IngestMetadata(tags=("cat",), artist="ann", characters=("kiki",))
        image = await services.images.ingest(
            make_image(seed=200 + n, size=(70, 50)), meta, OWNER, trusted=True
        )
        good.add(image.id)
    return bad, good


async def walk(client: TestClient, path: str, *, htmx: bool = False) -> set[str]:
    """Every image id a listing shows, following its Older links (at most 20 pages)."""
    seen: set[str] = set()
    headers = {"HX-Request": "true"} if htmx else {}
    for _ in range(20):
        response = await client.get(path, headers=headers)
        assert response.status == 200, path
        page = await response.text()
        seen |= shown_ids(page)
        older = re.search(r'rel="next" href="([^"]+)"', page)
        if older is None:
            return seen
        path = older.group(1).replace("&amp;", "&")
    raise AssertionError(f"{path}: more than 20 pages")


LISTINGS = [
    "/",
    "/?sort=oldest",
    "/?sort=likes",
    "/?q=cat",
    "/?artist=ann",
    "/?character=kiki",
    "/tags/cat",
    "/artists/ann",
    "/characters/kiki",
]


async def test_the_blacklist_never_lets_a_tagged_image_through_on_any_page(
    client: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.pages.PAGE_SIZE", 2)
    monkeypatch.setattr("web.community.PAGE_SIZE", 2)
    bad, good = await stock(services)
    for image_id in bad | good:
        await services.images.set_like(image_id, MEMBER)
    # A visitor sees them on every listing (the walk does find them)...
    for path in LISTINGS:
        assert await walk(client, path) & bad, path
    await blacklist(services, MEMBER, "SPIDER")
    await member_client(client, services)
    # ...the member none of the blacklisted, on every page of every listing.
    for path in LISTINGS:
        for htmx in (False, True):
            seen = await walk(client, path, htmx=htmx)
            assert not seen & bad, (path, htmx)
            assert good <= seen, (path, htmx)
    seen = await walk(client, "/me/likes")
    assert not seen & bad and good <= seen
    # Random order: 20 draws of a page each, every one without them.
    for _ in range(20):
        page = await (await client.get("/?sort=random")).text()
        assert not shown_ids(page) & bad and shown_ids(page) & good


async def test_a_search_for_a_blacklisted_tag_says_so(
    client: TestClient, services: Services
) -> None:
    bad, _ = await stock(services)
    await blacklist(services, MEMBER, "spider")
    await member_client(client, services)
    refusal = "<code>Spider</code> is on your blacklist, so no image with it is shown here."
    for path in ("/?q=Spider", "/?q=cat,+Spider&sort=random"):
        page = await (await client.get(path)).text()
        assert refusal in page and not shown_ids(page) & bad, path
    fragment = await (await client.get("/?q=Spider", headers={"HX-Request": "true"})).text()
    assert refusal in fragment and "<html" not in fragment
    page = await (await client.get("/tags/spider")).text()
    assert "is on your blacklist" in page and not shown_ids(page) & bad


async def test_an_image_link_with_a_blacklisted_tag_opens_on_a_notice(
    client: TestClient, services: Services
) -> None:
    bad, good = await stock(services)
    bad_id, good_id = sorted(bad)[0], sorted(good)[0]
    picture = f'<img src="http://127.0.0.1:8080/image/{bad_id}'
    # A visitor (no blacklist) sees the picture; so does the member before listing it.
    for who in ("visitor", "member"):
        if who == "member":
            await member_client(client, services)
        page = await (await client.get(f"/i/{bad_id}")).text()
        assert picture in page and 'on <a href="/me/blacklist">your blacklist' not in page
    await blacklist(services, MEMBER, "spider")
    page = await (await client.get(f"/i/{bad_id}")).text()
    assert 'on <a href="/me/blacklist">your blacklist</a>' in page and picture not in page
    assert f'href="/i/{bad_id}?show=1"' in page
    shown = await (await client.get(f"/i/{bad_id}?show=1")).text()
    assert picture in shown
    other = await (await client.get(f"/i/{good_id}")).text()
    assert f'<img src="http://127.0.0.1:8080/image/{good_id}' in other


async def test_similar_images_leave_out_blacklisted_look_alikes(
    client: TestClient, services: Services
) -> None:
    original = await services.images.ingest(
        make_image(seed=50, size=(96, 96)), IngestMetadata(tags=("cat",)), OWNER, trusted=True
    )
    spider = await services.images.ingest(
        make_image("JPEG", seed=50, size=(160, 160), quality=90),
        IngestMetadata(tags=("spider",)),
        OWNER,
        trusted=True,
    )
    cat = await services.images.ingest(
        make_image("JPEG", seed=50, size=(128, 128), quality=80),
        IngestMetadata(tags=("cat",)),
        OWNER,
        trusted=True,
    )
    page = await (await client.get(f"/i/{original.id}")).text()
    similar = page[page.index("Similar images") :]
    assert spider.id in similar and cat.id in similar
    await blacklist(services, MEMBER, "spider")
    await member_client(client, services)
    page = await (await client.get(f"/i/{original.id}")).text()
    similar = page[page.index("Similar images") :]
    assert spider.id not in similar and cat.id in similar


async def test_most_liked_on_stats_leaves_out_blacklisted_images(
    client: TestClient, services: Services
) -> None:
    spiders = [await store(services, n, tags=("spider",)) for n in range(1, 7)]
    cat = await store(services, 9, tags=("cat",))
    for image in spiders:  # six spiders above the cat: past the first window of five
        for fan in OTHERS[:2]:
            await services.images.set_like(image.id, fan)
    await services.images.set_like(cat.id, OTHERS[0])
    page = await (await client.get("/stats")).text()
    assert sum(s.id in page for s in spiders) == 5 and cat.id not in page
    await blacklist(services, MEMBER, "spider")
    await member_client(client, services)
    page = await (await client.get("/stats")).text()
    assert not any(s.id in page for s in spiders)
    assert page.count(f'href="/i/{cat.id}"') == 2  # this week's and all time's


# ---- reports ---------------------------------------------------------------------------------


async def test_a_report_from_the_gallery_reaches_every_owner_in_discord(
    standin: DiscordStandIn, bot: GazouBot, services: Services
) -> None:
    image = await store(services, 1, title="Nap")
    alice = User(str(standin.user.id), "alice")
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as client:
        csrf = await member_client(client, services, alice)
        page = await (await client.get(f"/i/{image.id}")).text()
        for value in ("wrong_rating", "not_allowed", "duplicate", "other"):
            assert f'name="reason" value="{value}"' in page
        response = await client.post(
            f"/i/{image.id}/report",
            data={"csrf": csrf, "reason": "other", "text": "a screenshot"},
            allow_redirects=False,
        )
        assert response.status == 303
        assert response.headers["Location"] == f"/i/{image.id}#report"
        page = await (await client.get(f"/i/{image.id}")).text()
        assert "You reported this image" in page
        assert f'action="/i/{image.id}/report"' not in page
    for owner in (standin.owner.id, EXTRA_OWNER_ID):
        dm = await standin.wait_for_dm(owner)
        assert dm.content == REPORT_CONTENT
        assert dm.embeds[0]["title"] == "Reported: Nap"
        fields = {f["name"]: f["value"] for f in dm.embeds[0]["fields"]}
        assert fields["Reason"] == "Other"
        assert fields["Reported by"] == f"<@{standin.user.id}> (alice)"
        assert fields["Details"] == "a screenshot"
        assert set(dm.custom_ids()) == {
            f"report:rate:{image.id}",
            f"report:remove:{image.id}",
            f"report:dismiss:{image.id}",
        }


async def test_a_second_report_says_so_and_bad_reports_are_refused(
    client: TestClient, services: Services
) -> None:
    image = await store(services, 1)
    csrf = await member_client(client, services)
    path = f"/i/{image.id}/report"
    for data, status, words in (
        ({"reason": "other", "text": "  "}, 400, "Say what is wrong with this image."),
        ({"reason": "ugly"}, 400, "Unknown reason"),
        ({"reason": "duplicate", "text": "x" * 501}, 400, "Keep it under 500 characters."),
    ):
        response = await client.post(path, data={"csrf": csrf, **data})
        assert response.status == status and words in await response.text(), data
    response = await client.post(path, data={"csrf": csrf, "reason": "duplicate"})
    assert response.status == 200  # followed to the image page
    response = await client.post(path, data={"csrf": csrf, "reason": "wrong_rating"})
    assert response.status == 409
    assert "You already reported this image; the owners have it." in await response.text()
    [report] = await services.storage.repo.reports_of(image.id)
    assert (report.reason.value, report.reporter.id) == ("duplicate", MEMBER.id)
    # Another member may still report it.
    async with TestClient(TestServer(create_app(services), host="127.0.0.1")) as other:
        csrf = await member_client(other, services, OTHERS[0])
        response = await other.post(path, data={"csrf": csrf, "reason": "duplicate"})
        assert response.status == 200
    assert len(await services.storage.repo.reports_of(image.id)) == 2
