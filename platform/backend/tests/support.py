"""Shared helpers for the backend tests.

The tests run against a real PostgreSQL: TEST_DATABASE_URL must be an admin
URL (a role allowed to CREATE ROLE / CREATE DATABASE). Every test gets its own
database, owned by its own login role with a random password, created in
setUp and dropped in tearDown. TEST_REDIS_URL (optional) points at a real
redis-server; the cache tests that need it are skipped without it.
"""

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid
from typing import Dict, List, Optional
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

BACKEND_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if BACKEND_DIR not in sys.path:
    sys.path.insert(0, BACKEND_DIR)

from ecom_backend import migrate as migrate_mod  # noqa: E402
from ecom_backend.app import create_app  # noqa: E402
from ecom_backend.config import load_settings  # noqa: E402

# Distinctive secret values: the log tests grep for them.
SECRETS = {
    "JWT_SECRET": "jwt-SECRET-7f3a9c1e",
    "API_KEY": "apikey-SECRET-52be8d07",
    "ENCRYPTION_KEY": "enc-SECRET-0c4d61aa",
    "SESSION_SECRET": "session-SECRET-9e21b7f4",
}


def admin_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        raise RuntimeError(
            "TEST_DATABASE_URL is not set: these tests need a real PostgreSQL admin URL, "
            "e.g. postgresql://postgres:pw@127.0.0.1:55432/postgres (platform/test.sh sets it)"
        )
    return url


def redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", "").strip()


def with_credentials(url: str, user: str, password: str, dbname: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    netloc = "%s:%s@%s" % (quote(user, safe=""), quote(password, safe=""), host)
    if parts.port:
        netloc += ":%d" % parts.port
    return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, ""))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port_url(password: str = "closed-port-SECRET-41d2") -> str:
    """A PostgreSQL URL to a loopback port where nothing listens."""
    return "postgresql://ecom:%s@127.0.0.1:%d/ecom" % (password, free_port())


class SilentServer:
    """A TCP server that accepts connections and never answers (a hung peer)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: List[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


class FreshDatabase:
    """A database + login role of its own, created and dropped through the admin URL."""

    def __init__(self):
        self.admin = admin_url()
        tag = uuid.uuid4().hex[:12]
        self.name = "ecom_t_" + tag
        self.role = "ecom_r_" + tag
        self.password = "dbpw-SECRET-" + uuid.uuid4().hex[:10]
        self.url = with_credentials(self.admin, self.role, self.password, self.name)

    def _admin_conn(self):
        conn = psycopg2.connect(self.admin, connect_timeout=5)
        conn.autocommit = True
        return conn

    def create(self) -> "FreshDatabase":
        conn = self._admin_conn()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE ROLE %s LOGIN PASSWORD %%s" % self.role, (self.password,))
                cur.execute("CREATE DATABASE %s OWNER %s" % (self.name, self.role))
                # PostgreSQL 15: the public schema belongs to pg_database_owner,
                # so the owner role can create tables there.
        finally:
            conn.close()
        return self

    def drop(self) -> None:
        conn = self._admin_conn()
        try:
            with conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.name)
                cur.execute("DROP ROLE IF EXISTS %s" % self.role)
        finally:
            conn.close()

    def connect(self):
        return psycopg2.connect(self.url, connect_timeout=5)

    def query(self, sql: str, params=None):
        conn = self.connect()
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def execute(self, sql: str, params=None) -> None:
        self.query(sql, params)

    def migrate(self) -> None:
        conn = self.connect()
        try:
            migrate_mod.migrate(conn)
        finally:
            conn.close()


class DatabaseTestCase(unittest.TestCase):
    """Gives each test self.db (a FreshDatabase) and a temp dir self.tmp."""

    def setUp(self):
        self.db = FreshDatabase().create()
        self.addCleanup(self.db.drop)
        self._tmp = tempfile.TemporaryDirectory(prefix="ecom-test-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name

    def env(self, **overrides) -> Dict[str, str]:
        env = {
            "DATABASE_URL": self.db.url,
            "DATABASE_SSLMODE": "disable",
            "LOG_LEVEL": "error",
            "LOG_FORMAT": "json",
            "LOG_FILE": os.path.join(self.tmp, "access.log"),
            "CACHE_TTL": "300",
            "APP_ENV": "test",
            "POD_NAME": "backend-test-0",
            "POD_NAMESPACE": "ecommerce",
            "CLUSTER_NAME": "test",
        }
        env.update(SECRETS)
        env.update({k: str(v) for k, v in overrides.items()})
        return {k: v for k, v in env.items() if v is not None}

    def client(self, migrate: bool = True, **overrides):
        """A started TestClient (closed at cleanup) on an app built from env(**overrides)."""
        from starlette.testclient import TestClient

        if migrate:
            self.db.migrate()
        app = create_app(load_settings(self.env(**overrides)))
        client = TestClient(app)
        client.__enter__()
        self.addCleanup(client.__exit__, None, None, None)
        return client

    def subprocess_env(self, **overrides) -> Dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONPATH": BACKEND_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(self.env(**overrides))
        return env


@contextlib.contextmanager
def captured_stderr():
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):
        yield buf


def run_module(module: str, env: Dict[str, str], timeout: float = 90, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 (keep polling, report the last)
            last = exc
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last error: %r)" % (timeout, what, last))
