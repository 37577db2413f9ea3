"""End to end: the real command lines, real uvicorn workers, real HTTP.

When the tests run as root, the servers run as uid/gid 10001 (as in the
image) with only a temp dir writable for them.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import unittest
import urllib.error
import urllib.request

from support import (SECRETS, DatabaseTestCase, closed_port_url, free_port, redis_url,
                     wait_until)

APP_UID = 10001
IS_ROOT = os.geteuid() == 0


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class ServerTestCase(DatabaseTestCase):
    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)
        self.run_dir = os.path.join(self.tmp, "run")  # TMPDIR of the server
        self.log_dir = os.path.join(self.tmp, "log")
        for path in (self.run_dir, self.log_dir):
            os.mkdir(path, 0o755)
            if IS_ROOT:
                os.chown(path, APP_UID, APP_UID)
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port

    def start(self, argv, **env):
        environ = self.subprocess_env(API_HOST="127.0.0.1", API_PORT=str(self.port),
                                      LOG_FILE=os.path.join(self.log_dir, "access.log"),
                                      TMPDIR=self.run_dir, HOME=self.run_dir, **env)
        kwargs = {}
        if IS_ROOT:
            kwargs = {"user": APP_UID, "group": APP_UID, "extra_groups": []}
        self.stderr_path = os.path.join(self.tmp, "server.stderr")
        err = open(self.stderr_path, "w")
        self.addCleanup(err.close)
        proc = subprocess.Popen([sys.executable] + argv, env=environ, stdout=err, stderr=err,
                                cwd="/", start_new_session=True, **kwargs)
        self.addCleanup(self._stop, proc)
        return proc

    def _stop(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def wait_healthy(self, proc, timeout=40):
        def up():
            if proc.poll() is not None:
                raise AssertionError("server exited with %s:\n%s" % (proc.returncode, self.stderr()))
            return http("GET", self.base + "/health", timeout=2)[0] == 200
        wait_until(up, timeout, interval=0.2, what="/health of the server")

    def stop(self, proc, timeout=25):
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail("server did not stop within %ss of SIGTERM:\n%s" % (timeout, self.stderr()))

    def stderr(self):
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()


class ServerTest(ServerTestCase):
    def test_workers_serve_orders_metrics_and_logs(self):
        self.db.migrate()
        env = {"API_WORKERS": "2", "LOG_LEVEL": "info", "DATABASE_POOL_SIZE": "2",
               "DATABASE_MAX_OVERFLOW": "2", "REDIS_URL": redis_url()}
        proc = self.start(["-m", "ecom_backend"], **env)
        self.wait_healthy(proc)
        self.assertEqual(http("GET", self.base + "/ready")[0], 200)

        # 12 concurrent clients order 5 laptops each: exactly 10 succeed.
        laptop = self.db.query("SELECT id FROM products WHERE name = 'Laptop'")[0][0]
        results = []

        def order():
            results.append(http("POST", self.base + "/api/orders",
                                {"product_id": laptop, "quantity": 5}, timeout=30)[0])

        threads = [threading.Thread(target=order) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(results), [201] * 10 + [409] * 2)
        self.assertEqual(self.db.query("SELECT stock FROM products WHERE id = %s", (laptop,)), [(0,)])
        self.assertEqual(self.db.query("SELECT count(*), sum(quantity) FROM orders"), [(10, 50)])

        for _ in range(10):
            status, body = http("GET", self.base + "/api/products")
            self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)[0]["stock"], 0)

        # Metrics are merged across the two workers.
        multiproc = [d for d in os.listdir(self.run_dir) if d.startswith("ecom-backend-metrics-")]
        self.assertEqual(len(multiproc), 1)
        status, text = http("GET", self.base + "/metrics")
        self.assertEqual(status, 200)
        self.assertIn('http_requests_total{method="GET",route="/api/products",status="200"} 10.0', text)
        self.assertIn('http_requests_total{method="POST",route="/api/orders",status="201"} 10.0', text)
        self.assertIn('http_requests_total{method="POST",route="/api/orders",status="409"} 2.0', text)
        self.assertIn("db_pool_connections_in_use", text)

        self.assertEqual(self.stop(proc), 0)
        self.assertEqual(os.listdir(self.run_dir), [], "the metrics dir was not removed")

        access_log = os.path.join(self.log_dir, "access.log")
        if IS_ROOT:
            self.assertEqual(os.stat(access_log).st_uid, APP_UID)
        with open(access_log, encoding="utf-8") as f:
            lines = [json.loads(l) for l in f]
        orders = [l for l in lines if l["path"] == "/api/orders"]
        self.assertEqual(sorted(l["status"] for l in orders), [201] * 10 + [409] * 2)
        stderr = self.stderr()
        for line in stderr.splitlines():
            json.loads(line)  # every stderr line is JSON
        self.assertIn("Application startup complete", stderr)
        text = stderr + json.dumps(lines)
        for secret in list(SECRETS.values()) + [self.db.password]:
            self.assertNotIn(secret, text)

    def test_uvicorn_command_line(self):
        self.db.migrate()
        proc = self.start(["-m", "uvicorn", "ecom_backend.app:app", "--host", "127.0.0.1",
                           "--port", str(self.port), "--workers", "1"])
        self.wait_healthy(proc)
        status, body = http("GET", self.base + "/api/products")
        self.assertEqual(status, 200)
        self.assertEqual(len(json.loads(body)), 3)
        self.assertEqual(self.stop(proc), 0)

    def test_starts_and_is_alive_while_the_database_is_down(self):
        proc = self.start(["-m", "ecom_backend"], DATABASE_URL=closed_port_url(), LOG_LEVEL="info")
        self.wait_healthy(proc)
        status, body = http("GET", self.base + "/ready")
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["status"], "not ready")
        self.assertEqual(http("GET", self.base + "/health")[0], 200)
        self.assertEqual(self.stop(proc), 0)

    def test_missing_database_url_exits_with_a_message(self):
        for argv in (["-m", "ecom_backend"],
                     ["-m", "uvicorn", "ecom_backend.app:app", "--port", str(self.port)]):
            with self.subTest(argv=argv):
                proc = self.start(argv, DATABASE_URL="")
                try:
                    code = proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.fail("did not exit:\n" + self.stderr())
                self.assertNotEqual(code, 0)
                self.assertIn("DATABASE_URL is not set", self.stderr())

    def test_bad_setting_exits_with_a_message(self):
        proc = self.start(["-m", "ecom_backend"], DATABASE_POOL_SIZE="five")
        self.assertEqual(proc.wait(30), 2)
        self.assertIn("DATABASE_POOL_SIZE must be an integer", self.stderr())


if __name__ == "__main__":
    unittest.main()
