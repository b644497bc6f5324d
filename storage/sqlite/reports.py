"""Members' reports of images, and the rating change a report may lead to."""

from __future__ import annotations

import time

from core.events import IMAGE_REPORTED
from core.models import Rating, Report, Status, User
from storage.queries import SharedQueries
from storage.sqlite.connection import _rowid
from storage.sqlite.images import ImagesMixin


class ReportsMixin(ImagesMixin, SharedQueries):
    """set_rating (core.contracts.ImageRepo) and core.contracts.ReportRepo."""

    async def set_rating(self, image_id: str, rating: Rating) -> Rating | None:
        """Change an image's rating (moving an approved image between rating pools) and
        increment its `rev`; the rating it had, None if no such image."""
        async with self.transaction() as tx:
            row = await tx.one("SELECT seq, status, rating FROM images WHERE id = ?", (image_id,))
            if row is None:
                return None
            seq, status, old = row
            if old == rating.value:
                return Rating(old)
            # Pools are named by rating: leave them under the old one, join the new one.
            approved = status == Status.APPROVED.value
            if approved:
                await self._pool_remove(tx, seq)
            await tx.execute(
                "UPDATE images SET rating = ?, rev = rev + 1 WHERE seq = ?", (rating.value, seq)
            )
            if approved:
                await self._pool_add(tx, seq)
        return Rating(old)

    async def add_report(
        self, image_id: str, reporter: User, reason: str, text: str
    ) -> Report | None:
        """File a report with its outbox entry in one transaction; None if this member
        already reported this image."""
        now = time.time()
        # Leaves images alone; SQLite's one writer keeps the outbox in seq order anyway.
        async with self.transaction(touches_images=False) as tx:
            cursor = await tx.execute(
                "INSERT INTO reports (image_id, reporter_id, reporter_name, reason, text, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (image_id, reporter_id) DO NOTHING",
                (image_id, reporter.id, reporter.name, reason, text, now),
            )
            if cursor.rowcount != 1:
                return None
            report_id = _rowid(cursor)
            await self._announce(tx, IMAGE_REPORTED, image_id, {"report": report_id})
        return await self.get_report(report_id)

    async def resolve_reports(self, image_id: str, action: str, by: User) -> int:
        """Mark the image's open reports handled with `action`; how many were open."""
        async with self.transaction(touches_images=False) as tx:
            cursor = await tx.execute(
                "UPDATE reports SET action = ?, handled_by_id = ?, handled_by_name = ?, "
                "handled_at = ? WHERE image_id = ? AND action IS NULL",
                (action, by.id, by.name, time.time(), image_id),
            )
            return cursor.rowcount
