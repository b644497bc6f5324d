"""What signed-in members do with the images they see: like them (the bot's Like
button's service), page through their likes, keep a tag blacklist (the same kv list the
Discord /blacklist edits), and report an image to the owners (core/reports.py, which
reaches them in Discord exactly as the bot's Report button does)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core import blacklist as blacklists
from core.errors import InvalidInput, NotFound
from core.models import Filters, Rating
from web.auth import age_confirmed, check_csrf
from web.blacklist import blacklist_of
from web.keys import SERVICES
from web.pages import (
    _UUID,
    MAX_PAGE_NUMBER,
    PAGE_SIZE,
    _form,
    _htmx,
    _see_other,
    _signed_in,
    _split,
    render,
)


def _image_id(request: web.Request) -> str:
    image_id = request.match_info["id"]
    if not _UUID.fullmatch(image_id):
        raise NotFound("Image not found")
    return image_id.lower()


def _page_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE_NUMBER:
        raise InvalidInput(f"page must be a number from 1 to {MAX_PAGE_NUMBER}", field="page")
    return int(text)


async def like(request: web.Request) -> web.Response:
    """Like or unlike an image (the form says which, so a repeated click or a resent form
    changes nothing twice); htmx gets the button and its count, a browser goes back."""
    session = await _signed_in(request)
    form = await _form(request)
    check_csrf(request, session, form)
    image_id = _image_id(request)
    on = form.get("on", "")
    if on not in ("1", "0"):
        raise InvalidInput("on must be 1 (like) or 0 (unlike)", field="on")
    likes = await request.app[SERVICES].images.set_like(image_id, session.user, on=on == "1")
    if _htmx(request):
        context = {"image_id": image_id, "liked": on == "1", "likes": likes}
        return await render(request, "_like.html", context)
    raise _see_other(f"/i/{image_id}")


async def likes_page(request: web.Request) -> web.Response:
    """The member's liked images, newest like first (above sfw only after the age
    confirmation; none with a tag on their blacklist)."""
    session = await _signed_in(request)
    number = _page_number(request.rel_url.query.get("page", "1") or "1")
    ratings = frozenset() if age_confirmed(request) else frozenset({Rating.SFW})
    filters = (await blacklist_of(request)).apply(Filters(ratings=ratings))
    page = await request.app[SERVICES].images.favourites(
        session.user, filters, (number - 1) * PAGE_SIZE, PAGE_SIZE
    )
    more = page.skip + len(page.images) < page.total and number < MAX_PAGE_NUMBER
    return await render(
        request,
        "likes.html",
        {"page": page, "number": number, "next_page": number + 1 if more else None},
    )


async def blacklist_page(request: web.Request) -> web.Response:
    """The member's blacklist, with a form to add tags and a button to remove each."""
    session = await _signed_in(request)
    tags = await blacklists.read_list(
        request.app[SERVICES].kv, blacklists.member_key(session.user.id)
    )
    return await render(request, "blacklist.html", _blacklist_context(tags))


def _blacklist_context(tags: tuple[str, ...] | list[str], error: str = "") -> dict[str, Any]:
    return {"tags": tags, "error": error, "max_tags": blacklists.MAX_TAGS}


async def edit_blacklist(request: web.Request) -> web.Response:
    """Add tags to (`action=add`, `q` comma-separated) or remove one from
    (`action=remove`, `tag`) the member's blacklist."""
    session = await _signed_in(request)
    form = await _form(request)
    check_csrf(request, session, form)
    kv = request.app[SERVICES].kv
    key = blacklists.member_key(session.user.id)
    action = form.get("action", "")
    if action == "add":
        wanted = _split(form.get("q"))
        if not wanted:
            raise InvalidInput("Name at least one tag", field="q")
        try:
            await blacklists.add_tags(kv, key, wanted)
        except InvalidInput as error:
            # Shown on the page, the list as it stays, so the member can fix the form.
            tags = await blacklists.read_list(kv, key)
            return await render(
                request, "blacklist.html", _blacklist_context(tags, error.message), status=400
            )
    elif action == "remove":
        tag = (form.get("tag") or "").strip()
        if not tag:
            raise InvalidInput("Which tag?", field="tag")
        await blacklists.remove_tags(kv, key, (tag,))
    else:
        raise InvalidInput("action must be add or remove", field="action")
    raise _see_other("/me/blacklist")


async def report(request: web.Request) -> web.Response:
    """Report an image to the owners (once per member and image: a second report is
    refused with core's words)."""
    session = await _signed_in(request)
    form = await _form(request)
    check_csrf(request, session, form)
    image_id = _image_id(request)
    await request.app[SERVICES].reports.report(
        image_id, session.user, form.get("reason", ""), form.get("text", "")
    )
    raise _see_other(f"/i/{image_id}#report")


def routes() -> list[web.RouteDef]:
    """Likes, the blacklist and reports, for signed-in members."""
    return [
        web.post("/i/{id}/like", like, name="gallery.like"),
        web.post("/i/{id}/report", report, name="gallery.report"),
        web.get("/me/likes", likes_page, name="gallery.likes"),
        web.get("/me/blacklist", blacklist_page, name="gallery.blacklist"),
        web.post("/me/blacklist", edit_blacklist, name="gallery.blacklist_edit"),
    ]
