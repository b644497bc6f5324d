"""Reports: a member flags an image they were shown (wrong rating, not allowed here,
duplicate, other with a text); the owners re-rate it, remove it, or dismiss the report.

One member, one report per image (the store refuses a second). A report is written with
its outbox entry (`image_reported`) in one transaction, so the owners hear of it exactly
once, from whichever process took it and also when the bot was down (core/outbox.py).
A decision handles every open report of the image at once and is idempotent: a second
one (another owner's copy, a double click) changes nothing and says who decided first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core import events as ev
from core.contracts import Repo
from core.errors import Conflict, InvalidInput, NotFound
from core.images import ImageService
from core.models import Image, Rating, Report, ReportReason, User

MAX_TEXT = 500  # characters of a report's free text
REASON_LABELS = {
    ReportReason.WRONG_RATING: "Wrong rating",
    ReportReason.NOT_ALLOWED: "Not allowed here",
    ReportReason.DUPLICATE: "Duplicate",
    ReportReason.OTHER: "Other",
}
DISMISSED = "dismissed"
REMOVED = "removed"
RERATED = "rerated"  # stored as `rerated:<rating>`

_Act = Callable[[], Awaitable[None]]


def action_text(action: str) -> str:
    """A stored decision (`dismissed`, `removed`, `rerated:nsfw`) in words."""
    if action.startswith(f"{RERATED}:"):
        return f"Re-rated as {action.split(':', 1)[1]}"
    return action.capitalize()


@dataclass(frozen=True, slots=True)
class Decision:
    """What an owner decided on an image's reports, and how many reports it handled."""

    image_id: str
    action: str
    by: User
    handled: int


class ReportService:
    """Filing reports and deciding on them; the transports only present."""

    def __init__(self, repo: Repo, images: ImageService, events: ev.Events) -> None:
        self.repo = repo
        self.images = images
        self.events = events

    async def has_reported(self, image_id: str, member: User) -> bool:
        """Whether `member` already reported the image."""
        return any(r.reporter.id == member.id for r in await self.repo.reports_of(image_id))

    async def report(self, image_id: str, reporter: User, reason: str, text: str = "") -> Report:
        """File a report of an approved image; InvalidInput for a bad reason or text,
        NotFound for an image no longer shown, Conflict for a second report."""
        try:
            why = ReportReason(reason)
        except ValueError:
            raise InvalidInput(f"Unknown reason {reason!r}.") from None
        text = text.strip()
        if why is ReportReason.OTHER and not text:
            raise InvalidInput("Say what is wrong with this image.")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"Keep it under {MAX_TEXT} characters.")
        await self.images.get(image_id)  # NotFound unless it is shown to members
        report = await self.repo.add_report(image_id, reporter, why.value, text)
        if report is None:
            raise Conflict("You already reported this image; the owners have it.")
        # The store wrote IMAGE_REPORTED to its outbox with the report: wake a consumer
        # in this process (the bot's, if it runs here) at once.
        self.events.emit(ev.OUTBOX_WRITTEN)
        return report

    async def open_reports(self, image_id: str) -> list[Report]:
        """The image's reports no owner has handled yet, oldest first."""
        return [r for r in await self.repo.reports_of(image_id) if r.action is None]

    async def rerate(self, image_id: str, rating: Rating, by: User) -> Decision:
        """Give the image `rating` and handle its reports."""

        async def act() -> None:
            await self.images.set_rating(image_id, rating)

        return await self._decide(image_id, f"{RERATED}:{rating.value}", by, act)

    async def remove(self, image_id: str, by: User) -> Decision:
        """Take the image out of everything (the moderation reject: its files go, every
        dialect answers 404 at once, its bytes are refused if uploaded again) and handle
        its reports."""

        async def act() -> None:
            try:
                await self.images.reject(image_id, by)
            except NotFound:
                pass  # deleted meanwhile: it is gone either way

        return await self._decide(image_id, REMOVED, by, act)

    async def dismiss(self, image_id: str, by: User) -> Decision:
        """Handle the image's reports without changing it."""

        async def act() -> None:
            return None

        return await self._decide(image_id, DISMISSED, by, act)

    async def _decide(self, image_id: str, action: str, by: User, act: _Act) -> Decision:
        reports = await self.repo.reports_of(image_id)
        if not reports:
            raise NotFound("No report of this image is known.")
        if all(r.action is not None for r in reports):
            last = reports[-1]
            who = f" by {last.handled_by.name}" if last.handled_by else ""
            raise Conflict(
                f"These reports were already handled: {action_text(last.action or '')}{who}."
            )
        # The action first, then the mark: a crash in between leaves the reports open,
        # and doing the action again is harmless (same rating, already rejected).
        await act()
        handled = await self.repo.resolve_reports(image_id, action, by)
        return Decision(image_id, action, by, handled)

    async def image_of(self, image_id: str) -> Image:
        """The reported image whatever its status (a removed one is shown as such)."""
        image = await self.repo.get_image(image_id)
        if image is None:
            raise NotFound("Image not found")
        return image
