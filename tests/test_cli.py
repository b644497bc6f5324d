"""The command line, run as a newcomer would: `python bot.py ...` in a child process
with its data in a temporary folder, plus the `make run` smoke test (serve, answer
/healthz over loopback, stop cleanly on SIGINT)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from core.models import Rating, SearchQuery, Status
from core.services import open_services
from tests.conftest import make_image, make_settings

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60


def child_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a child: ours, its data in `data_dir`, no Discord."""
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST", "PUBLIC_URL")}
    return {**env, "DATA_DIR": str(data_dir), "DISCORD_TOKEN": "", **extra}


def gazou(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "bot.py", *args],
        cwd=ROOT,
        env=child_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = gazou(tmp_path / "data", "--help")
    assert result.returncode == 0
    for command in ("serve", "token", "import"):
        assert command in result.stdout


def issue(data_dir: Path) -> tuple[str, str]:
    """Issue a token from the command line; returns (secret, token id)."""
    result = gazou(
        data_dir, "token", "issue", "--owner", "x", "--scopes", "image:list", "--expires-days", "3"
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"issued token (\S+) for x", result.stderr)
    assert found, result.stderr
    return result.stdout, found.group(1)


def test_token_issue_prints_exactly_the_secret(tmp_path: Path) -> None:
    stdout, _ = issue(tmp_path / "data")
    assert re.fullmatch(r"[0-9a-zA-Z]{100}\n", stdout)


async def test_issued_token_verifies_with_its_scopes_and_expiry(tmp_path: Path) -> None:
    stdout, token_id = issue(tmp_path / "data")
    async with open_services(make_settings(tmp_path / "data")) as services:
        token = await services.tokens.verify(stdout.strip())
    assert token.id == token_id
    assert token.scopes == ("image:list",)
    assert token.expires_at is not None
    assert round((token.expires_at - token.created_at).total_seconds()) == 3 * 86400


def test_token_list_shows_the_token_but_never_its_secret(tmp_path: Path) -> None:
    secret, token_id = issue(tmp_path / "data")
    result = gazou(tmp_path / "data", "token", "list")
    assert result.returncode == 0
    (line,) = [line for line in result.stdout.splitlines() if token_id in line]
    assert "active" in line and "image:list" in line and " x " in line
    assert secret.strip() not in result.stdout + result.stderr


def test_token_list_marks_an_expired_token_expired(tmp_path: Path) -> None:
    _, token_id = issue(tmp_path / "data")
    with sqlite3.connect(tmp_path / "data" / "gazou.sqlite3") as conn:
        conn.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (time.time() - 60, token_id))
    listed = gazou(tmp_path / "data", "token", "list").stdout
    assert re.search(rf"{token_id}\s+expired", listed)


def test_token_revoke_by_id_marks_it_revoked(tmp_path: Path) -> None:
    _, token_id = issue(tmp_path / "data")
    result = gazou(tmp_path / "data", "token", "revoke", token_id)
    assert result.returncode == 0
    assert f"revoked token {token_id}" in result.stdout
    listed = gazou(tmp_path / "data", "token", "list").stdout
    assert re.search(rf"{token_id}\s+revoked", listed)


def test_revoking_an_unknown_token_fails_with_one_line(tmp_path: Path) -> None:
    result = gazou(tmp_path / "data", "token", "revoke", "nonexistent")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["gazou: No token with id 'nonexistent'"]


def image_folder(root: Path) -> Path:
    """Three images in nested folders, a text file, a corrupt JPEG and a hidden file."""
    folder = root / "incoming"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "c").mkdir()
    (folder / "a" / "one.png").write_bytes(make_image("PNG", seed=1))
    (folder / "a" / "b" / "two.jpg").write_bytes(make_image("JPEG", seed=2))
    (folder / "c" / "three.webp").write_bytes(make_image("WEBP", seed=3))
    (folder / "notes.txt").write_text("not an image\n")
    jpeg = make_image("JPEG", (200, 150), seed=4)
    (folder / "c" / "broken.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / ".hidden.png").write_bytes(make_image("PNG", seed=5))
    return folder


def test_import_summarises_what_it_did(tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    result = gazou(
        tmp_path / "data",
        "import",
        str(folder),
        "--tags",
        "a,b",
        "--artist",
        "X",
        "--rating",
        "sfw",
    )
    # One file was refused, so the exit code says not everything went in.
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "imported 3, duplicates 0, refused 1, not images 1"
    assert "broken.jpg" in result.stdout


async def test_imported_images_are_approved_with_the_given_words(tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    gazou(
        tmp_path / "data",
        "import",
        str(folder),
        "--tags",
        "a,b",
        "--artist",
        "X",
        "--rating",
        "sfw",
    )
    async with open_services(make_settings(tmp_path / "data")) as services:
        page = await services.images.search(SearchQuery(tags=("a", "b"), artist="X", limit=10))
    assert page.total == 3
    assert sorted(i.original_filename or "" for i in page.images) == [
        "one.png",
        "three.webp",
        "two.jpg",
    ]
    for image in page.images:
        assert image.status is Status.APPROVED and image.rating is Rating.SFW


def test_import_run_again_finds_only_duplicates(tmp_path: Path) -> None:
    folder = image_folder(tmp_path)
    gazou(tmp_path / "data", "import", str(folder), "--tags", "a,b")
    again = gazou(tmp_path / "data", "import", str(folder), "--tags", "a,b")
    assert again.stdout.splitlines()[0] == "imported 0, duplicates 3, refused 1, not images 1"


def test_import_of_a_missing_folder_fails_with_exit_code_2(tmp_path: Path) -> None:
    result = gazou(tmp_path / "data", "import", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "abc"), ("MAX_REQUEST_MB", "0"), ("LOG_LEVEL", "LOUD")]
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, name: str, value: str
) -> None:
    result = gazou(tmp_path / "data", "token", "list", **{name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_answers_healthz_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    env = child_env(tmp_path / "data", HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="INFO")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "bot.py",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:

        async def until_ready() -> None:
            while True:
                line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
                assert line, "exited early:\n" + "".join(output)
                output.append(line)
                if "Discord bot is off" in line:
                    return

        await asyncio.wait_for(until_ready(), timeout=15)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
            ) as response,
        ):
            assert response.status == 200
            assert await response.json() == {"status": "ok"}
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
        output.append(rest.decode())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(output)
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert f"listening on http://127.0.0.1:{port}" in text
