"""Logging: the application's log on stderr and the JSON access log in LOG_FILE.

* Application log (logger "ecom_backend" and everything that propagates to the
  root logger, uvicorn's included): stderr, one JSON object per line when
  LOG_FORMAT=json, plain text otherwise.
* Access log (logger "ecom_backend.access"): one JSON object per request in
  LOG_FILE, rotated by RotatingFileHandler (LOG_FILE_MAX_BYTES,
  LOG_FILE_BACKUP_COUNT). When LOG_FILE cannot be opened (directory missing or
  not writable) the access log goes to stderr and one warning says so.

Every formatted line passes through a redactor that replaces the values of
the secrets (JWT_SECRET, API_KEY, ENCRYPTION_KEY, SESSION_SECRET and the
passwords inside DATABASE_URL/REDIS_URL) by "***".
"""

import json
import logging
import logging.handlers
import os
import sys
from datetime import datetime, timezone
from typing import Iterable, Optional

ACCESS_LOGGER = "ecom_backend.access"
APP_LOGGER = "ecom_backend"

_STANDARD_ATTRS = set(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "color_message"}

_MIN_SECRET_LEN = 4


def iso_timestamp(created: float) -> str:
    """ISO-8601, millisecond precision, explicit zone: 2024-05-01T12:00:00.123+00:00."""
    return datetime.fromtimestamp(created, tz=timezone.utc).isoformat(timespec="milliseconds")


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted(
            {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True
        )

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp, level, logger, message + extras."""

    def __init__(self, redactor: Optional[Redactor] = None, static: Optional[dict] = None):
        super().__init__()
        self.redactor = redactor or Redactor()
        self.static = {k: v for k, v in (static or {}).items() if v}

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "timestamp": iso_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(self.static)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return self.redactor(json.dumps(payload, default=str, ensure_ascii=False))


class AccessFormatter(logging.Formatter):
    """Access lines: the record's 'access' dict, timestamp first."""

    def __init__(self, redactor: Optional[Redactor] = None):
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        payload = {"timestamp": iso_timestamp(record.created)}
        payload.update(getattr(record, "access", {}) or {"message": record.getMessage()})
        return self.redactor(json.dumps(payload, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Optional[Redactor] = None):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redactor = redactor or Redactor()

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging API)
        return iso_timestamp(record.created)

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor(super().format(record))


def _open_access_handler(path: str, max_bytes: int, backup_count: int):
    """RotatingFileHandler on path, or (None, reason) when it cannot be opened."""
    if not path:
        return None, "LOG_FILE is empty"
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        return None, "directory %s does not exist" % directory
    if not os.access(directory, os.W_OK | os.X_OK) and not (
        os.path.exists(path) and os.access(path, os.W_OK)
    ):
        return None, "directory %s is not writable" % directory
    try:
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backup_count, encoding="utf-8"
        )
    except OSError as exc:
        return None, "%s: %s" % (path, exc.strerror or exc)
    return handler, None


def setup_logging(settings, access_log: bool = True) -> logging.Logger:
    """Configure the root, application and (when access_log) access loggers. Idempotent."""
    redactor = Redactor(settings.secrets)
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    static = {
        "app_env": settings.app_env,
        "pod": settings.pod_name,
        "namespace": settings.pod_namespace,
        "cluster": settings.cluster_name,
    }
    if settings.log_format == "json":
        app_formatter: logging.Formatter = JsonFormatter(redactor, static)
    else:
        app_formatter = TextFormatter(redactor)

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ecom", False):
            root.removeHandler(handler)
            handler.close()
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler._ecom = True  # type: ignore[attr-defined]
    stderr_handler.setFormatter(app_formatter)
    root.addHandler(stderr_handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True
    # Our own access log replaces uvicorn's.
    logging.getLogger("uvicorn.access").disabled = True

    app_logger = logging.getLogger(APP_LOGGER)
    app_logger.setLevel(level)

    if not access_log:
        return app_logger
    access = logging.getLogger(ACCESS_LOGGER)
    for handler in list(access.handlers):
        access.removeHandler(handler)
        handler.close()
    access.propagate = False
    access.setLevel(logging.INFO)
    handler, reason = _open_access_handler(
        settings.log_file, settings.log_file_max_bytes, settings.log_file_backup_count
    )
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        app_logger.warning(
            "access log file unavailable, writing the access log to stderr only",
            extra={"log_file": settings.log_file, "reason": reason},
        )
    handler.setFormatter(AccessFormatter(redactor))
    access.addHandler(handler)
    return app_logger
