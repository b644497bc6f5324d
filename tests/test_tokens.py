"""API tokens: issuing (only a hash is stored), verifying every header form and every
bad token, scopes, revoking by prefix, last use, and token requests."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import Conflict, InvalidInput, NotFound, Unauthorized
from core.models import Token, User
from core.services import Services
from core.settings import DEFAULT_TOKEN_SCOPES
from core.tokens import custom_expiry_limit, has_scope, parse_scopes
from storage.postgres import PostgresRepo
from tests.conftest import ALL_BACKENDS, MEMBER, OWNER

BACKENDS = ALL_BACKENDS


def token_with(*scopes: str) -> Token:
    now = datetime.now(UTC)
    return Token(
        id="t",
        owner_id="1",
        owner_name="o",
        purpose="",
        scopes=scopes,
        issued_by="x",
        created_at=now,
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )


def database_bytes(data_dir: Path) -> bytes:
    """Every byte SQLite has written: the database, its WAL and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("gazou.sqlite3*")))


async def stored_bytes(services: Services, request: pytest.FixtureRequest) -> bytes:
    """Every byte the store has written: SQLite's files, or the whole PostgreSQL
    cluster's (tables and WAL) after a checkpoint."""
    repo = services.storage.repo
    if isinstance(repo, PostgresRepo):
        await repo._value("CHECKPOINT")
        data = request.getfixturevalue("postgres").data
        return b"".join(p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file())
    return database_bytes(services.settings.data_dir)


async def test_issued_secret_is_100_letters_and_digits(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    assert re.fullmatch(r"[0-9a-zA-Z]{100}", issued.secret)


async def test_issued_secrets_differ(services: Services) -> None:
    secrets = {(await services.tokens.issue(MEMBER, issued_by="test")).secret for _ in range(5)}
    assert len(secrets) == 5


async def test_only_the_sha256_of_the_secret_is_stored(
    services: Services, request: pytest.FixtureRequest
) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    (stored,) = await services.storage.repo._one(
        "SELECT secret_sha256 FROM tokens WHERE id = ?", (issued.token.id,)
    )
    assert stored == hashlib.sha256(issued.secret.encode()).digest()
    assert bytes(stored) in await stored_bytes(services, request)  # the check can fail
    assert issued.secret.encode() not in await stored_bytes(services, request)


async def test_issue_uses_the_default_scopes_unless_told(services: Services) -> None:
    default = await services.tokens.issue(MEMBER, issued_by="test")
    chosen = await services.tokens.issue(MEMBER, scopes=("admin",), issued_by="test")
    assert default.token.scopes == DEFAULT_TOKEN_SCOPES
    assert chosen.token.scopes == ("admin",)


async def test_issue_refuses_a_lifetime_that_is_not_positive(services: Services) -> None:
    with pytest.raises(InvalidInput):
        await services.tokens.issue(MEMBER, expires_in=timedelta(0), issued_by="test")


@pytest.mark.parametrize("form", ["{}", "Bearer {}", "bearer {}", "  Bearer   {}  "])
async def test_verify_accepts_the_secret_with_or_without_bearer(
    services: Services, form: str
) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    token = await services.tokens.verify(form.format(issued.secret))
    assert token.id == issued.token.id
    assert token.owner_id == MEMBER.id


@pytest.mark.parametrize("header", [None, ""])
async def test_verify_without_a_token_is_unauthorized_missing(
    services: Services, header: str | None
) -> None:
    with pytest.raises(Unauthorized) as caught:
        await services.tokens.verify(header)
    assert caught.value.details["reason"] == "missing"


@pytest.mark.parametrize(
    "bad",
    [
        "a" * 100,  # well formed, never issued
        "short",
        "a" * 101,
        "a" * 99 + "!",
        "Bearer ",
        "Token " + "a" * 100,
    ],
    ids=["unknown", "short", "long", "bad character", "bearer only", "other scheme"],
)
async def test_verify_of_a_wrong_or_malformed_token_is_unauthorized_invalid(
    services: Services, bad: str
) -> None:
    await services.tokens.issue(MEMBER, issued_by="test")
    with pytest.raises(Unauthorized) as caught:
        await services.tokens.verify(bad)
    assert caught.value.details["reason"] == "invalid"


async def test_verify_of_an_expired_token_is_unauthorized_invalid(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, expires_in=timedelta(days=1), issued_by="test")
    # Age the token in the store: it expired a second ago.
    async with services.storage.repo.transaction() as tx:
        await tx.execute(
            "UPDATE tokens SET expires_at = ? WHERE id = ?",
            (datetime.now(UTC).timestamp() - 1, issued.token.id),
        )
    with pytest.raises(Unauthorized) as caught:
        await services.tokens.verify(issued.secret)
    assert caught.value.details["reason"] == "invalid"


async def test_verify_of_a_revoked_token_is_unauthorized_invalid(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    await services.tokens.revoke(issued.token.id)
    with pytest.raises(Unauthorized) as caught:
        await services.tokens.verify(issued.secret)
    assert caught.value.details["reason"] == "invalid"


async def test_verify_records_the_last_use(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    assert issued.token.last_used_at is None
    before = datetime.now(UTC)
    await services.tokens.verify(issued.secret)
    stored = await services.storage.repo.get_token(issued.token.id)
    assert stored is not None and stored.last_used_at is not None
    assert before - timedelta(seconds=1) <= stored.last_used_at <= datetime.now(UTC)


def test_parse_scopes_accepts_commas_spaces_and_lists() -> None:
    assert parse_scopes(" image:upload, image:list,,image:upload ") == (
        "image:upload",
        "image:list",
    )
    assert parse_scopes(["admin", "image:custom-expiry:3600"]) == (
        "admin",
        "image:custom-expiry:3600",
    )


@pytest.mark.parametrize(
    "bad",
    ["image:delete", "image:custom-expiry:30", "image:custom-expiry:soon", "image:custom-expiry:"],
)
def test_parse_scopes_refuses_unknown_scopes_and_bad_bounds(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_scopes(bad)


def test_has_scope_is_granted_by_the_scope_or_by_admin() -> None:
    assert has_scope(token_with("image:list"), "image:list")
    assert not has_scope(token_with("image:list"), "image:upload")
    assert has_scope(token_with("admin"), "image:upload")


@pytest.mark.parametrize(
    ("scopes", "limit"),
    [
        ((), None),
        (("image:list",), None),
        (("image:custom-expiry:3600",), 3600),
        (("image:custom-expiry:60", "image:custom-expiry:7200"), 7200),
        (("image:custom-expiry",), 0),
        (("admin",), 0),
    ],
)
def test_custom_expiry_limit_follows_the_scopes(scopes: tuple[str, ...], limit: int | None) -> None:
    assert custom_expiry_limit(token_with(*scopes)) == limit


def test_custom_expiry_limit_without_a_token_is_none() -> None:
    assert custom_expiry_limit(None) is None


async def test_revoke_by_a_unique_prefix(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    revoked = await services.tokens.revoke(issued.token.id[:8])
    assert revoked.id == issued.token.id
    assert revoked.revoked_at is not None


async def test_revoke_by_an_ambiguous_prefix_is_refused(services: Services) -> None:
    first = await services.tokens.issue(MEMBER, issued_by="test")
    second = await services.tokens.issue(MEMBER, issued_by="test")
    # Give both the same known prefix so the ambiguity is certain.
    async with services.storage.repo.transaction() as tx:
        for n, token_id in enumerate((first.token.id, second.token.id)):
            await tx.execute("UPDATE tokens SET id = ? WHERE id = ?", (f"abcdef-{n}", token_id))
    with pytest.raises(InvalidInput, match="ambiguous"):
        await services.tokens.revoke("abcdef")
    assert all(t.revoked_at is None for t in await services.tokens.list_tokens())


@pytest.mark.parametrize("prefix", ["abc", "zzzzzzzz"], ids=["too short", "unknown"])
async def test_revoke_of_an_unknown_or_too_short_id_is_not_found(
    services: Services, prefix: str
) -> None:
    await services.tokens.issue(MEMBER, issued_by="test")
    with pytest.raises(NotFound):
        await services.tokens.revoke(prefix)


async def test_revoking_twice_is_a_conflict(services: Services) -> None:
    issued = await services.tokens.issue(MEMBER, issued_by="test")
    await services.tokens.revoke(issued.token.id)
    with pytest.raises(Conflict):
        await services.tokens.revoke(issued.token.id)


async def test_list_shows_tokens_newest_first_and_by_owner(services: Services) -> None:
    first = await services.tokens.issue(MEMBER, issued_by="test")
    second = await services.tokens.issue(OWNER, issued_by="test")
    assert [t.id for t in await services.tokens.list_tokens()] == [second.token.id, first.token.id]
    assert [t.id for t in await services.tokens.list_tokens(MEMBER.id)] == [first.token.id]


async def test_a_member_has_one_pending_request_at_a_time(services: Services) -> None:
    await services.tokens.request(MEMBER, "my bot")
    with pytest.raises(Conflict):
        await services.tokens.request(MEMBER, "another bot")
    # Someone else may still ask.
    other = await services.tokens.request(User("300", "other"), "their bot")
    assert other.status == "pending"


@pytest.mark.parametrize("purpose", ["", "   ", "x" * 501], ids=["empty", "blank", "too long"])
async def test_a_request_needs_a_purpose(services: Services, purpose: str) -> None:
    with pytest.raises(InvalidInput):
        await services.tokens.request(MEMBER, purpose)


async def test_approving_a_request_issues_a_token_with_the_default_scopes(
    services: Services,
) -> None:
    request = await services.tokens.request(MEMBER, "my bot")
    decided, issued = await services.tokens.approve_request(request.id, OWNER)
    assert decided.status == "approved"
    assert decided.token_id == issued.token.id
    assert OWNER.id in (decided.decided_by or "")
    assert issued.token.scopes == services.settings.default_token_scopes
    assert issued.token.owner_id == MEMBER.id and issued.token.purpose == "my bot"
    assert (await services.tokens.verify(issued.secret)).id == issued.token.id


async def test_after_a_decision_the_member_may_ask_again(services: Services) -> None:
    request = await services.tokens.request(MEMBER, "my bot")
    await services.tokens.deny_request(request.id, OWNER)
    again = await services.tokens.request(MEMBER, "my bot, take two")
    assert again.status == "pending"


async def test_denying_a_request_issues_nothing(services: Services) -> None:
    request = await services.tokens.request(MEMBER, "my bot")
    decided = await services.tokens.deny_request(request.id, OWNER)
    assert decided.status == "denied" and decided.token_id is None
    assert await services.tokens.list_tokens() == []
    assert await services.storage.repo.list_token_requests() == []


@pytest.mark.parametrize("first", ["approve", "deny"])
@pytest.mark.parametrize("second", ["approve", "deny"])
async def test_deciding_a_request_twice_is_a_conflict(
    services: Services, first: str, second: str
) -> None:
    request = await services.tokens.request(MEMBER, "my bot")
    decide = {"approve": services.tokens.approve_request, "deny": services.tokens.deny_request}
    await decide[first](request.id, OWNER)
    with pytest.raises(Conflict):
        await decide[second](request.id, User("101", "other owner"))
    # Exactly one token exists if (and only if) the first decision approved.
    assert len(await services.tokens.list_tokens()) == (1 if first == "approve" else 0)


async def test_deciding_an_unknown_request_is_not_found(services: Services) -> None:
    with pytest.raises(NotFound):
        await services.tokens.approve_request("no-such-request", OWNER)
    with pytest.raises(NotFound):
        await services.tokens.deny_request("no-such-request", OWNER)


async def test_pending_requests_lists_only_undecided_ones_oldest_first(services: Services) -> None:
    first = await services.tokens.request(MEMBER, "first bot")
    second = await services.tokens.request(User("300", "carol"), "second bot")
    third = await services.tokens.request(User("400", "dana"), "third bot")
    assert [r.id for r in await services.tokens.pending_requests()] == [
        first.id,
        second.id,
        third.id,
    ]
    await services.tokens.approve_request(second.id, OWNER)
    await services.tokens.deny_request(third.id, OWNER)
    assert [r.id for r in await services.tokens.pending_requests()] == [first.id]
