"""The blob store contract (core/contracts.py BlobStore), one suite run against every
backend: files under a folder, and an S3 bucket on a real Swift (tests/servers.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from core.contracts import BlobNotFound, BlobStore
from core.errors import SettingsError
from storage import open_blobs
from storage.blobs import READ_CHUNK
from tests.conftest import make_image
from tests.servers import Swift


@pytest.fixture
async def blobs(tmp_path: Path, blob_env: dict[str, str]) -> AsyncIterator[BlobStore]:
    """Each backend in turn, opened as open_storage opens it."""
    async with open_blobs(
        tmp_path,
        blob_url=blob_env.get("BLOB_URL"),
        blob_access_key=blob_env.get("AWS_ACCESS_KEY_ID"),
        blob_secret_key=blob_env.get("AWS_SECRET_ACCESS_KEY"),
    ) as store:
        yield store


async def _read(blobs: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key, start, end)])


async def test_put_then_read_gives_the_bytes_back(blobs: BlobStore) -> None:
    data = make_image(seed=1)
    await blobs.put("images/ab/one.png", data)
    assert await _read(blobs, "images/ab/one.png") == data


async def test_a_large_blob_is_read_in_several_chunks(blobs: BlobStore) -> None:
    data = bytes(range(256)) * (3 * READ_CHUNK // 256 + 7)
    await blobs.put("images/ab/big.bin", data)
    chunks = [chunk async for chunk in blobs.read("images/ab/big.bin")]
    assert len(chunks) > 1
    assert b"".join(chunks) == data


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (10, 20), (0, None), (995, None), (990, 2000), (999, 1000), (1000, None)],
)
async def test_a_range_read_gives_that_slice(blobs: BlobStore, start: int, end: int | None) -> None:
    data = bytes(i % 251 for i in range(1000))
    await blobs.put("images/ab/range.bin", data)
    assert await _read(blobs, "images/ab/range.bin", start, end) == data[start:end]


async def test_reading_a_missing_key_raises_blob_not_found(blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await _read(blobs, "images/ab/missing.png")
    # ...which callers written for files may catch as FileNotFoundError.
    with pytest.raises(FileNotFoundError):
        await _read(blobs, "images/ab/missing.png", 5, 10)


async def test_a_second_put_replaces_the_bytes(blobs: BlobStore) -> None:
    await blobs.put("thumbs/ab/x.jpg", b"first version")
    await blobs.put("thumbs/ab/x.jpg", b"second")
    assert await _read(blobs, "thumbs/ab/x.jpg") == b"second"


async def test_exists_and_remove(blobs: BlobStore) -> None:
    await blobs.put("images/cd/gone.png", b"bytes")
    assert await blobs.exists("images/cd/gone.png")
    await blobs.remove("images/cd/gone.png")
    assert not await blobs.exists("images/cd/gone.png")
    await blobs.remove("images/cd/gone.png")  # removing a missing key is no error
    with pytest.raises(BlobNotFound):
        await _read(blobs, "images/cd/gone.png")


async def test_list_prefix_lists_only_that_folder(blobs: BlobStore) -> None:
    for key in ("images/ab/1.png", "images/ab/2.gif", "images/abc/3.png", "thumbs/ab/1.jpg"):
        await blobs.put(key, b"x")
    assert sorted(await blobs.list_prefix("images/ab")) == ["images/ab/1.png", "images/ab/2.gif"]
    assert await blobs.list_prefix("images/ef") == []


async def test_list_prefix_follows_every_page(blobs: BlobStore) -> None:
    keys = [f"images/ee/{n}.png" for n in range(7)]
    for key in keys:
        await blobs.put(key, b"x")
    if hasattr(blobs, "page_size"):
        blobs.page_size = 2  # the S3 store: four pages of a real listing
    assert sorted(await blobs.list_prefix("images/ee")) == sorted(keys)


async def _list_all(blobs: BlobStore, prefix: str) -> list[tuple[str, float]]:
    return [found async for found in blobs.list_all(prefix)]


async def test_list_all_lists_every_key_under_the_folder_in_key_order(blobs: BlobStore) -> None:
    inside = [
        "images/0a/z.png",
        "images/a0/1.png",
        "images/ab/.x.png.42.tmp",
        "images/ab/2.gif",
        "images/ab/deeper/3.png",
        "images/ab.png",
        "images/abc/4.png",
    ]
    for key in [*reversed(inside), "thumbs/ab/1.jpg", "imagesque/ab/5.png"]:
        await blobs.put(key, b"x")
    listed = await _list_all(blobs, "images/")
    # Whole keys sorted by code point, as S3 lists them: "images/ab.png" before
    # "images/ab/..." ('.' < '/'), and a folder's keys before a sibling "abc".
    assert [key for key, _ in listed] == sorted(inside)
    assert listed == await _list_all(blobs, "images")
    assert [key for key, _ in await _list_all(blobs, "thumbs/ab/")] == ["thumbs/ab/1.jpg"]
    assert await _list_all(blobs, "videos/") == []


async def test_list_all_follows_every_page(blobs: BlobStore) -> None:
    keys = sorted(f"thumbs/{n:02x}/{n}.jpg" for n in range(0, 256, 37))
    for key in keys:
        await blobs.put(key, b"x")
    blobs.page_size = 2  # type: ignore[attr-defined]  # four pages of a real listing
    assert [key for key, _ in await _list_all(blobs, "thumbs/")] == keys


async def test_list_all_gives_when_each_key_was_written(blobs: BlobStore) -> None:
    before = time.time()
    await blobs.put("images/ab/new.png", b"x")
    await blobs.put("images/ab/newer.png", b"y")
    listed = dict(await _list_all(blobs, "images/"))
    assert listed.keys() == {"images/ab/new.png", "images/ab/newer.png"}
    for key, when in listed.items():
        # The time the key's own modified_at gives; S3 keeps whole seconds in one
        # and milliseconds in the other, so they agree to the second.
        written = await blobs.modified_at(key)
        assert written is not None and abs(when - written) < 1
        assert before - 60 < when < time.time() + 60


async def test_modified_at_is_when_the_blob_was_written(blobs: BlobStore) -> None:
    before = time.time()
    await blobs.put("images/ab/when.png", b"x")
    modified = await blobs.modified_at("images/ab/when.png")
    assert modified is not None
    # S3 keeps whole seconds; a minute covers clock steps between us and the server.
    assert before - 60 < modified < time.time() + 60
    assert await blobs.modified_at("images/ab/never.png") is None


async def test_direct_url_serves_the_bytes_when_the_store_has_one(blobs: BlobStore) -> None:
    data = make_image(seed=4)
    await blobs.put("images/ab/direct.png", data)
    url = await blobs.direct_url("images/ab/direct.png", 60)
    if blobs.local_path("images/ab/direct.png") is not None:
        assert url is None  # files are reached through gazou only
        return
    assert url is not None
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert await response.read() == data


async def test_a_local_path_when_there_is_one_holds_the_bytes(blobs: BlobStore) -> None:
    await blobs.put("images/ab/local.png", b"local bytes")
    path = blobs.local_path("images/ab/local.png")
    if path is None:  # S3: the bytes live elsewhere
        assert await blobs.direct_url("images/ab/local.png", 60) is not None
        return
    assert path.read_bytes() == b"local bytes"


async def test_opening_a_bucket_that_does_not_exist_fails_naming_blob_url(
    swift: Swift, tmp_path: Path
) -> None:
    env = swift.blob_env("gazou-no-such-bucket")
    with pytest.raises(SettingsError, match="BLOB_URL"):
        async with open_blobs(
            tmp_path,
            blob_url=env["BLOB_URL"],
            blob_access_key=env["AWS_ACCESS_KEY_ID"],
            blob_secret_key=env["AWS_SECRET_ACCESS_KEY"],
        ):
            pass


async def test_wrong_credentials_fail_naming_blob_url(swift: Swift, tmp_path: Path) -> None:
    env = swift.blob_env("gazou-probe")
    with pytest.raises(SettingsError, match="BLOB_URL"):
        async with open_blobs(
            tmp_path,
            blob_url=env["BLOB_URL"],
            blob_access_key=env["AWS_ACCESS_KEY_ID"],
            blob_secret_key="not-the-secret",
        ):
            pass
