"""Announcing newly approved images to Discord webhooks (WEBHOOK_URLS), for deployments
without a bot token (the bot's own channel announcements are cogs/announce.py).

Driven by the outbox (`image_decided` entries that approve) through a consumer with its
own durable cursor (`webhooks`), run under a lease by whichever process does the
once-only work (bot.py serve, roles all and bot): every approved image is announced
once, however many processes share the store, and never while an upload waits (an
upload only writes its outbox entry). Each URL is retried with back-off (429's
`retry_after` respected); a URL that took the post is marked in kv before the entry is
acknowledged, so a redelivered entry (a crash, a failing second URL) posts only to the
URLs that did not take it yet. Only the HTTP call itself lives outside core (a `Poster`,
api/webhooks.py), so core imports no HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from core import events as ev
from core.contracts import Repo
from core.lease import LEASE_SECONDS, Lease, LeaseHeld, LeaseLost
from core.models import Image, Rating, Status, User
from core.outbox import POLL_SECONDS, OutboxConsumer

log = logging.getLogger(__name__)

CONSUMER = "webhooks"  # the durable cursor's name
LEASE_KEY = "lease:outbox-webhooks"
ATTEMPTS = 5  # posts to one URL per delivery; then the outbox retries the entry later
BACKOFF = 1.0  # seconds before the second attempt, doubling
MAX_WAIT = 60.0  # the longest wait between attempts (also caps a 429's retry_after)
SENT_KEEP = timedelta(days=8)  # past the outbox's KEEP_UNHANDLED: no entry outlives it
STOP_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class PostResult:
    """A webhook's answer: its status (0: none, the connection failed) and, on 429, how
    many seconds it asked us to wait."""

    status: int
    retry_after: float | None = None


class Poster(Protocol):
    """POSTs a JSON body to a URL (api/webhooks.py, over aiohttp)."""

    async def __call__(self, url: str, body: dict[str, Any]) -> PostResult: ...


def shown_url(url: str) -> str:
    """A webhook URL fit for a log line: its secret token left out."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def _sent_key(image_id: str, url: str) -> str:
    return f"webhook:sent:{image_id}:{hashlib.sha256(url.encode()).hexdigest()[:16]}"


def webhook_body(image: Image, public_url: str) -> dict[str, Any]:
    """The Discord webhook message announcing `image`: one embed with its uploader and
    tags; the picture itself only for sfw images (a webhook's channel may not be
    age-restricted, and we can't ask)."""
    link = f"{public_url}/image/{image.id}"
    fields: list[dict[str, Any]] = [
        {"name": "Uploaded by", "value": (image.uploader.name if image.uploader else "unknown")},
        {"name": "Artist", "value": image.artist.name if image.artist else "unknown"},
        {"name": "Rating", "value": str(image.rating)},
        {"name": "Tags", "value": ", ".join(image.tag_names)[:1024] or "none", "inline": False},
    ]
    embed: dict[str, Any] = {
        "title": (image.title or "New image")[:256],
        "url": link,
        "fields": [{"inline": True, **f} for f in fields],
        "footer": {"text": f"{image.id} · {image.rating}"},
    }
    with contextlib.suppress(ValueError):
        embed["color"] = int(image.dominant_color.lstrip("#"), 16)
    if image.rating is Rating.SFW:
        embed["image"] = {"url": link}
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


class WebhookAnnouncer:
    """Posts each approved image to every URL, once per URL (marked in kv)."""

    def __init__(
        self,
        repo: Repo,
        urls: Sequence[str],
        poster: Poster,
        public_url: str,
        *,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self.repo = repo
        self.urls = tuple(urls)
        self.poster = poster
        self.public_url = public_url
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait

    async def on_image_decided(self, image: Image, approved: bool, by: User) -> None:
        """Announce an approval to every URL that has not taken it yet; Undelivered
        (the outbox tries again later) if one could not be reached."""
        if not approved or image.status is not Status.APPROVED:
            return  # a rejection, or approved then removed since: nothing to show
        body = webhook_body(image, self.public_url)
        failed = []
        for url in self.urls:
            key = _sent_key(image.id, url)
            if await self.repo.kv_get(key):
                continue  # taken before this delivery (a redelivered entry)
            if await self.post(url, body):
                await self.repo.kv_set(key, "1", expires_in=SENT_KEEP)
            else:
                failed.append(shown_url(url))
        if failed:
            raise ev.Undelivered(f"webhook(s) {', '.join(failed)} did not take image {image.id}")

    async def post(self, url: str, body: dict[str, Any]) -> bool:
        """POST with retries; whether the webhook took it. A 4xx other than 408/429
        (a deleted webhook, a bad body) is not retried: it is logged and counted taken,
        so one dead URL can't hold back the announcements."""
        wait = self.backoff
        for attempt in range(1, self.attempts + 1):
            result = await self.poster(url, body)
            if 200 <= result.status < 300:
                return True
            if 400 <= result.status < 500 and result.status not in (408, 429):
                log.error(
                    "webhook %s refused an announcement (HTTP %d); skipping it",
                    shown_url(url),
                    result.status,
                )
                return True
            if attempt == self.attempts:
                break
            delay = wait
            if result.status == 429 and result.retry_after is not None:
                delay = max(result.retry_after, 0.0)
            log.info(
                "webhook %s answered %s; retrying in %.2f s",
                shown_url(url),
                result.status or "nothing",
                min(delay, self.max_wait),
            )
            await asyncio.sleep(min(delay, self.max_wait))
            wait = min(wait * 2, self.max_wait)
        return False


async def deliver_webhooks(
    repo: Repo,
    announcer: WebhookAnnouncer,
    *,
    wake: ev.Events | None = None,
    lease_ttl: float = LEASE_SECONDS,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Until cancelled: hold the webhooks lease (waiting while another process holds
    it) and deliver the outbox's approvals to `announcer` from the `webhooks` cursor.
    `wake`: this process's bus, whose OUTBOX_WRITTEN wakes the consumer at once."""
    events = ev.Events()
    events.subscribe(ev.IMAGE_DECIDED, announcer.on_image_decided)
    consumer = OutboxConsumer(
        repo,
        events,
        consumer=CONSUMER,
        poll_seconds=poll_seconds,
        kinds=frozenset({ev.IMAGE_DECIDED}),
        wake=wake,
    )
    lease = Lease(repo, LEASE_KEY, what="webhook delivery", ttl=lease_ttl)
    try:
        while True:
            try:
                await lease.acquire()
            except LeaseHeld:
                await asyncio.sleep(lease_ttl / 3)  # another process delivers
                continue
            except Exception:
                log.exception("could not take the webhooks lease; will retry")
                await asyncio.sleep(lease_ttl / 3)
                continue
            consumer.start()
            try:
                await lease.keep()
            except LeaseLost as exc:
                log.warning("%s", exc)
            finally:
                await consumer.stop(grace=STOP_GRACE)
    finally:
        await lease.release()
