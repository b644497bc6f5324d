"""Settings: defaults, every bad value named by its variable, PUBLIC_URL derived from
HOST/PORT, and the signing secret generated once and kept."""

from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.settings import (
    DEFAULT_TOKEN_SCOPES,
    Settings,
    ensure_signing_secret,
    load_settings,
    rate_limit_backend,
)


def test_defaults_without_any_variable() -> None:
    settings = load_settings({})
    assert settings == Settings(public_url="http://127.0.0.1:8080")
    assert settings.discord_token is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("data")
    assert settings.max_request_bytes == 50 * 1024 * 1024
    assert settings.default_token_scopes == DEFAULT_TOKEN_SCOPES
    assert settings.rate_limits is True
    assert settings.signing_secret == b""
    assert (settings.header_timeout, settings.keepalive_timeout) == (10.0, 75.0)
    assert settings.max_idle_connections == 512
    assert settings.trusted_proxies == ()


def test_default_image_workers_leave_a_core_to_the_event_loop() -> None:
    cores = os.cpu_count() or 2
    assert load_settings({}).image_workers == max(1, cores - 1)
    assert load_settings({"IMAGE_WORKERS": ""}).image_workers == max(1, cores - 1)


def test_every_variable_is_read() -> None:
    env = {
        "DISCORD_TOKEN": " abc ",
        "OWNER_IDS": "1, 2;3",
        "DEV_GUILD_ID": "42",
        "MODERATION_CHANNEL_ID": "43",
        "HOST": "0.0.0.0",
        "PORT": "9000",
        "DATA_DIR": "/srv/gazou",
        "PUBLIC_URL": "https://img.example.org/",
        "SIGNING_SECRET": "s" * 16,
        "LOG_LEVEL": "debug",
        "MAX_REQUEST_MB": "2",
        "MAX_IMAGE_PIXELS": "2000000",
        "THUMBNAIL_SIZE": "200x300",
        "RATE_LIMITS": "off",
        "DEFAULT_TOKEN_SCOPES": "image:list",
        "URL_FETCH_MAX_MB": "3",
        "URL_FETCH_TIMEOUT": "2.5",
        "URL_FETCH_ALLOW_PRIVATE": "yes",
        "EXPIRY_SWEEP_SECONDS": "5",
        "IMAGE_WORKERS": "3",
        "HEADER_TIMEOUT_SECONDS": "0.5",
        "KEEPALIVE_TIMEOUT_SECONDS": "30",
        "MAX_IDLE_CONNECTIONS": "100",
        "TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16,::1",
    }
    assert load_settings(env) == Settings(
        discord_token="abc",
        owner_ids=frozenset({1, 2, 3}),
        dev_guild_id=42,
        moderation_channel_id=43,
        host="0.0.0.0",
        port=9000,
        data_dir=Path("/srv/gazou"),
        public_url="https://img.example.org",
        signing_secret=b"s" * 16,
        log_level="DEBUG",
        max_request_bytes=2 * 1024 * 1024,
        max_image_pixels=2_000_000,
        thumbnail_size=(200, 300),
        rate_limits=False,
        default_token_scopes=("image:list",),
        url_fetch_max_bytes=3 * 1024 * 1024,
        url_fetch_timeout=2.5,
        url_fetch_allow_private=True,
        expiry_sweep_seconds=5.0,
        image_workers=3,
        header_timeout=0.5,
        keepalive_timeout=30.0,
        max_idle_connections=100,
        trusted_proxies=(
            ipaddress.ip_network("10.0.0.1/32"),
            ipaddress.ip_network("192.168.0.0/16"),
            ipaddress.ip_network("::1/128"),
        ),
    )


BAD = [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("PORT", "-1"),
    ("OWNER_IDS", "12,bob"),
    ("DEV_GUILD_ID", "guild"),
    ("MODERATION_CHANNEL_ID", "#mod"),
    ("PUBLIC_URL", "ftp://example.org"),
    ("PUBLIC_URL", "example.org"),
    ("SIGNING_SECRET", "short"),
    ("LOG_LEVEL", "LOUD"),
    ("MAX_REQUEST_MB", "0"),
    ("MAX_REQUEST_MB", "lots"),
    ("MAX_IMAGE_PIXELS", "5"),
    ("THUMBNAIL_SIZE", "big"),
    ("THUMBNAIL_SIZE", "8x8"),
    ("RATE_LIMITS", "maybe"),
    ("URL_FETCH_MAX_MB", "2000"),
    ("URL_FETCH_TIMEOUT", "0"),
    ("URL_FETCH_TIMEOUT", "soon"),
    ("URL_FETCH_ALLOW_PRIVATE", "perhaps"),
    ("EXPIRY_SWEEP_SECONDS", "-5"),
    ("IMAGE_WORKERS", "0"),
    ("IMAGE_WORKERS", "65"),
    ("HEADER_TIMEOUT_SECONDS", "0"),
    ("KEEPALIVE_TIMEOUT_SECONDS", "forever"),
    ("MAX_IDLE_CONNECTIONS", "0"),
    ("TRUSTED_PROXIES", "10.0.0.0/8,proxy.lan"),
    ("TRUSTED_PROXIES", "10.0.0.0/33"),
    ("RATE_LIMIT_STORE", "postgres"),
    ("RATE_LIMIT_STORE", "redis"),  # without REDIS_URL
    ("REDIS_URL", "127.0.0.1:6379"),
    ("REDIS_URL", "http://127.0.0.1:6379/0"),
    ("DATABASE_URL", "mysql://db.example.org/gazou"),
    ("DATABASE_URL", "postgresql://"),
]


@pytest.mark.parametrize(("name", "value"), BAD, ids=[f"{n}={v}" for n, v in BAD])
def test_a_bad_value_is_refused_naming_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({name: value})
    assert caught.value.name == name
    assert str(caught.value).startswith(f"setting {name}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("", "", "http://127.0.0.1:8080"),
        ("0.0.0.0", "9000", "http://127.0.0.1:9000"),
        ("::", "", "http://127.0.0.1:8080"),
        ("::1", "8081", "http://[::1]:8081"),
        ("gazou.lan", "80", "http://gazou.lan:80"),
    ],
)
def test_public_url_defaults_to_host_and_port(host: str, port: str, url: str) -> None:
    assert load_settings({"HOST": host, "PORT": port}).public_url == url


@pytest.mark.parametrize(
    ("url", "public"),
    [
        ("http://127.0.0.1:8080", False),
        ("http://localhost", False),
        ("http://192.168.1.5", False),
        ("http://gazou.local", False),
        ("https://img.example.org", True),
        ("http://8.8.8.8", True),
    ],
)
def test_public_url_is_public_only_for_reachable_hosts(url: str, public: bool) -> None:
    assert load_settings({"PUBLIC_URL": url}).public_url_is_public is public


def test_signing_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = load_settings({"DATA_DIR": str(tmp_path / "data")})
    first = ensure_signing_secret(settings)
    second = ensure_signing_secret(load_settings({"DATA_DIR": str(tmp_path / "data")}))
    assert len(first.signing_secret) >= 32
    assert second.signing_secret == first.signing_secret
    path = tmp_path / "data" / "signing_secret"
    assert path.read_text().strip().encode() == first.signing_secret
    # Only its owner may read it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_configured_signing_secret_wins_and_writes_no_file(tmp_path: Path) -> None:
    settings = load_settings(
        {"DATA_DIR": str(tmp_path / "data"), "SIGNING_SECRET": "configured-secret-1234"}
    )
    assert ensure_signing_secret(settings).signing_secret == b"configured-secret-1234"
    assert not (tmp_path / "data" / "signing_secret").exists()


def test_a_damaged_signing_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "signing_secret").write_text("tiny")
    with pytest.raises(SettingsError) as caught:
        ensure_signing_secret(load_settings({"DATA_DIR": str(tmp_path / "data")}))
    assert caught.value.name == "SIGNING_SECRET"


def test_processes_role_and_web_workers() -> None:
    assert (load_settings({}).role, load_settings({}).web_workers) == ("all", 1)
    settings = load_settings({"ROLE": " Web ", "WEB_WORKERS": "4"})
    assert (settings.role, settings.web_workers) == ("web", 4)
    assert load_settings({"ROLE": "bot"}).role == "bot"
    for name, value in (("ROLE", "worker"), ("WEB_WORKERS", "0"), ("WEB_WORKERS", "65")):
        with pytest.raises(SettingsError) as caught:
            load_settings({name: value})
        assert caught.value.name == name


# ---- where rate limit counts live --------------------------------------------------


def test_rate_limit_store_defaults_to_this_process_for_one_process() -> None:
    settings = load_settings({})
    assert (settings.rate_limit_store, settings.redis_url) == ("auto", None)
    assert rate_limit_backend(settings) == "memory"


def test_redis_url_makes_auto_use_redis() -> None:
    settings = load_settings({"REDIS_URL": " redis://127.0.0.1:6379/0 "})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert rate_limit_backend(settings) == "redis"


@pytest.mark.parametrize("store", ["memory", "shared", "redis"])
def test_rate_limit_store_names_a_store(store: str) -> None:
    env = {"RATE_LIMIT_STORE": store.upper(), "REDIS_URL": "redis://10.0.0.5:6379/2"}
    assert rate_limit_backend(load_settings(env)) == store


def test_several_web_processes_share_memory_without_redis() -> None:
    # serve --workers N / WEB_WORKERS set web_workers; each supervised worker runs
    # with role web.
    main = load_settings({"WEB_WORKERS": "2"})
    worker = replace(main, web_workers=1, role="web")
    assert rate_limit_backend(main) == rate_limit_backend(worker) == "shared"


def test_rate_limits_off_counts_nothing_anywhere() -> None:
    env = {"RATE_LIMITS": "off", "RATE_LIMIT_STORE": "shared"}
    assert rate_limit_backend(load_settings(env)) == "memory"


# ---- the blob store: files, or an S3 bucket ----------------------------------------------


def test_blob_store_defaults_to_files_without_redirects() -> None:
    settings = load_settings({})
    assert (settings.blob_url, settings.blob_redirect) == (None, False)


def test_blob_url_and_aws_keys_are_read_and_the_secret_is_not_shown() -> None:
    url = "s3://gazou-images?endpoint=http://127.0.0.1:9000&region=eu-west-1"
    settings = load_settings(
        {
            "BLOB_URL": url,
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI",
            "BLOB_REDIRECT": "on",
        }
    )
    assert settings.blob_url == url
    assert (settings.blob_access_key, settings.blob_secret_key) == ("AKIDEXAMPLE", "wJalrXUtnFEMI")
    assert settings.blob_redirect is True
    assert "wJalrXUtnFEMI" not in repr(settings)


def test_a_bucket_alone_is_a_blob_url() -> None:
    assert load_settings({"BLOB_URL": "s3://my.bucket-1"}).blob_url == "s3://my.bucket-1"


@pytest.mark.parametrize(
    "url",
    [
        "http://bucket",
        "s3://",
        "s3://Bucket_With_Caps",
        "s3://ab",
        "s3://bucket/folder",
        "s3://bucket?endpoint=ftp://host",
        "s3://bucket?endpoint=nohost",
        "s3://bucket?regoin=eu-west-1",
    ],
)
def test_a_bad_blob_url_is_refused_by_name(url: str) -> None:
    with pytest.raises(SettingsError, match="BLOB_URL"):
        load_settings({"BLOB_URL": url})


def test_a_bad_blob_redirect_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="BLOB_REDIRECT"):
        load_settings({"BLOB_REDIRECT": "sometimes"})


def test_database_url_selects_postgresql_and_is_unset_by_default() -> None:
    assert load_settings({}).database_url is None
    assert load_settings({"DATABASE_URL": " "}).database_url is None
    url = "postgresql://gazou:secret@db.example.org:5432/gazou"
    assert load_settings({"DATABASE_URL": url}).database_url == url
    assert load_settings({"DATABASE_URL": "postgres:///gazou?host=/run/pg"}).database_url


def test_a_bad_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"DATABASE_URL": "mysql://gazou:hunter2@db/gazou"})
    assert "hunter2" not in str(caught.value)


# ---- announcements ----


def test_webhook_urls_are_read_and_deduplicated() -> None:
    one = "https://discord.com/api/webhooks/1/abc"
    two = "http://127.0.0.1:9000/hook"
    settings = load_settings({"WEBHOOK_URLS": f" {one}, {two},{one} "})
    assert settings.webhook_urls == (one, two)
    assert load_settings({}).webhook_urls == ()
    assert one not in repr(settings)  # each URL carries its webhook's secret


@pytest.mark.parametrize("raw", ["discord.com/api/webhooks/1/abc", "ftp://example.org/x"])
def test_bad_webhook_urls_fail_fast_without_echoing_them(raw: str) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_URLS") as caught:
        load_settings({"WEBHOOK_URLS": raw})
    assert raw not in str(caught.value)


# ---- Log in with Discord (OAuth2) ------------------------------------------------------


def test_discord_oauth_is_off_by_default_and_read_when_set() -> None:
    off = load_settings({})
    assert (off.discord_client_id, off.discord_client_secret) == (None, None)
    with_id = load_settings({"DISCORD_CLIENT_SECRET": " s3cr3t ", "DISCORD_CLIENT_ID": "42"})
    assert (with_id.discord_client_id, with_id.discord_client_secret) == (42, "s3cr3t")
    # With the bot's token the application id is asked of Discord: no id needed.
    with_token = load_settings({"DISCORD_CLIENT_SECRET": "s3cr3t", "DISCORD_TOKEN": "t"})
    assert with_token.discord_client_id is None and with_token.discord_client_secret == "s3cr3t"
    assert "s3cr3t" not in repr(with_token)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DISCORD_CLIENT_SECRET": "s3cr3t"}, "DISCORD_CLIENT_ID"),
        ({"DISCORD_CLIENT_SECRET": "s3cr3t", "DISCORD_CLIENT_ID": "app"}, "DISCORD_CLIENT_ID"),
        (
            {"DISCORD_CLIENT_SECRET": "two words", "DISCORD_CLIENT_ID": "42"},
            "DISCORD_CLIENT_SECRET",
        ),
    ],
)
def test_bad_discord_oauth_settings_are_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(env)
