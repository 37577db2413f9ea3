"""python3 -m ecom_backend.migrate against a real PostgreSQL."""

import socket
import subprocess
import sys
import threading
import time
import unittest
from decimal import Decimal

import psycopg2
import psycopg2.errors

from support import DatabaseTestCase, closed_port_url, free_port, run_module

from ecom_backend import migrate as migrate_mod


def snapshot(db):
    """Everything the migration is responsible for, in comparable form."""
    return {
        "columns": db.query(
            "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale,"
            " is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ),
        "constraints": db.query(
            "SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
            " ORDER BY 1, 2"
        ),
        "indexes": db.query(
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = 'public' ORDER BY 1, 2"
        ),
        "products": db.query(
            "SELECT id, name, description, price, stock, created_at FROM products ORDER BY id"
        ),
        "orders": db.query("SELECT count(*) FROM orders"),
        "migrations": db.query(
            "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
        ),
    }


class MigrateTest(DatabaseTestCase):
    def run_migrate(self, timeout=90, **env):
        return run_module("ecom_backend.migrate", self.subprocess_env(**env), timeout=timeout)

    def test_creates_schema_and_sample_rows(self):
        result = self.run_migrate()
        self.assertEqual(result.returncode, 0, result.stderr)
        tables = [r[0] for r in self.db.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " ORDER BY 1")]
        self.assertEqual(tables, ["orders", "products", "schema_migrations"])
        self.assertEqual(
            self.db.query("SELECT name, price, stock FROM products ORDER BY id"),
            [("Laptop", Decimal("999.99"), 50), ("Mouse", Decimal("29.99"), 200),
             ("Keyboard", Decimal("79.99"), 150)],
        )
        versions = [r[0] for r in self.db.query("SELECT version FROM schema_migrations ORDER BY 1")]
        self.assertEqual(versions, [v for v, _, _ in migrate_mod.MIGRATIONS])
        cols = {(r[0], r[1]): r for r in snapshot(self.db)["columns"]}
        self.assertEqual(cols[("products", "price")][2:5], ("numeric", 10, 2))
        self.assertEqual(cols[("orders", "total")][2:5], ("numeric", 10, 2))
        self.assertEqual(cols[("products", "created_at")][2], "timestamp with time zone")
        self.assertIn("'created'", cols[("orders", "status")][6])
        self.assertIn("nextval", cols[("products", "id")][6])

    def test_constraints_hold(self):
        self.db.migrate()
        bad = [
            ("INSERT INTO products (name, price, stock) VALUES ('Neg', -1, 1)", psycopg2.errors.CheckViolation),
            ("INSERT INTO products (name, price, stock) VALUES ('NegStock', 1, -1)", psycopg2.errors.CheckViolation),
            ("INSERT INTO products (name, price, stock) VALUES ('Laptop', 1, 1)", psycopg2.errors.UniqueViolation),
            ("INSERT INTO products (name, stock) VALUES ('NoPrice', 1)", psycopg2.errors.NotNullViolation),
            ("INSERT INTO products (price, stock) VALUES (1, 1)", psycopg2.errors.NotNullViolation),
            ("INSERT INTO orders (product_id, quantity, total) VALUES (1, 0, 0)", psycopg2.errors.CheckViolation),
            ("INSERT INTO orders (product_id, quantity, total) VALUES (424242, 1, 1)", psycopg2.errors.ForeignKeyViolation),
        ]
        for sql, error in bad:
            with self.subTest(sql=sql):
                with self.assertRaises(error):
                    self.db.execute(sql)
        self.db.execute("INSERT INTO orders (product_id, quantity, total) VALUES (1, 2, 3.5)")
        self.assertEqual(self.db.query("SELECT status FROM orders"), [("created",)])

    def test_twice_gives_the_same_state(self):
        first = self.run_migrate()
        self.assertEqual(first.returncode, 0, first.stderr)
        state = snapshot(self.db)
        second = self.run_migrate()
        self.assertEqual(second.returncode, 0, second.stderr)
        self.assertEqual(snapshot(self.db), state)
        self.assertEqual(len(state["products"]), 3)

    def test_reseeding_does_not_overwrite_changed_rows(self):
        self.db.migrate()
        self.db.execute("UPDATE products SET stock = 7 WHERE name = 'Mouse'")
        self.db.execute("DELETE FROM schema_migrations WHERE version = 2")
        self.db.migrate()  # seed runs again: ON CONFLICT (name) DO NOTHING
        self.assertEqual(self.db.query("SELECT stock FROM products WHERE name = 'Mouse'"), [(7,)])
        self.assertEqual(self.db.query("SELECT count(*) FROM products"), [(3,)])

    def test_concurrent_runs_wait_for_the_lock_and_all_succeed(self):
        # Hold the advisory lock ourselves: five migrations must all block on
        # it (nothing created), then race the moment we let go.
        holder = self.db.connect()
        holder.autocommit = True
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (migrate_mod.ADVISORY_LOCK_KEY,))
        env = self.subprocess_env()
        procs = [
            subprocess.Popen([sys.executable, "-m", "ecom_backend.migrate"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(5)
        ]
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                waiting = self.db.query(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")[0][0]
                if waiting == 5:
                    break
                time.sleep(0.1)
            self.assertEqual(waiting, 5, "the five migrations never all waited on the lock")
            self.assertEqual(self.db.query(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"),
                [(0,)])
            self.assertTrue(all(p.poll() is None for p in procs))
        finally:
            with holder.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (migrate_mod.ADVISORY_LOCK_KEY,))
            holder.close()
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (_, err) in zip(procs, outputs):
            self.assertEqual(proc.returncode, 0, err)
        state = snapshot(self.db)
        self.assertEqual([r[1] for r in state["products"]], ["Laptop", "Mouse", "Keyboard"])
        self.assertEqual([r[0] for r in state["migrations"]], [1, 2])
        # The same state as one more, lone run.
        again = self.run_migrate()
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertEqual(snapshot(self.db), state)

    def test_concurrent_runs_without_coordination(self):
        env = self.subprocess_env()
        procs = [
            subprocess.Popen([sys.executable, "-m", "ecom_backend.migrate"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(5)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            self.assertEqual(proc.returncode, 0, err)
        self.assertEqual(self.db.query("SELECT count(*) FROM products"), [(3,)])
        self.assertEqual(self.db.query("SELECT count(*) FROM schema_migrations"), [(2,)])

    def test_gives_up_after_the_timeout_with_a_clear_message(self):
        password = "closed-port-SECRET-41d2"
        started = time.monotonic()
        result = self.run_migrate(timeout=30, DATABASE_URL=closed_port_url(password),
                                  MIGRATE_TIMEOUT_SECONDS="3", LOG_LEVEL="info")
        elapsed = time.monotonic() - started
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("not reachable after 3s", result.stderr)
        self.assertGreaterEqual(result.stderr.count("retrying"), 1)
        self.assertGreater(elapsed, 2.5)
        self.assertLess(elapsed, 15)
        self.assertNotIn(password, result.stderr + result.stdout)
        self.assertIn("ecom:***@127.0.0.1", result.stderr)

    def test_waits_for_a_database_that_comes_up_late(self):
        # A TCP relay to the real server that starts listening 3 s late.
        port = free_port()
        target = ("127.0.0.1", int(self.db.url.rsplit(":", 1)[1].split("/")[0]))
        relay = _LateRelay(port, target, delay=3.0)
        self.addCleanup(relay.close)
        late_url = self.db.url.replace(":%d/" % target[1], ":%d/" % port)
        started = time.monotonic()
        result = self.run_migrate(timeout=60, DATABASE_URL=late_url, MIGRATE_TIMEOUT_SECONDS="30",
                                  LOG_LEVEL="info")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertGreater(time.monotonic() - started, 2.5)
        self.assertIn("retrying", result.stderr)
        self.assertEqual(self.db.query("SELECT count(*) FROM products"), [(3,)])

    def test_missing_database_url_exits_with_a_message(self):
        env = self.subprocess_env()
        del env["DATABASE_URL"]
        result = run_module("ecom_backend.migrate", env, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("DATABASE_URL is not set", result.stderr)


class _LateRelay:
    def __init__(self, port, target, delay):
        self.port, self.target, self.delay = port, target, delay
        self.stop = threading.Event()
        self.sockets = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self):
        if self.stop.wait(self.delay):
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        listener.settimeout(0.2)
        self.sockets.append(listener)
        while not self.stop.is_set():
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def close(self):
        self.stop.set()
        self.thread.join(5)
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


if __name__ == "__main__":
    unittest.main()
