"""Bad input gets the dialect's own 4xx, never a 500: out-of-range numbers, over-deep
JSON, thousands of tags, non-UTF-8 file names, malformed HTTP, and a Discord Images
batch with one bad file. Each request here answered 500 (or stored half a batch)
before; everything runs over real HTTP against a real store."""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from core.images import MAX_FILTER_TAGS
from core.models import Filters, IngestMetadata, Rating, SearchQuery, Status
from core.services import Services, open_services
from tests.conftest import MEMBER, OWNER, make_image, make_settings
from tests.test_cli import ROOT, child_env, free_port

SEARCH = "/api/v1/images/search"
DEEP = 100_000


async def _admin_token(services: Services) -> str:
    issued = await services.tokens.issue(MEMBER, scopes=("image:upload", "admin"), issued_by="test")
    return issued.secret


async def _stored(services: Services, seed: int, tags: tuple[str, ...] = ()) -> str:
    meta = IngestMetadata(tags=tags, rating=Rating.SFW)
    return (await services.images.ingest(make_image(seed=seed), meta, OWNER, trusted=True)).id


async def _all_ids(services: Services) -> set[str]:
    page = await services.images.search(
        SearchQuery(limit=100, statuses=frozenset({Status.APPROVED, Status.PENDING})),
        count_total=False,
    )
    return {i.id for i in page.images}


def _multipart(field: str, filename: bytes, data: bytes, **fields: bytes) -> tuple[bytes, dict]:
    """A multipart body written by hand, so the file name can hold any bytes."""
    boundary = b"gazou-boundary"
    parts = [
        b'Content-Disposition: form-data; name="%s"\r\n\r\n%s' % (name.encode(), value)
        for name, value in fields.items()
    ]
    parts.append(
        b'Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
        b"Content-Type: image/png\r\n\r\n%s" % (field.encode(), filename, data)
    )
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary + b"--\r\n"
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}


# ---- nekos.moe search numbers ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"skip": 1e400}', "Body is not valid JSON"),
        (b'{"posted_after": 1e400}', "Body is not valid JSON"),
        (b'{"skip": NaN}', "Body is not valid JSON"),
        (b'{"skip": ' + b"9" * 5000 + b"}", "Body is not valid JSON"),
        (b'{"skip": "inf"}', "Cannot skip more than 2,500 images"),
        (b'{"offset": "Infinity"}', "Cannot skip more than 2,500 images"),
        (b'{"skip": "' + b"9" * 5000 + b'"}', "Cannot skip more than 2,500 images"),
        (b'{"skip": 1e300}', "Cannot skip more than 2,500 images"),
        (b'{"skip": "nan"}', "skip must be a number"),
        (b'{"limit": "NaN"}', "limit must be a number"),
        (b'{"skip": true}', "skip must be a number"),
        (b'{"limit": {"$gt": 1}}', "limit must be a number"),
        (b'{"skip": [1]}', "skip must be a number"),
        (b'{"posted_before": "inf"}', "posted_before must be a time in milliseconds"),
        (b'{"posted_before": "-inf"}', "posted_before must be a time in milliseconds"),
        (b'{"posted_after": 1e300}', "posted_after must be a time in milliseconds"),
        (b'{"posted_after": ' + b"9" * 300 + b"}", "posted_after must be a time in millisec"),
        (b'{"artist": "\\ud800"}', "Body is not valid JSON"),
        (b'{"uploader": "\\udfff"}', "Body is not valid JSON"),
        (b"\xff\xfe{}", "Body is not valid JSON"),
    ],
)
async def test_search_numbers_out_of_range_are_400(
    client: TestClient, body: bytes, message: str
) -> None:
    response = await client.post(SEARCH, data=body)
    assert response.status == 400
    answer = await response.json()
    assert set(answer) == {"message"}
    assert answer["message"].startswith(message)


@pytest.mark.parametrize(
    "body",
    [
        b'{"limit": "inf"}',  # above 50 means 20, as on nekos.moe
        b'{"limit": 1e300}',
        b'{"limit": "-inf"}',
        b'{"skip": "-inf"}',  # below 0 means 0
        b'{"skip": -1e300}',
        b'{"uploader": {"id": {"nested": [1, 2]}}}',
        b'{"id": {"$ne": null}}',
        b'{"tags": [["cute"], {"a": 1}, 3, "cute"]}',
        b'{"sort": ["newest"], "nsfw": {"x": 1}, "artist": 5}',
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    ],
)
async def test_search_leniencies_with_odd_values_answer_200(
    client: TestClient, services: Services, body: bytes
) -> None:
    await _stored(services, 1, ("cute",))
    response = await client.post(SEARCH, data=body)
    assert response.status == 200
    assert isinstance((await response.json())["images"], list)


async def test_limit_inf_means_the_default_page(client: TestClient, services: Services) -> None:
    for seed in range(22):
        await _stored(services, seed)
    response = await client.post(SEARCH, json={"limit": "inf"})
    assert len((await response.json())["images"]) == 20


# ---- over-deep JSON ----------------------------------------------------------------


def _deep(depth: int = DEEP) -> bytes:
    return b"[" * depth + b"]" * depth


async def test_deep_json_search_is_400(client: TestClient) -> None:
    for body in (_deep(), b'{"tags": ' + _deep() + b"}", b'{"a": ' + _deep(40) + b"}"):
        response = await client.post(SEARCH, data=body)
        assert response.status == 400
        assert "nested more than" in (await response.json())["message"]


async def test_json_nested_a_little_is_still_read(client: TestClient) -> None:
    response = await client.post(SEARCH, data=b'{"uploader": ' + b'{"id": ' * 20 + b"1" + b"}" * 21)
    assert response.status == 200


async def test_deep_json_in_nekosmoe_upload_tags_is_400(
    client: TestClient, services: Services
) -> None:
    token = await _admin_token(services)
    body, headers = _multipart("image", b"a.png", make_image(seed=1), tags=_deep())
    response = await client.post(
        "/api/v1/images", data=body, headers={**headers, "Authorization": token}
    )
    assert response.status == 400
    assert (await response.json())["message"] == "tags is nested more than 32 levels deep"
    assert await _all_ids(services) == set()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/add", lambda t: {"Authorization": f"Bearer {t}"}),
        ("/api/v1/images", lambda t: {"Authorization": t}),
        ("/api/upload", lambda t: {"token": t}),
        ("/api/1/upload", lambda t: {"X-API-Key": t}),
    ],
)
async def test_deep_json_body_on_upload_routes_is_400(
    client: TestClient, services: Services, path: str, headers
) -> None:
    token = await _admin_token(services)
    response = await client.post(
        path,
        data=b'{"source": ' + _deep() + b"}",
        headers={**headers(token), "Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "nested more than 32 levels deep" in await response.text()


# ---- many tags ---------------------------------------------------------------------


async def test_a_thousand_repeated_tags_answer_like_one(
    client: TestClient, services: Services
) -> None:
    cute = await _stored(services, 1, ("cute",))
    plain = await _stored(services, 2, ("plain",))
    for tag, expected in (("-cute", {plain}), ("cute", {cute}), ("-CUTE", {plain})):
        response = await client.post(SEARCH, json={"tags": [tag] * 1000})
        assert response.status == 200
        assert {i["id"] for i in (await response.json())["images"]} == expected
    response = await client.post(SEARCH, json={"tags": ",".join(["Cute", "cute"] * 500)})
    assert {i["id"] for i in (await response.json())["images"]} == {cute}


async def test_nekosapi_thousand_repeated_categories(
    client: TestClient, services: Services
) -> None:
    cute = await _stored(services, 1, ("cute",))
    await _stored(services, 2, ("plain",))
    response = await client.get(
        "/api/image/random", params={"categories": ",".join(["cute"] * 1000)}
    )
    assert response.status == 200
    assert [i["id"] for i in (await response.json())["data"]] == [cute]
    response = await client.get(
        "/api/image/random", params={"categories": ",".join(["cute", "nope"] * 500)}
    )
    assert response.status == 400
    assert await response.json() == {
        "code": 400,
        "message": "Invalid categories",
        "success": False,
    }


async def test_too_many_distinct_tags_are_refused_in_each_shape(
    client: TestClient, services: Services
) -> None:
    await _stored(services, 1, ("cute",))
    many = [f"tag{n}" for n in range(MAX_FILTER_TAGS + 1)]
    response = await client.post(SEARCH, json={"tags": many})
    assert response.status == 400
    assert await response.json() == {"message": f"At most {MAX_FILTER_TAGS} tags at once"}
    response = await client.post(SEARCH, json={"tags": ["-" + t for t in many]})
    assert response.status == 400
    response = await client.get("/api/image/random", params={"categories": ",".join(many)})
    assert response.status == 400
    assert (await response.json())["message"] == "Invalid categories"
    # Right at the cap is still a query (nothing matches every one of them).
    response = await client.post(SEARCH, json={"tags": many[:MAX_FILTER_TAGS]})
    assert response.status == 200


@pytest.mark.backends("sqlite")  # SQLite's own machinery
async def test_tags_are_resolved_in_one_query(services: Services) -> None:
    """However many tags a filter names, one statement looks them all up."""
    await _stored(services, 1, tuple(f"t{n}" for n in range(50)))
    statements: list[str] = []
    await services.storage.repo.reader.set_trace_callback(statements.append)
    try:
        query = SearchQuery(
            tags=tuple(f"t{n}" for n in range(50)),
            exclude_tags=tuple(f"x{n}" for n in range(MAX_FILTER_TAGS - 50)),
        )
        page = await services.images.search(query)
        found = await services.images.random_files(Filters(tags=query.tags), 1)
    finally:
        await services.storage.repo.reader.set_trace_callback(None)
    assert len(page.images) == 1 and len(found) == 1
    lookups = [s for s in statements if "FROM tags WHERE" in s]
    assert len(lookups) == 2  # one for the search, one for the random draw


# ---- non-UTF-8 file names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field", "headers"),
    [
        ("/api/add", "image", lambda t: {"Authorization": f"Bearer {t}"}),
        ("/api/v1/images", "image", lambda t: {"Authorization": t}),
        ("/api/upload", "files[]", lambda t: {"token": t}),
        ("/api/1/upload", "source", lambda t: {"X-API-Key": t}),
    ],
)
async def test_non_utf8_file_name_is_stored_with_replacements(
    client: TestClient, services: Services, path: str, field: str, headers
) -> None:
    token = await _admin_token(services)
    body, content_type = _multipart(field, b"caf\xe9 \xff\xfe.png", make_image(seed=7))
    response = await client.post(path, data=body, headers={**content_type, **headers(token)})
    assert response.status == 200, await response.text()
    (image_id,) = await _all_ids(services)
    stored = await services.images.get(image_id, include_pending=True)
    assert stored.original_filename == "caf\ufffd \ufffd\ufffd.png"


@pytest.mark.parametrize(
    "disposition",
    [
        b"filename*=UTF-8''caf%FF%ED%A0%80.png",  # RFC 5987 form, bytes not UTF-8
        b"filename*=bogus''x.png",  # an unknown charset
        b'filename="\xed\xa0\x80.png"',  # an encoded lone surrogate
        b"filename*=latin-1''caf%E9.png",
    ],
)
async def test_odd_file_name_forms_still_upload(
    client: TestClient, services: Services, disposition: bytes
) -> None:
    """aiohttp warns about some of these and drops them; with pytest's warnings as
    errors, a warning reaching the handler would be a 500 here."""
    token = await _admin_token(services)
    body = (
        b'--B\r\nContent-Disposition: form-data; name="files[]"; %s\r\n'
        b"Content-Type: image/png\r\n\r\n%s\r\n--B--\r\n" % (disposition, make_image(seed=9))
    )
    response = await client.post(
        "/api/upload",
        data=body,
        headers={"Content-Type": "multipart/form-data; boundary=B", "token": token},
    )
    assert response.status == 200, await response.text()
    (image_id,) = await _all_ids(services)
    stored = await services.images.get(image_id, include_pending=True)
    assert stored.original_filename is None or stored.original_filename.encode("utf-8")


# ---- malformed HTTP ----------------------------------------------------------------


async def _raw(client: TestClient, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), timeout=10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/v1/images/search HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
)
async def test_malformed_request_logs_one_line(
    client: TestClient, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    answer = await _raw(client, request_bytes)
    assert answer.split(b" ", 2)[1].startswith(b"4")
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 1
    (record,) = records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "\n" not in record.getMessage()
    assert record.getMessage().startswith("malformed HTTP request from 127.0.0.1")


async def test_malformed_request_is_silent_below_info(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    await _raw(client, b"GET / HTTP/1.1\r\nHost: x\r\nBad\x01Name: 1\r\n\r\n")
    assert [r for r in caplog.records if r.name == "aiohttp.server"] == []


# ---- Discord Images batches --------------------------------------------------------


def _batch(*files: tuple[str, bytes]) -> tuple[bytes, dict]:
    boundary = b"gazou-batch"
    body = b"".join(
        b'--%s\r\nContent-Disposition: form-data; name="files[]"; filename="%s"\r\n'
        b"Content-Type: image/png\r\n\r\n%s\r\n" % (boundary, name.encode(), data)
        for name, data in files
    )
    body += b"--" + boundary + b"--\r\n"
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary.decode()}"}


async def test_batch_with_one_bad_file_stores_none(client: TestClient, services: Services) -> None:
    token = await _admin_token(services)
    good = [("a.png", make_image(seed=1)), ("b.png", make_image(seed=2))]
    for bad in (b"not an image at all", make_image(seed=1)[:60]):
        body, headers = _batch(good[0], ("bad.png", bad), good[1])
        response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
        assert response.status == 400
        assert (await response.json())["success"] is False
        assert await _all_ids(services) == set()
    # The retry without the bad file is not a 409: nothing of the first try was kept.
    body, headers = _batch(*good)
    response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
    assert response.status == 200
    assert len((await response.json())["files"]) == 2
    assert len(await _all_ids(services)) == 2


async def test_batch_with_an_already_stored_file_stores_none(
    client: TestClient, services: Services
) -> None:
    token = await _admin_token(services)
    existing = await _stored(services, 3)
    body, headers = _batch(("new.png", make_image(seed=4)), ("old.png", make_image(seed=3)))
    response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
    assert response.status == 409
    assert (await response.json())["id"] == existing
    assert await _all_ids(services) == {existing}


async def test_batch_with_the_same_file_twice_stores_none(
    client: TestClient, services: Services
) -> None:
    token = await _admin_token(services)
    same = make_image(seed=5)
    body, headers = _batch(("a.png", same), ("b.png", same))
    response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
    assert response.status == 400
    assert await response.json() == {"success": False, "message": "Files 1 and 2 are the same"}
    assert await _all_ids(services) == set()


# ---- a full database ---------------------------------------------------------------


@pytest.mark.backends("sqlite")  # SQLite's own machinery
async def test_full_database_is_507_and_a_batch_keeps_nothing(
    client: TestClient, services: Services
) -> None:
    """SQLite's own SQLITE_FULL, for real: the database may grow by only a few pages
    (`max_page_count`), so a batch of twenty files with long names stores its first
    ones, then fails as on a full disk; the stored ones are taken back."""
    token = await _admin_token(services)
    before = await _all_ids(services)
    write = services.storage.repo._write
    assert write is not None
    (pages,) = await (await write.execute("PRAGMA page_count")).fetchone()
    await write.execute(f"PRAGMA max_page_count = {pages + 8}")
    statements: list[str] = []
    await write.set_trace_callback(statements.append)
    files = [(f"{n:02d}" + "x" * 3000 + ".png", make_image(seed=100 + n)) for n in range(20)]
    body, headers = _batch(*files)
    response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
    await write.set_trace_callback(None)
    assert response.status == 507
    assert await response.json() == {
        "success": False,
        "message": "The database is full: nothing was stored",
    }
    # Some were stored before the store filled up, and were deleted again.
    assert any(s.startswith("DELETE FROM images") for s in statements)
    assert await _all_ids(services) == before
    files_left = {p.stem for p in (services.settings.data_dir / "files").rglob("*") if p.is_file()}
    assert files_left == before
    # Room again: the same batch goes in whole.
    await write.execute("PRAGMA max_page_count = 1073741823")
    response = await client.post("/api/upload", data=body, headers={**headers, "token": token})
    assert response.status == 200
    assert len(await _all_ids(services)) == len(before) + 20


@pytest.mark.backends("sqlite")  # SQLite's own machinery
async def test_readonly_database_write_is_503(services: Services) -> None:
    """A database opened read-only refuses writes with SQLITE_READONLY, as a
    read-only DATA_DIR does; the store says StorageUnavailable."""
    from core.errors import StorageUnavailable
    from storage.sqlite import SQLiteRepo

    path = services.storage.repo.path
    repo = SQLiteRepo(path)
    await repo.open()
    try:
        await repo._write.close()  # type: ignore[union-attr]
        import aiosqlite

        repo._write = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
        with pytest.raises(StorageUnavailable, match="cannot be written"):
            await repo.kv_set("k", "v")
    finally:
        await repo.close()


# ---- a full or read-only files folder, for real ------------------------------------


def _namespaces_work() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        return False
    try:
        done = subprocess.run(["unshare", "-Urm", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _upload_requests(token: str, seed: int) -> list[tuple[str, str, dict[str, str], bytes, dict]]:
    """(dialect, path, headers, body, content type) of one upload on each route."""
    out = []
    for n, (dialect, path, field, auth) in enumerate(
        [
            ("miku", "/api/add", "image", {"Authorization": f"Bearer {token}"}),
            ("nekosmoe", "/api/v1/images", "image", {"Authorization": token}),
            ("discord_images", "/api/upload", "files[]", {"token": token}),
            ("chevereto", "/api/1/upload", "source", {"X-API-Key": token}),
        ]
    ):
        body, content_type = _multipart(field, b"a.png", make_image(seed=seed + n))
        out.append((dialect, path, auth, body, content_type))
    return out


def _expected(dialect: str, status: int, message: str) -> dict:
    if dialect == "discord_images":
        return {"success": False, "message": message}
    if dialect == "chevereto":
        phrase = {507: "Insufficient Storage", 503: "Service Unavailable"}[status]
        return {
            "status_code": status,
            "error": {"message": message, "code": status},
            "status_txt": phrase,
        }
    return {"message": message}


def _fill(path: Path) -> int:
    """Write zeros to `path` until the file system refuses; the errno it gave."""
    with path.open("wb", buffering=0) as f:
        for _ in range(1024):  # 4 MB at most, far past the 512 KB tmpfs
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                return exc.errno or 0
    return 0


def _remount_readonly(pid: int, filler: Path, files: Path) -> None:
    """Free the space again, then make the tmpfs read-only inside `pid`'s namespaces."""
    filler.unlink()
    command = ["nsenter", "-t", str(pid), "-U", "-m", "--preserve-credentials"]
    subprocess.run([*command, "mount", "-o", "remount,ro", str(files)], check=True, timeout=10)


@pytest.mark.skipif(
    not _namespaces_work(), reason="needs unshare and nsenter (user + mount namespaces)"
)
async def test_full_then_readonly_files_folder_is_507_then_503(tmp_path: Path) -> None:
    """Real conditions, not mocks: a `bot.py serve` child runs in its own user and
    mount namespaces (unprivileged, gone with the process) with DATA_DIR/files on a
    512 KB tmpfs. The test fills that tmpfs through /proc/<pid>/root until the kernel
    says ENOSPC, then remounts it read-only (EROFS) with nsenter. Tests run as root,
    so permissions (chmod) would not stop a write; a full or read-only file system
    does. Every upload route must answer in its own shape, and store nothing."""
    data = tmp_path / "data"
    files = data / "files"
    files.mkdir(parents=True)
    async with open_services(make_settings(data)) as services:
        token = await _admin_token(services)
    port = free_port()
    env = child_env(data, HOST="127.0.0.1", PORT=str(port), RATE_LIMITS="off")
    proc = await asyncio.create_subprocess_exec(
        "unshare",
        "-Urm",
        "sh",
        "-c",
        'mount -t tmpfs -o size=512k gazou "$1" && exec "$2" bot.py serve',
        "sh",
        str(files),
        sys.executable,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output = asyncio.create_task(proc.stdout.read())
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            for _ in range(150):
                assert not output.done(), "the server exited early"
                try:
                    async with session.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the server did not answer /healthz in 15 s")
            sanity = _upload_requests(token, 500)[0]
            async with session.post(
                base + sanity[1], data=sanity[3], headers={**sanity[2], **sanity[4]}
            ) as response:
                assert response.status == 200, await response.text()
            # Fill the tmpfs as the server sees it, until the kernel refuses.
            filler = Path(f"/proc/{proc.pid}/root{files}/filler")
            assert await asyncio.to_thread(_fill, filler) == errno.ENOSPC
            for n, (status, message) in enumerate(
                [
                    (507, "The image store is full: nothing was stored"),
                    (503, "The image store is read-only: nothing was stored"),
                ]
            ):
                if status == 503:
                    await asyncio.to_thread(_remount_readonly, proc.pid, filler, files)
                for dialect, path, auth, body, ctype in _upload_requests(token, 600 + 10 * n):
                    async with session.post(
                        base + path, data=body, headers={**auth, **ctype}
                    ) as response:
                        assert response.status == status, (dialect, await response.text())
                        assert await response.json() == _expected(dialect, status, message)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=20)
        text = (await output).decode()
    assert "Traceback" not in text, text
    assert text.count("cannot write images/") == 8, text
    async with open_services(make_settings(data)) as services:
        assert len(await _all_ids(services)) == 1  # the sanity upload only
