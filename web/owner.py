"""Owner pages beyond moderation: API tokens (list, issue, revoke, members' requests)
over core/tokens.py, the same services the bot's /token commands use; and the
collection's figures (`/stats`, for everyone) from the function the bot's /stats uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from core.errors import InvalidInput
from core.leaderboard import leaderboard
from core.models import IssuedToken, Rating, Token, User
from core.tokens import KNOWN_SCOPES, SCOPE_CUSTOM_EXPIRY, parse_scopes
from web.auth import age_confirmed, check_csrf
from web.blacklist import blacklist_of
from web.keys import SERVICES
from web.pages import _form, _owner, render

MAX_TOKEN_DAYS = 3650
# A page that shows a secret once must not be kept by the browser or anything between.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_NOTICES = {
    "revoked": "Token revoked: it stopped working at once.",
    "denied": "Request denied.",
}


def token_state(token: Token, now: datetime) -> str:
    """active, revoked or expired: what the list shows."""
    if token.revoked_at is not None:
        return "revoked"
    return "active" if token.active(now) else "expired"


async def tokens_page(request: web.Request) -> web.Response:
    """Every token (never a secret: none is stored), the pending requests, the issue form."""
    await _owner(request)
    services = request.app[SERVICES]
    now = datetime.now(UTC)
    found = await services.tokens.list_tokens()
    done = request.rel_url.query.get("done", "")
    return await render(
        request,
        "tokens.html",
        {
            "tokens": [{"token": t, "state": token_state(t, now)} for t in found],
            "requests": await services.tokens.pending_requests(),
            "scopes": KNOWN_SCOPES,
            "custom_expiry": SCOPE_CUSTOM_EXPIRY,
            "default_scopes": services.settings.default_token_scopes,
            "notice": _NOTICES.get(done),
            "max_days": MAX_TOKEN_DAYS,
        },
    )


def _issued_by(user: User) -> str:
    return f"{user.name} ({user.id})"


async def _show_secret(request: web.Request, issued: IssuedToken, intro: str) -> web.Response:
    return await render(
        request, "token_secret.html", {"issued": issued, "intro": intro}, headers=NO_STORE
    )


async def issue_token(request: web.Request) -> web.Response:
    """Issue a token and show its secret, once."""
    session = await _owner(request)
    form = await _form(request)
    check_csrf(request, session, form)
    name = (form.get("name") or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("Say who the token is for (up to 100 characters)", field="name")
    discord_id = (form.get("discord_id") or "").strip()
    if discord_id and not (discord_id.isascii() and discord_id.isdigit() and len(discord_id) < 21):
        raise InvalidInput("A Discord user ID is digits only", field="discord_id")
    days_text = (form.get("days") or "").strip()
    days = None
    if days_text:
        if not days_text.isascii() or not days_text.isdigit():
            raise InvalidInput("Days must be a whole number", field="days")
        days = int(days_text)
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"Days must be from 1 to {MAX_TOKEN_DAYS}", field="days")
    purpose = (form.get("purpose") or "").strip()
    if len(purpose) > 500:
        raise InvalidInput("The purpose is limited to 500 characters", field="purpose")
    scopes = [*form.getall("scopes", []), *(form.get("more_scopes") or "").split(",")]
    owner = User(discord_id or f"web:{name}", name)
    issued = await request.app[SERVICES].tokens.issue(
        owner,
        scopes=parse_scopes(scopes),
        expires_in=timedelta(days=days) if days else None,
        purpose=purpose,
        issued_by=_issued_by(session.user),
    )
    return await _show_secret(request, issued, f"Issued a token for {name}.")


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token: it stops working at once."""
    session = await _owner(request)
    form = await _form(request)
    check_csrf(request, session, form)
    token_id = (form.get("id") or "").strip()
    if not token_id or len(token_id) > 64:
        raise InvalidInput("Which token?", field="id")
    await request.app[SERVICES].tokens.revoke(token_id)
    raise web.HTTPSeeOther("/tokens?done=revoked")


async def decide_request(request: web.Request) -> web.Response:
    """Approve a member's request (its token's secret is shown here once, to hand over)
    or deny it."""
    session = await _owner(request)
    form = await _form(request)
    check_csrf(request, session, form)
    request_id = (form.get("id") or "").strip()
    action = form.get("action", "")
    if action not in ("approve", "deny"):
        raise InvalidInput("action must be approve or deny", field="action")
    if not request_id or len(request_id) > 64:
        raise InvalidInput("Which request?", field="id")
    tokens = request.app[SERVICES].tokens
    if action == "deny":
        await tokens.deny_request(request_id, session.user)
        raise web.HTTPSeeOther("/tokens?done=denied")
    decided, issued = await tokens.approve_request(request_id, session.user)
    return await _show_secret(
        request,
        issued,
        f"Approved {decided.requester_name}'s request. Give them this token yourself "
        "(a Discord DM is sent only when the request is approved from Discord).",
    )


async def stats_page(request: web.Request) -> web.Response:
    """The collection's figures: the bot's /stats, as a page."""
    images = request.app[SERVICES].images
    # Most liked images above sfw only for a visitor who confirmed their age, as the
    # bot names them only in age-restricted channels.
    ratings = frozenset() if age_confirmed(request) else frozenset({Rating.SFW})
    context: dict[str, Any] = {
        "stats": await images.stats(),
        # None of a member's blacklisted tags among the most liked.
        "leaderboard": await leaderboard(
            images, ratings=ratings, exclude_tags=(await blacklist_of(request)).tags
        ),
    }
    return await render(request, "stats.html", context)


def routes() -> list[web.RouteDef]:
    """The token pages (owners) and the stats page (everyone)."""
    return [
        web.get("/tokens", tokens_page, name="gallery.tokens"),
        web.post("/tokens", issue_token, name="gallery.token_issue"),
        web.post("/tokens/revoke", revoke_token, name="gallery.token_revoke"),
        web.post("/tokens/requests", decide_request, name="gallery.token_request"),
        web.get("/stats", stats_page, name="gallery.stats"),
    ]
