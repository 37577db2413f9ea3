"""`python3 -m ecom_backend.migrate`: create or upgrade the schema, then exit 0.

* Idempotent: every statement is IF NOT EXISTS / ON CONFLICT DO NOTHING, and
  applied versions are recorded in schema_migrations.
* Safe when several pods run it at once: the whole run holds a session-level
  pg_advisory_lock (waits for it at most LOCK_TIMEOUT).
* Waits for the database: retries the connection every 2 s for at most
  MIGRATE_TIMEOUT_SECONDS (default 60), then exits 1 with the reason.
Exit codes: 0 done, 1 database unreachable or a migration failed, 2 bad environment.
"""

import logging
import sys
import time
from typing import List, Optional, Sequence, Tuple

import psycopg2

from .config import load_settings_or_exit
from .logs import Redactor, setup_logging

# Arbitrary but fixed: the ASCII of "ecommig" read as an integer.
ADVISORY_LOCK_KEY = 0x65636F6D6D6967
LOCK_TIMEOUT = "120s"
CONNECT_TIMEOUT_SECONDS = 5
RETRY_INTERVAL_SECONDS = 2.0

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS products (
        id          serial PRIMARY KEY,
        name        text NOT NULL UNIQUE,
        description text,
        price       numeric(10,2) NOT NULL CHECK (price >= 0),
        stock       integer NOT NULL CHECK (stock >= 0),
        created_at  timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE IF NOT EXISTS orders (
        id          serial PRIMARY KEY,
        product_id  integer NOT NULL REFERENCES products (id),
        quantity    integer NOT NULL CHECK (quantity > 0),
        total       numeric(10,2) NOT NULL,
        status      text NOT NULL DEFAULT 'created',
        created_at  timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS orders_product_id_idx ON orders (product_id)",
    "CREATE INDEX IF NOT EXISTS orders_created_at_idx ON orders (created_at DESC, id DESC)",
)

SAMPLE_PRODUCTS = (
    ("Laptop", "14-inch laptop, 16 GB RAM, 512 GB SSD", "999.99", 50),
    ("Mouse", "Wireless optical mouse", "29.99", 200),
    ("Keyboard", "Mechanical keyboard, US layout", "79.99", 150),
)

SEED = tuple(
    (
        "INSERT INTO products (name, description, price, stock) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (name) DO NOTHING",
        row,
    )
    for row in SAMPLE_PRODUCTS
)

# (version, name, statements); a statement is SQL or (SQL, parameters).
MIGRATIONS: Sequence[Tuple[int, str, Sequence]] = (
    (1, "create products and orders", SCHEMA),
    (2, "sample products", SEED),
)

log = logging.getLogger("ecom_backend.migrate")


class MigrationError(Exception):
    pass


def connect_with_retry(settings, timeout_seconds: float):
    """Connect, retrying until timeout_seconds have passed (bounded count too)."""
    deadline = time.monotonic() + timeout_seconds
    max_attempts = int(timeout_seconds / RETRY_INTERVAL_SECONDS) + 2
    last_error = "no attempt made"
    for attempt in range(1, max_attempts + 1):
        remaining = deadline - time.monotonic()
        try:
            kwargs = settings.connect_kwargs()
            kwargs["application_name"] = "ecom-backend-migrate"
            kwargs["connect_timeout"] = max(2, min(CONNECT_TIMEOUT_SECONDS, int(remaining) + 1))
            return psycopg2.connect(**kwargs)
        except psycopg2.OperationalError as exc:
            last_error = (str(exc).strip().splitlines() or ["connection failed"])[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        log.warning(
            "database not reachable yet, retrying",
            extra={"attempt": attempt, "error": last_error, "database": settings.database_url_redacted},
        )
        time.sleep(min(RETRY_INTERVAL_SECONDS, remaining))
    raise MigrationError(
        "database %s not reachable after %ds: %s"
        % (settings.database_url_redacted, timeout_seconds, last_error)
    )


def applied_versions(cur) -> List[int]:
    cur.execute("SELECT version FROM schema_migrations ORDER BY version")
    return [row[0] for row in cur.fetchall()]


def migrate(conn) -> List[int]:
    """Apply the missing migrations on an open connection; returns the versions applied."""
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SET lock_timeout = %s", (LOCK_TIMEOUT,))
        cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
    applied_now: List[int] = []
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
            )
            conn.commit()
            done = set(applied_versions(cur))
            conn.commit()
            for version, name, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    if isinstance(statement, tuple):
                        cur.execute(statement[0], statement[1])
                    else:
                        cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)"
                    " ON CONFLICT (version) DO NOTHING",
                    (version, name),
                )
                conn.commit()
                applied_now.append(version)
                log.info("migration applied", extra={"version": version, "migration": name})
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        if not conn.closed:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    return applied_now


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings = load_settings_or_exit()
    setup_logging(settings, access_log=False)
    started = time.monotonic()
    try:
        conn = connect_with_retry(settings, settings.migrate_timeout_seconds)
    except MigrationError as exc:
        log.error("migration failed: %s" % exc)
        sys.stderr.write(Redactor(settings.secrets)("ecom-backend migrate: %s\n" % exc))
        return 1
    try:
        applied = migrate(conn)
    except psycopg2.Error as exc:
        reason = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        log.error("migration failed: %s" % reason)
        sys.stderr.write(Redactor(settings.secrets)("ecom-backend migrate: migration failed: %s\n" % reason))
        return 1
    finally:
        conn.close()
    latest = MIGRATIONS[-1][0]
    log.info(
        "database schema up to date",
        extra={
            "version": latest,
            "applied": applied,
            "seconds": round(time.monotonic() - started, 3),
            "database": settings.database_url_redacted,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
