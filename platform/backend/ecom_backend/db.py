"""PostgreSQL access: a lazily created psycopg2 ThreadedConnectionPool.

The pool (min 1, max DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW connections)
is created on first use, so the process starts and /health answers while the
database is down. Borrowing waits at most DATABASE_POOL_TIMEOUT seconds for a
free connection (psycopg2's pool itself fails at once when exhausted).
Up to DATABASE_POOL_SIZE connections stay open when idle; the overflow ones
are closed when given back, and so are connections older than
DATABASE_POOL_RECYCLE seconds and connections found broken. Every statement
runs with statement_timeout = API_TIMEOUT seconds.
"""

import contextlib
import logging
import threading
import time
from typing import Callable, Iterator, Optional

import psycopg2
import psycopg2.extensions
import psycopg2.pool

log = logging.getLogger("ecom_backend.db")

CONNECT_TIMEOUT_SECONDS = 3


class DatabaseUnavailable(Exception):
    """The database cannot be reached, or no pooled connection became free in time."""


class Database:
    def __init__(self, settings, on_stats: Optional[Callable[[int, int, int], None]] = None):
        self.settings = settings
        self.maxconn = settings.pool_max
        self._pool: Optional[psycopg2.pool.ThreadedConnectionPool] = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.maxconn)
        self._in_use = 0
        self._on_stats = on_stats
        self._born: dict = {}  # id(connection) -> time.monotonic() of its creation

    # -- pool management -------------------------------------------------
    def _connect_kwargs(self, connect_timeout: int) -> dict:
        kwargs = self.settings.connect_kwargs()
        kwargs["connect_timeout"] = connect_timeout
        if self.settings.api_timeout > 0:
            # No query outlives the request it serves (API_TIMEOUT seconds).
            kwargs["options"] = "-c statement_timeout=%d" % (self.settings.api_timeout * 1000)
        return kwargs

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                try:
                    pool = psycopg2.pool.ThreadedConnectionPool(
                        1, self.maxconn, **self._connect_kwargs(CONNECT_TIMEOUT_SECONDS)
                    )
                except psycopg2.Error as exc:
                    raise DatabaseUnavailable(_describe(exc)) from None
                # Opened with one connection; psycopg2 keeps at most `minconn`
                # idle connections on return, so raise it to POOL_SIZE: up to
                # POOL_SIZE stay open, the MAX_OVERFLOW extra ones are closed
                # when given back (SQLAlchemy's pool_size/max_overflow meaning).
                pool.minconn = max(1, self.settings.database_pool_size)
                self._pool = pool
                log.info(
                    "database pool created",
                    extra={"database": self.settings.database_url_redacted, "max_connections": self.maxconn},
                )
            return self._pool

    def _report(self) -> None:
        if self._on_stats is None:
            return
        pool = self._pool
        idle = len(pool._pool) if pool is not None else 0  # noqa: SLF001 (psycopg2 has no public API)
        try:
            self._on_stats(self._in_use, idle, self.maxconn)
        except Exception:  # metrics must never break requests
            log.debug("pool stats callback failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None
        self._report()

    @contextlib.contextmanager
    def connection(self, timeout: Optional[float] = None) -> Iterator[psycopg2.extensions.connection]:
        """Borrow a connection; commit on success, roll back on error."""
        wait = self.settings.database_pool_timeout if timeout is None else timeout
        if not self._slots.acquire(timeout=wait):
            raise DatabaseUnavailable("no database connection free within %ss" % wait)
        conn = None
        pool = None
        broken = False
        try:
            pool = self._get_pool()
            try:
                conn = pool.getconn()
            except psycopg2.Error as exc:
                raise DatabaseUnavailable(_describe(exc)) from None
            if conn.closed:
                pool.putconn(conn, close=True)
                try:
                    conn = pool.getconn()
                except psycopg2.Error as exc:
                    conn = None
                    raise DatabaseUnavailable(_describe(exc)) from None
            with self._lock:
                self._in_use += 1
                self._born.setdefault(id(conn), time.monotonic())
            self._report()
            try:
                yield conn
                if not conn.closed:
                    conn.commit()
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                broken = True
                raise
            except BaseException:
                if not conn.closed:
                    try:
                        conn.rollback()
                    except psycopg2.Error:
                        broken = True
                raise
        finally:
            if conn is not None and pool is not None:
                with self._lock:
                    self._in_use -= 1
                try:
                    if not broken and not conn.closed and (
                        conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE
                    ):
                        conn.rollback()
                except psycopg2.Error:
                    broken = True
                recycle = self.settings.database_pool_recycle
                with self._lock:
                    born = self._born.get(id(conn), time.monotonic())
                    too_old = recycle > 0 and time.monotonic() - born > recycle
                try:
                    pool.putconn(conn, close=broken or too_old or bool(conn.closed))
                except psycopg2.pool.PoolError:
                    pass
                if conn.closed:  # closed by us, or by the pool (overflow)
                    with self._lock:
                        self._born.pop(id(conn), None)
                if broken:
                    self._drop_pool_if_dead()
            self._slots.release()
            self._report()

    def _drop_pool_if_dead(self) -> None:
        """After a connection error, drop idle connections: they are likely dead too."""
        pool = self._pool
        if pool is None:
            return
        with self._lock:
            try:
                idle = list(pool._pool)  # noqa: SLF001
                pool._pool[:] = []  # noqa: SLF001
            except Exception:
                return
        for conn in idle:
            with self._lock:
                self._born.pop(id(conn), None)
            try:
                conn.close()
            except Exception:
                pass

    def ping(self, timeout: float = 2.0) -> None:
        """SELECT 1 with a bounded wait; raises DatabaseUnavailable with the reason.

        A pooled connection that died while idle (database restarted) fails on
        first use; the pool then drops its idle connections and one more
        attempt on a fresh connection decides.
        """
        for attempt in (1, 2):
            try:
                with self.connection(timeout=timeout) as conn:
                    with conn.cursor() as cur:
                        cur.execute("SET LOCAL statement_timeout = %s", (int(timeout * 1000),))
                        cur.execute("SELECT 1")
                        cur.fetchone()
                return
            except DatabaseUnavailable:
                raise
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                if attempt == 2:
                    raise DatabaseUnavailable(_describe(exc)) from None
            except psycopg2.Error as exc:
                raise DatabaseUnavailable(_describe(exc)) from None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
