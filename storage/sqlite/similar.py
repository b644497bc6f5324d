"""Similar images: the nearest approved images by perceptual hash."""

from __future__ import annotations

from typing import Any

from core.models import Image, Rating
from storage.rows import SIMILAR_CANDIDATES, nearest_by_phash, quarter_neighbours, quarters
from storage.sqlite.hydrate import HydrateMixin


class SimilarMixin(HydrateMixin):
    """similar_images (core.contracts.ImageRepo)."""

    async def similar_images(
        self,
        phash: int,
        count: int,
        max_distance: int,
        *,
        ratings: frozenset[Rating] = frozenset(),
        exclude_id: str | None = None,
    ) -> list[Image]:
        """Up to `count` approved images within `max_distance` bits of `phash`, nearest
        first (core/contracts.py), found through the quarter indexes."""
        if count <= 0 or max_distance < 0:
            return []
        near = [quarter_neighbours(q, max_distance // 4) for q in quarters(phash)]
        terms = " OR ".join(f"ph{k} IN ({','.join('?' * len(v))})" for k, v in enumerate(near))
        where: list[str] = [f"({terms})"]
        params: list[Any] = [v for values in near for v in values]
        if ratings and len(ratings) < len(Rating):
            where.append(f"+rating IN ({','.join('?' * len(ratings))})")
            params.extend(sorted(ratings))
        if exclude_id is not None:
            where.append("id != ?")
            params.append(exclude_id)
        rows = await self._all(
            # `+status`: the quarter indexes (a multi-index OR) drive, never the status one.
            f"SELECT seq, phash FROM images WHERE +status = 'approved' AND {' AND '.join(where)} "
            "LIMIT ?",
            [*params, SIMILAR_CANDIDATES],
        )
        return await self._images_by_seq(
            nearest_by_phash(phash, ((seq, ph) for seq, ph in rows), count, max_distance)
        )
