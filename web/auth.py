"""Who is asking: the session cookie, the CSRF token of every form, the age cookie.

- `gazou_session`: a session id (core/sessions.py keeps only its hash), HttpOnly,
  SameSite=Lax, Secure when PUBLIC_URL is https.
- CSRF: a signed-in member's forms carry the session's own token; a visitor's forms
  (sign in, the age gate) carry the value of a `gazou_csrf` cookie (double submit).
- `gazou_age`: the visitor confirmed they are an adult; images above sfw are shown."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import hdrs, web

from core.errors import Forbidden
from core.sessions import SESSION_TTL, Session
from web.keys import NEW_CSRF, SERVICES, SESSION, SESSIONS

SESSION_COOKIE = "gazou_session"
CSRF_COOKIE = "gazou_csrf"
AGE_COOKIE = "gazou_age"
AGE_MAX_AGE = 365 * 24 * 3600
BAD_CSRF = "This form has expired; reload the page and try again."


def _secure(request: web.Request) -> bool:
    return request.app[SERVICES].settings.public_url.startswith("https://")


def _cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=_secure(request),
    )


async def current_session(request: web.Request) -> Session | None:
    """The request's live session, if its cookie names one (looked up once)."""
    if SESSION in request:
        found = request[SESSION]
        return found if isinstance(found, Session) else None
    session = await request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE))
    request[SESSION] = session
    return session


def start_session(request: web.Request, response: web.StreamResponse, session_id: str) -> None:
    """Give the browser its new session's cookie."""
    _cookie(request, response, SESSION_COOKIE, session_id, int(SESSION_TTL.total_seconds()))


def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Drop the session cookie."""
    response.del_cookie(SESSION_COOKIE, path="/")


def csrf_token(request: web.Request, session: Session | None) -> str:
    """The token this request's forms carry: the session's, or the visitor's cookie
    (a fresh one is made and remembered for `remember_csrf`)."""
    if session is not None:
        return session.csrf
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) == 43 and existing.isascii():
        return existing
    if NEW_CSRF not in request:
        request[NEW_CSRF] = secrets.token_urlsafe(32)
    return request[NEW_CSRF]


def remember_csrf(request: web.Request, response: web.StreamResponse) -> None:
    """Set the visitor's CSRF cookie if this request made one."""
    if NEW_CSRF in request:
        # The header as response.set_cookie writes it (a token_urlsafe value needs no
        # quoting), without building a SimpleCookie: that was 9 us of a kept listing
        # page for each visitor without the cookie.
        secure = "; Secure" if _secure(request) else ""
        response.headers.add(
            hdrs.SET_COOKIE,
            f"{CSRF_COOKIE}={request[NEW_CSRF]}; HttpOnly; Path=/; SameSite=Lax{secure}",
        )


def check_csrf(request: web.Request, session: Session | None, form: Any) -> None:
    """Forbidden unless the form carried this browser's CSRF token."""
    presented = form.get("csrf")
    if not isinstance(presented, str) or not presented:
        raise Forbidden(BAD_CSRF)
    if session is not None:
        if session.csrf_ok(presented):
            return
        raise Forbidden(BAD_CSRF)
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not hmac.compare_digest(cookie.encode(), presented.encode()):
        raise Forbidden(BAD_CSRF)


def age_confirmed(request: web.Request) -> bool:
    """Whether the visitor said they are an adult (images above sfw are shown)."""
    return request.cookies.get(AGE_COOKIE) == "1"


def confirm_age(request: web.Request, response: web.StreamResponse) -> None:
    """Remember the visitor's confirmation for a year."""
    _cookie(request, response, AGE_COOKIE, "1", AGE_MAX_AGE)
