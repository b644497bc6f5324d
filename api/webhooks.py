"""Outgoing Discord webhooks over aiohttp: the `Poster` core/announce.py delivers
approved images with, and the task bot.py serve runs for WEBHOOK_URLS."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from core.announce import PostResult, WebhookAnnouncer, deliver_webhooks
from core.services import Services

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0


class AiohttpPoster:
    """POSTs JSON with one ClientSession; any failure to get an answer is status 0."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, url: str, body: dict[str, Any]) -> PostResult:
        try:
            async with self.session.post(url, json=body) as response:
                retry_after = None
                if response.status == 429:
                    retry_after = await _retry_after(response)
                return PostResult(response.status, retry_after)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("webhook post failed: %s", type(exc).__name__)
            return PostResult(0)


async def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Discord's `retry_after` (seconds, in the JSON body), else the Retry-After header."""
    try:
        data = await response.json(content_type=None)
        if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
            return float(data["retry_after"])
    except (ValueError, aiohttp.ClientError):
        pass
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None


async def run_webhooks(services: Services) -> None:
    """Deliver approvals to WEBHOOK_URLS until cancelled (under the webhooks lease)."""
    settings = services.settings
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        announcer = WebhookAnnouncer(
            services.storage.repo,
            settings.webhook_urls,
            AiohttpPoster(session),
            settings.public_url,
        )
        log.info("announcing approved images to %d webhook(s)", len(settings.webhook_urls))
        await deliver_webhooks(services.storage.repo, announcer, wake=services.events)
