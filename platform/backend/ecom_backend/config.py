"""Settings read from the environment (ConfigMap + Secrets).

Everything the reference backend needs comes from environment variables; see
platform/README.md for the contract table. Only DATABASE_URL is required.
"""

import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit


class ConfigError(Exception):
    """Raised when the environment does not describe a usable configuration."""


SECRET_ENV = (
    "JWT_SECRET",
    "API_KEY",
    "ENCRYPTION_KEY",
    "SESSION_SECRET",
    # the manifests compose DATABASE_URL / REDIS_URL from these
    "DATABASE_PASSWORD",
    "CACHE_PASSWORD",
    "REDIS_PASSWORD",
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _get(env: Dict[str, str], name: str, default: str) -> str:
    value = env.get(name)
    if value is None:
        return default
    return value.strip()


def _int(env: Dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _get(env, name, str(default))
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError("%s must be an integer, got %r" % (name, raw)) from None
    if value < minimum:
        raise ConfigError("%s must be >= %d, got %d" % (name, minimum, value))
    return value


def _bool(env: Dict[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name, "true" if default else "false").lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError("%s must be true or false, got %r" % (name, raw))


def _path(env: Dict[str, str], name: str, default: str) -> str:
    value = _get(env, name, default) or default
    if not value.startswith("/"):
        value = "/" + value
    if len(value) > 1:
        value = value.rstrip("/")
    return value


def redact_url(url: str) -> str:
    """Return url with any password replaced by '***' (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = "%s:%d" % (netloc, parts.port)
    if parts.username:
        netloc = "%s:***@%s" % (parts.username, netloc)
    else:
        netloc = ":***@" + netloc
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_password(url: str) -> Optional[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


@dataclass(frozen=True)
class Settings:
    database_url: str
    database_pool_size: int = 5
    database_max_overflow: int = 5
    database_pool_timeout: int = 30
    database_sslmode: str = "disable"
    database_pool_recycle: int = 1800
    api_timeout: int = 30
    api_host: str = "0.0.0.0"
    api_port: int = 8000
    api_workers: int = 1
    api_root_path: str = "/api"
    redis_url: str = ""
    cache_ttl: int = 300
    log_level: str = "info"
    log_format: str = "json"
    log_file: str = "/var/log/backend/access.log"
    log_file_max_bytes: int = 10 * 1024 * 1024
    log_file_backup_count: int = 5
    health_path: str = "/health"
    readiness_path: str = "/ready"
    metrics_enabled: bool = True
    metrics_path: str = "/metrics"
    app_env: str = "production"
    cluster_name: str = ""
    pod_name: str = ""
    pod_namespace: str = ""
    rate_limit_enabled: bool = False
    rate_limit_requests: int = 100
    rate_limit_window_seconds: int = 60
    migrate_timeout_seconds: int = 60
    secrets: Tuple[str, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:  # never print secrets by accident
        return "Settings(database_url=%r, redis_url=%r, app_env=%r)" % (
            redact_url(self.database_url),
            redact_url(self.redis_url),
            self.app_env,
        )

    @property
    def database_url_redacted(self) -> str:
        return redact_url(self.database_url)

    @property
    def redis_url_redacted(self) -> str:
        return redact_url(self.redis_url)

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/") or "postgres"

    @property
    def pool_max(self) -> int:
        return max(1, self.database_pool_size + self.database_max_overflow)

    def connect_kwargs(self) -> Dict[str, str]:
        kwargs = {"dsn": self.database_url, "application_name": "ecom-backend"}
        if self.database_sslmode:
            kwargs["sslmode"] = self.database_sslmode
        return kwargs


def load_settings(env: Optional[Dict[str, str]] = None) -> Settings:
    env = dict(os.environ if env is None else env)
    database_url = _get(env, "DATABASE_URL", "")
    if not database_url:
        raise ConfigError(
            "DATABASE_URL is not set; expected postgresql://user:password@host:port/dbname"
        )
    scheme = urlsplit(database_url).scheme
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            "DATABASE_URL must start with postgresql:// (got scheme %r)" % scheme
        )
    log_format = _get(env, "LOG_FORMAT", "json").lower() or "json"
    if log_format not in ("json", "text"):
        raise ConfigError("LOG_FORMAT must be json or text, got %r" % log_format)
    log_level = _get(env, "LOG_LEVEL", "info").lower() or "info"
    if log_level not in ("debug", "info", "warning", "error", "critical"):
        raise ConfigError("LOG_LEVEL must be debug, info, warning, error or critical")

    secrets: List[str] = []
    for name in SECRET_ENV:
        value = env.get(name)
        if value:
            secrets.append(value)
    for url in (database_url, _get(env, "REDIS_URL", "")):
        password = url_password(url) if url else None
        if password:
            secrets.append(password)
            raw = urlsplit(url).password
            if raw and raw != password:
                secrets.append(raw)

    return Settings(
        database_url=database_url,
        database_pool_size=_int(env, "DATABASE_POOL_SIZE", 5, 1),
        database_max_overflow=_int(env, "DATABASE_MAX_OVERFLOW", 5, 0),
        database_pool_timeout=_int(env, "DATABASE_POOL_TIMEOUT", 30, 1),
        database_sslmode=_get(env, "DATABASE_SSLMODE", "disable"),
        database_pool_recycle=_int(env, "DATABASE_POOL_RECYCLE", 1800, 0),
        api_timeout=_int(env, "API_TIMEOUT", 30, 0),
        api_host=_get(env, "API_HOST", "0.0.0.0") or "0.0.0.0",
        api_port=_int(env, "API_PORT", 8000, 1),
        api_workers=_int(env, "API_WORKERS", 1, 1),
        api_root_path=_path(env, "API_ROOT_PATH", "/api"),
        redis_url=_get(env, "REDIS_URL", ""),
        cache_ttl=_int(env, "CACHE_TTL", 300, 0),
        log_level=log_level,
        log_format=log_format,
        log_file=_get(env, "LOG_FILE", "/var/log/backend/access.log"),
        log_file_max_bytes=_int(env, "LOG_FILE_MAX_BYTES", 10 * 1024 * 1024, 0),
        log_file_backup_count=_int(env, "LOG_FILE_BACKUP_COUNT", 5, 0),
        health_path=_path(env, "HEALTH_PATH", "/health"),
        readiness_path=_path(env, "READINESS_PATH", "/ready"),
        metrics_enabled=_bool(env, "METRICS_ENABLED", True),
        metrics_path=_path(env, "METRICS_PATH", "/metrics"),
        app_env=_get(env, "APP_ENV", "production"),
        cluster_name=_get(env, "CLUSTER_NAME", ""),
        pod_name=_get(env, "POD_NAME", ""),
        pod_namespace=_get(env, "POD_NAMESPACE", ""),
        rate_limit_enabled=_bool(env, "RATE_LIMIT_ENABLED", False),
        rate_limit_requests=_int(env, "RATE_LIMIT_REQUESTS", 100, 1),
        rate_limit_window_seconds=_int(env, "RATE_LIMIT_WINDOW_SECONDS", 60, 1),
        migrate_timeout_seconds=_int(env, "MIGRATE_TIMEOUT_SECONDS", 60, 1),
        secrets=tuple(sorted(set(secrets), key=len, reverse=True)),
    )


def load_settings_or_exit(env: Optional[Dict[str, str]] = None) -> Settings:
    """load_settings, but print a clear message and exit 2 on a bad environment."""
    try:
        return load_settings(env)
    except ConfigError as exc:
        sys.stderr.write("ecom-backend: configuration error: %s\n" % exc)
        sys.stderr.flush()
        raise SystemExit(2)
