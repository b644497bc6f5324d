"""Settings from the environment (a `.env` file is read first; real variables win).

One typed object; a bad value stops start-up with one line naming the setting."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from core.errors import SettingsError

DEFAULT_TOKEN_SCOPES = ("image:upload", "image:list")
# Image threads by default: one core is left to the event loop. With a busy worker on
# every core, a woken loop waits for a core and stalls for tens of milliseconds while
# large uploads decode (bench/store.py measures it).
DEFAULT_IMAGE_WORKERS = max(1, (os.cpu_count() or 2) - 1)
# What one `bot.py serve` process runs: everything (the default), only the HTTP API, or
# only the Discord bot with the work that must happen once.
ROLES = ("all", "web", "bot")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of gazou; see `.env.example` for the meaning of each."""

    discord_token: str | None = None
    owner_ids: frozenset[int] = frozenset()
    dev_guild_id: int | None = None
    moderation_channel_id: int | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    public_url: str = "http://127.0.0.1:8080"
    signing_secret: bytes = b""
    log_level: str = "INFO"
    max_request_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    thumbnail_size: tuple[int, int] = (360, 420)
    rate_limits: bool = True
    default_token_scopes: tuple[str, ...] = DEFAULT_TOKEN_SCOPES
    url_fetch_max_bytes: int = 20 * 1024 * 1024
    url_fetch_timeout: float = 15.0
    url_fetch_allow_private: bool = False
    expiry_sweep_seconds: float = 60.0
    image_workers: int = DEFAULT_IMAGE_WORKERS
    # Connections and clients (api/server.py, api/ratelimit.py).
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_idle_connections: int = 512
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # Processes: what `bot.py serve` runs (all, web, bot) and how many serve HTTP.
    role: str = "all"
    web_workers: int = 1
    # Where rate limit counts live (storage.open_window_counter); see rate_limit_backend().
    rate_limit_store: str = "auto"
    redis_url: str | None = None
    # The blob store (storage/__init__.py open_storage): None keeps the bytes as files
    # under DATA_DIR; an s3:// URL puts them in that bucket. The keys are the usual
    # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (None: botocore's own lookup).
    blob_url: str | None = None
    blob_access_key: str | None = field(default=None, repr=False)
    blob_secret_key: str | None = field(default=None, repr=False)
    blob_redirect: bool = False
    # Metadata on a PostgreSQL server (storage/postgres) instead of SQLite in DATA_DIR.
    database_url: str | None = None
    # ---- announcements: Discord webhooks each approved image is posted to (core/announce.py)
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)  # each URL holds a secret
    # "Log in with Discord" on the gallery (OAuth2, scope identify) when the secret is
    # set; the client id is the application's (asked of Discord with DISCORD_TOKEN).
    discord_client_id: int | None = None
    discord_client_secret: str | None = field(default=None, repr=False)

    @property
    def public_url_is_public(self) -> bool:
        """True when PUBLIC_URL names a host the internet can reach (not loopback/private)."""
        host = urlsplit(self.public_url).hostname or ""
        if host in ("localhost", "") or host.endswith((".local", ".lan", ".internal")):
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return True  # a DNS name other than the above: assume it's published
        return addr.is_global


RATE_LIMIT_STORES = ("auto", "memory", "shared", "redis")


def rate_limit_backend(settings: Settings) -> str:
    """The rate limit store RATE_LIMIT_STORE names; for `auto`: redis when REDIS_URL is
    set, shared memory when this machine runs several processes that serve HTTP (web
    workers, or a web role beside a bot role), else this process's memory (also
    whenever RATE_LIMITS is off)."""
    if not settings.rate_limits:
        return "memory"  # nothing counts: open no file, no connection
    if settings.rate_limit_store != "auto":
        return settings.rate_limit_store
    if settings.redis_url:
        return "redis"
    # web_workers and role come with `serve --workers/--role` (issue 9's processes).
    several = settings.web_workers > 1 or settings.role == "web"
    return "shared" if several else "memory"


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("REDIS_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise SettingsError(
            "REDIS_URL", f"expected a URL like redis://127.0.0.1:6379/0, got {raw!r}"
        )
    return raw


def _rate_limit_store(env: Mapping[str, str], redis_url: str | None) -> str:
    store = env.get("RATE_LIMIT_STORE", "").strip().lower() or "auto"
    if store not in RATE_LIMIT_STORES:
        raise SettingsError(
            "RATE_LIMIT_STORE", f"expected auto, memory, shared or redis, got {store!r}"
        )
    if store == "redis" and not redis_url:
        raise SettingsError("RATE_LIMIT_STORE", "redis needs REDIS_URL")
    return store


def _int(
    env: Mapping[str, str], name: str, default: int, *, low: int = 0, high: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SettingsError(name, f"must be {bound}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, *, low: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if value <= low:
        raise SettingsError(name, f"must be greater than {low}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(name, f"expected on/off (true/false), got {raw!r}")


def _optional_id(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise SettingsError(name, f"expected a Discord ID (digits only), got {raw!r}")
    return int(raw)


def _ids(env: Mapping[str, str], name: str) -> frozenset[int]:
    raw = env.get(name, "").replace(";", ",").replace(" ", ",")
    ids = set()
    for part in filter(None, (p.strip() for p in raw.split(","))):
        if not part.isdigit():
            raise SettingsError(name, f"expected comma-separated Discord IDs, got {part!r}")
        ids.add(int(part))
    return frozenset(ids)


def _size(env: Mapping[str, str], name: str, default: tuple[int, int]) -> tuple[int, int]:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    try:
        w, h = (int(x) for x in raw.split("x"))
    except ValueError:
        raise SettingsError(name, f"expected WIDTHxHEIGHT like 360x420, got {raw!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise SettingsError(name, "each side must be between 16 and 4096")
    return (w, h)


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in filter(None, (p.strip() for p in env.get(name, "").split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise SettingsError(
                name, f"expected comma-separated addresses or CIDRs like 10.0.0.0/8, got {part!r}"
            ) from None
    return tuple(networks)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _blob_url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    example = "s3://bucket?endpoint=http://host:port&region=us-east-1"
    parts = urlsplit(raw)
    if parts.scheme != "s3" or parts.path not in ("", "/"):
        raise SettingsError(name, f"expected a URL like {example}, got {raw!r}")
    if not _BUCKET.fullmatch(parts.netloc):
        raise SettingsError(
            name, f"{parts.netloc!r} is not a bucket name (3-63 of a-z, 0-9, '.', '-')"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown:
        raise SettingsError(name, f"unknown parameter(s) {', '.join(unknown)}: expected {example}")
    endpoint = urlsplit(query.get("endpoint", [""])[-1])
    if query.get("endpoint") and (endpoint.scheme not in ("http", "https") or not endpoint.netloc):
        raise SettingsError(name, f"endpoint must be an http(s) URL like {example}")
    return raw


def _public_url(env: Mapping[str, str], host: str, port: int) -> str:
    raw = env.get("PUBLIC_URL", "").strip()
    if not raw:
        shown = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{port}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            "PUBLIC_URL", f"expected an http(s) URL like https://img.example.org, got {raw!r}"
        )
    return raw.rstrip("/")


def _database_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("DATABASE_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres") or not (parts.netloc or parts.query):
        # Never echo the value: it may carry a password.
        raise SettingsError(
            "DATABASE_URL", "expected a PostgreSQL URL like postgresql://user:pass@host/db"
        )
    return raw


def _webhook_urls(env: Mapping[str, str]) -> tuple[str, ...]:
    urls = []
    for part in filter(None, (p.strip() for p in env.get("WEBHOOK_URLS", "").split(","))):
        parts = urlsplit(part)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            # Never echo the value: a webhook URL carries its secret.
            raise SettingsError(
                "WEBHOOK_URLS",
                "expected comma-separated http(s) URLs like "
                "https://discord.com/api/webhooks/<id>/<token>",
            )
        urls.append(part)
    return tuple(dict.fromkeys(urls))


def _discord_oauth(
    env: Mapping[str, str], discord_token: str | None
) -> tuple[int | None, str | None]:
    """DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET: the id is needed with the secret
    unless DISCORD_TOKEN lets gazou ask Discord for it."""
    client_id = _optional_id(env, "DISCORD_CLIENT_ID")
    secret = env.get("DISCORD_CLIENT_SECRET", "").strip() or None
    if secret is not None and client_id is None and discord_token is None:
        raise SettingsError(
            "DISCORD_CLIENT_ID",
            "needed with DISCORD_CLIENT_SECRET when DISCORD_TOKEN is unset "
            "(the application ID from the Developer Portal's General Information page)",
        )
    if secret is not None and not (secret.isascii() and secret.isprintable() and " " not in secret):
        raise SettingsError("DISCORD_CLIENT_SECRET", "expected the secret as the portal shows it")
    return client_id, secret


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default: os.environ); raise SettingsError on a bad value."""
    env = os.environ if env is None else env
    host = env.get("HOST", "").strip() or "127.0.0.1"
    port = _int(env, "PORT", 8080, low=0, high=65535)
    scopes_raw = env.get("DEFAULT_TOKEN_SCOPES", "").strip()
    scopes = tuple(s for s in (p.strip() for p in scopes_raw.split(",")) if s)
    level = (env.get("LOG_LEVEL", "").strip() or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError("LOG_LEVEL", f"expected DEBUG, INFO, WARNING or ERROR, got {level!r}")
    secret = env.get("SIGNING_SECRET", "").strip()
    if secret and len(secret) < 16:
        raise SettingsError(
            "SIGNING_SECRET", "must be at least 16 characters (or unset to generate one)"
        )
    token = env.get("DISCORD_TOKEN", "").strip() or None
    role = env.get("ROLE", "").strip().lower() or "all"
    if role not in ROLES:
        raise SettingsError("ROLE", f"expected all, web or bot, got {role!r}")
    redis_url = _redis_url(env)
    client_id, client_secret = _discord_oauth(env, token)
    return Settings(
        discord_token=token,
        owner_ids=_ids(env, "OWNER_IDS"),
        dev_guild_id=_optional_id(env, "DEV_GUILD_ID"),
        moderation_channel_id=_optional_id(env, "MODERATION_CHANNEL_ID"),
        webhook_urls=_webhook_urls(env),
        host=host,
        port=port,
        data_dir=Path(env.get("DATA_DIR", "").strip() or "data"),
        public_url=_public_url(env, host, port),
        signing_secret=secret.encode(),
        log_level=level,
        max_request_bytes=_int(env, "MAX_REQUEST_MB", 50, low=1, high=1024) * 1024 * 1024,
        max_image_pixels=_int(env, "MAX_IMAGE_PIXELS", 100_000_000, low=1_000_000),
        thumbnail_size=_size(env, "THUMBNAIL_SIZE", (360, 420)),
        rate_limits=_bool(env, "RATE_LIMITS", True),
        default_token_scopes=scopes or DEFAULT_TOKEN_SCOPES,
        url_fetch_max_bytes=_int(env, "URL_FETCH_MAX_MB", 20, low=1, high=1024) * 1024 * 1024,
        url_fetch_timeout=_float(env, "URL_FETCH_TIMEOUT", 15.0),
        url_fetch_allow_private=_bool(env, "URL_FETCH_ALLOW_PRIVATE", False),
        expiry_sweep_seconds=_float(env, "EXPIRY_SWEEP_SECONDS", 60.0),
        image_workers=_int(env, "IMAGE_WORKERS", DEFAULT_IMAGE_WORKERS, low=1, high=64),
        header_timeout=_float(env, "HEADER_TIMEOUT_SECONDS", 10.0),
        keepalive_timeout=_float(env, "KEEPALIVE_TIMEOUT_SECONDS", 75.0),
        max_idle_connections=_int(env, "MAX_IDLE_CONNECTIONS", 512, low=1),
        trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
        role=role,
        web_workers=_int(env, "WEB_WORKERS", 1, low=1, high=64),
        rate_limit_store=_rate_limit_store(env, redis_url),
        redis_url=redis_url,
        blob_url=_blob_url(env, "BLOB_URL"),
        blob_access_key=env.get("AWS_ACCESS_KEY_ID", "").strip() or None,
        blob_secret_key=env.get("AWS_SECRET_ACCESS_KEY", "").strip() or None,
        blob_redirect=_bool(env, "BLOB_REDIRECT", False),
        database_url=_database_url(env),
        discord_client_id=client_id,
        discord_client_secret=client_secret,
    )


def ensure_signing_secret(settings: Settings) -> Settings:
    """Return settings with a signing secret: the configured one, else one kept
    (generated on first start) in DATA_DIR/signing_secret."""
    if settings.signing_secret:
        return settings
    path = settings.data_dir / "signing_secret"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise SettingsError("SIGNING_SECRET", f"{path} is damaged; delete it to generate a new one")
    return replace(settings, signing_secret=secret.encode())
