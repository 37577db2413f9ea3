"""The lazy connection pool against a real PostgreSQL."""

import contextlib
import time
import unittest

from support import DatabaseTestCase, closed_port_url

from ecom_backend.config import load_settings
from ecom_backend.db import Database, DatabaseUnavailable


class PoolTest(DatabaseTestCase):
    def database(self, **env):
        db = Database(load_settings(self.env(**env)))
        self.addCleanup(db.close)
        return db

    @staticmethod
    def backend_pid(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    def test_created_lazily(self):
        db = self.database(DATABASE_URL=closed_port_url())
        self.assertIsNone(db._pool)
        with self.assertRaises(DatabaseUnavailable):
            with db.connection():
                pass
        self.assertIsNone(db._pool)

    def test_keeps_pool_size_idle_and_closes_the_overflow(self):
        db = self.database(DATABASE_POOL_SIZE="2", DATABASE_MAX_OVERFLOW="2")
        self.assertEqual(db.maxconn, 4)
        with contextlib.ExitStack() as stack:
            conns = [stack.enter_context(db.connection()) for _ in range(4)]
            self.assertEqual(len({self.backend_pid(c) for c in conns}), 4)
            with self.assertRaises(DatabaseUnavailable):  # a fifth waits, then gives up
                with db.connection(timeout=0.3):
                    pass
        self.assertEqual(len(db._pool._pool), 2)
        self.assertEqual(self.db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'ecom-backend'"), [(2,)])

    def test_waits_pool_timeout_for_a_free_connection(self):
        db = self.database(DATABASE_POOL_SIZE="1", DATABASE_MAX_OVERFLOW="0", DATABASE_POOL_TIMEOUT="1")
        with db.connection():
            started = time.monotonic()
            with self.assertRaises(DatabaseUnavailable) as ctx:
                with db.connection():
                    pass
            self.assertGreater(time.monotonic() - started, 0.9)
            self.assertIn("no database connection free within 1s", str(ctx.exception))
        with db.connection() as conn:  # the slot came back
            self.assertIsNotNone(self.backend_pid(conn))

    def test_connections_are_recycled(self):
        db = self.database(DATABASE_POOL_RECYCLE="1")
        with db.connection() as conn:
            first = self.backend_pid(conn)
        with db.connection() as conn:
            self.assertEqual(self.backend_pid(conn), first)
        time.sleep(1.2)
        with db.connection() as conn:  # too old: closed when given back
            pass
        with db.connection() as conn:
            self.assertNotEqual(self.backend_pid(conn), first)

    def test_statement_timeout_is_api_timeout(self):
        db = self.database(API_TIMEOUT="1")
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            self.assertEqual(cur.fetchone()[0], "1s")
        import psycopg2.errors

        with self.assertRaises(psycopg2.errors.QueryCanceled):
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT pg_sleep(3)")
        with db.connection() as conn:  # the connection is still usable
            self.assertIsNotNone(self.backend_pid(conn))

    def test_error_rolls_back(self):
        self.db.migrate()
        db = self.database()
        with self.assertRaises(RuntimeError):
            with db.connection() as conn, conn.cursor() as cur:
                cur.execute("UPDATE products SET stock = 0")
                raise RuntimeError("boom")
        self.assertEqual(self.db.query("SELECT min(stock) FROM products"), [(50,)])

    def test_dead_connections_are_replaced(self):
        db = self.database()
        with db.connection() as conn:
            pid = self.backend_pid(conn)
        self.db.query("SELECT pg_terminate_backend(%s)", (pid,))
        time.sleep(0.2)
        with self.assertRaises(Exception):
            with db.connection() as conn:
                self.backend_pid(conn)
        with db.connection() as conn:
            self.assertNotEqual(self.backend_pid(conn), pid)


if __name__ == "__main__":
    unittest.main()
