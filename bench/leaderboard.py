"""The leaderboard's reads at scale: bulk-loads N synthetic image rows (500 uploaders,
created over the last year) into a SQLite store, gives some likes, and prints the
median latency of each LeaderboardRepo read and SQLite's plan for it.

    python -m bench.leaderboard [--rows 1000000] [--likes 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.store import median_ms, synthetic_rows
from core.leaderboard import WEEK
from core.models import User
from storage.sqlite import SQLiteRepo
from storage.uploader_counts import TOP

UPLOADERS = 500
YEAR = timedelta(days=365)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--likes", type=int, default=5_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        repo = SQLiteRepo(Path(folder) / "store.sqlite3")
        await repo.open()
        try:
            ids: list[str] = []

            def rows():  # type: ignore[no-untyped-def]
                for k, new in enumerate(synthetic_rows(args.rows)):
                    who = str(int(rng.paretovariate(1.2)) % UPLOADERS)
                    ids.append(new.id)
                    yield replace(
                        new,
                        uploader=User(who, f"member {who}"),
                        created_at=now - YEAR + YEAR * (k / args.rows),
                    )

            await repo.bulk_load(rows())
            for _ in range(args.likes):
                await repo.set_like(
                    rng.choice(ids[-len(ids) // 20 :]), str(rng.random()), "like", True
                )
            reads = {
                "top_uploaders, all time": lambda: repo.top_uploaders(None, 5, exclude=("import",)),
                "top_uploaders, week": lambda: repo.top_uploaders(
                    now - WEEK, 5, exclude=("import",)
                ),
                "most_liked, all time": lambda: repo.most_liked(None, 5),
                "most_liked, week": lambda: repo.most_liked(now - WEEK, 5),
            }
            print(f"{args.rows:,} images, {args.likes:,} likes")
            for name, read in reads.items():
                print(f"  {name:26} {await median_ms(read, runs=7, budget=30.0):8.2f} ms")
            for sql in (
                TOP.format(not_in=" AND uploader_id NOT IN (?)").replace("LIMIT ?", "LIMIT 5"),
                "SELECT uploader_id, COUNT(*) AS n FROM images INDEXED BY images_approved_created "
                "WHERE status = 'approved' "
                "AND created_at >= 0 AND uploader_id IS NOT NULL AND uploader_id NOT IN (?) "
                "GROUP BY uploader_id ORDER BY n DESC, uploader_id LIMIT 5",
                "SELECT i.id, l.n FROM (SELECT seq, COUNT(*) AS n FROM likes WHERE kind = 'like' "
                "AND created_at >= 0 GROUP BY seq) l JOIN images i ON i.seq = l.seq "
                "WHERE i.status = 'approved' ORDER BY l.n DESC, l.seq DESC LIMIT 5",
            ):
                plan = await repo._all(f"EXPLAIN QUERY PLAN {sql}", ("import",)[: sql.count("?")])
                print("  plan:", " | ".join(r[3] for r in plan))
        finally:
            await repo.close()


if __name__ == "__main__":
    asyncio.run(main())
