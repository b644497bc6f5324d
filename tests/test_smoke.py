"""The skeleton stands: the app answers /healthz over real HTTP."""

from aiohttp.test_utils import TestClient


async def test_healthz_answers_ok(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
