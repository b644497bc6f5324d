"""Expiring signed links to image files (NekosAPI's `url`), and the check the file
routes run on them.

A signed link is `<PUBLIC_URL>/image/<id>.<ext>?expires=<unix>&signature=<hmac>`.
The file route serves an image without a signature to whoever holds its link
(core/visibility.py; nekos.moe and Miku clients fetch it bare); when a request carries
`expires` or `signature`, they must be valid and unexpired, else 403. A signature
opens nothing a plain link doesn't: it only makes a link end (NekosAPI's `url`).
Chevereto answered pending uploads with signed links before the plain-link rule;
those keep working while the image is servable."""

from __future__ import annotations

import time

from aiohttp import web

from api.keys import SERVICES
from core.models import Image
from core.services import Services

# Default link validity (NekosAPI: one hour).
DEFAULT_LINK_TTL = 3600


def image_file_path(image: Image) -> str:
    """The path the file route serves `image` at (what a link signs)."""
    return f"/image/{image.id}.{image.extension}"


def signed_image_url(
    services: Services, image: Image, ttl: int, now: float | None = None
) -> tuple[str, int]:
    """An absolute signed URL to the image file valid for `ttl` seconds from `now`,
    and the unix time it expires."""
    now = time.time() if now is None else now
    signed = services.signer.sign(image_file_path(image), ttl, now=now)
    return services.settings.public_url + signed, services.signer.expiry_of(ttl, now=now)


def check_link_signature(request: web.Request, now: float | None = None) -> bool:
    """True when the request carries a valid, unexpired link signature; False when it
    carries none; Forbidden when its signature (`expires` or `signature`) was altered
    or has expired."""
    query = request.rel_url.query
    if "expires" not in query and "signature" not in query:
        return False
    request.app[SERVICES].signer.check(
        request.path, query.get("expires"), query.get("signature"), now=now
    )
    return True
