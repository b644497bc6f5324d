"""A transaction cancelled while BEGIN is in flight must not wedge the write connection."""

from __future__ import annotations

import asyncio

from core.services import Services
from tests.conftest import ALL_BACKENDS

BACKENDS = ALL_BACKENDS


async def test_write_after_a_transaction_cancelled_at_begin_succeeds(services: Services) -> None:
    repo = services.storage.repo
    # Cancel kv_set while its BEGIN IMMEDIATE is queued on the worker thread.
    task = asyncio.create_task(repo.kv_set("a", "1"))
    for _ in range(3):
        await asyncio.sleep(0)
        if not task.done():
            task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await repo.kv_set("b", "2")
    assert await repo.kv_get("b") == "2"
