"""Reading a token from a request, in each dialect's header form."""

from __future__ import annotations

from enum import Enum

from aiohttp import web

from api.keys import SERVICES, TOKEN
from core.errors import Unauthorized
from core.models import Token


class HeaderForm(Enum):
    """Where a dialect's clients put their token."""

    BEARER = "bearer"  # Authorization: Bearer <t>   (Miku, NekosAPI; a raw token too)
    RAW = "raw"  # Authorization: <t>                (nekos.moe; a Bearer prefix too)
    TOKEN_HEADER = "token"  # token: <t>             (Discord Images)
    API_KEY = "api-key"  # X-API-Key: <t>            (Chevereto; its `key` field is read by it)


def presented_secret(request: web.Request, form: HeaderForm) -> str | None:
    """The secret the client sent in `form`, without any `Bearer ` prefix; None if absent."""
    if form is HeaderForm.TOKEN_HEADER:
        raw = request.headers.get("token")
    elif form is HeaderForm.API_KEY:
        raw = request.headers.get("X-API-Key")
    else:
        raw = request.headers.get("Authorization")
    if raw is None:
        return None
    raw = raw.strip()
    if raw[:7].lower() == "bearer ":
        raw = raw[7:].strip()
    return raw or None


async def authenticate(
    request: web.Request, form: HeaderForm, *, secret: str | None = None, required: bool = True
) -> Token | None:
    """The caller's verified token (cached on the request). Raises Unauthorized with
    details reason=`missing` or `invalid`; with required=False a missing token is None
    but a bad one still raises."""
    if TOKEN in request:
        return request[TOKEN]
    secret = secret if secret is not None else presented_secret(request, form)
    if secret is None and not required:
        return None
    if secret is None:
        raise Unauthorized("Authentication required", reason="missing")
    token = await request.app[SERVICES].tokens.verify(secret)
    request[TOKEN] = token
    return token


# Every header a token can arrive in, over all dialects (Chevereto's `key` field is
# part of the body and is left to its handler).
ANY_HEADER = (HeaderForm.BEARER, HeaderForm.TOKEN_HEADER, HeaderForm.API_KEY)


async def token_in_any_header(request: web.Request) -> Token | None:
    """The token in the first token header present, whatever the dialect; None when
    there is none. Raises Unauthorized when the one presented is not valid."""
    for form in ANY_HEADER:
        secret = presented_secret(request, form)
        if secret is not None:
            return await request.app[SERVICES].tokens.verify(secret)
    return None
