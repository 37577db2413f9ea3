"""/health, /ready and /metrics."""

import re
import time
import unittest

from support import DatabaseTestCase, SilentServer, closed_port_url


class HealthTest(DatabaseTestCase):
    def test_health_answers_without_a_database(self):
        client = self.client(migrate=False, DATABASE_URL=closed_port_url())
        resp = client.get("/health")
        self.assertEqual(resp.status_code, 200)
        self.assertEqual(resp.json(), {"status": "ok"})
        # The pool is created lazily: nothing has tried the database yet.
        self.assertIsNone(client.app.state.ecom.db._pool)

    def test_health_does_not_touch_a_hung_database(self):
        hung = SilentServer()
        self.addCleanup(hung.close)
        client = self.client(migrate=False,
                             DATABASE_URL="postgresql://u:p@127.0.0.1:%d/db" % hung.port)
        started = time.monotonic()
        self.assertEqual(client.get("/health").status_code, 200)
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertEqual(hung.conns, [])

    def test_paths_come_from_the_environment(self):
        client = self.client(HEALTH_PATH="/livez", READINESS_PATH="/readyz", METRICS_PATH="/prom",
                             API_ROOT_PATH="/shop/v1")
        self.assertEqual(client.get("/livez").json(), {"status": "ok"})
        self.assertEqual(client.get("/readyz").status_code, 200)
        self.assertEqual(client.get("/health").status_code, 404)
        self.assertEqual(len(client.get("/shop/v1/products").json()), 3)
        self.assertEqual(client.get("/api/products").status_code, 404)
        self.assertIn("http_requests_total", client.get("/prom").text)


class ReadyTest(DatabaseTestCase):
    def test_ready_when_the_database_answers(self):
        client = self.client(migrate=False)
        resp = client.get("/ready")
        self.assertEqual(resp.status_code, 200, resp.text)
        self.assertEqual(resp.json()["status"], "ready")

    def test_not_ready_when_the_database_is_unreachable(self):
        password = "closed-port-SECRET-41d2"
        client = self.client(migrate=False, DATABASE_URL=closed_port_url(password))
        started = time.monotonic()
        resp = client.get("/ready")
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertEqual(resp.status_code, 503)
        body = resp.json()
        self.assertEqual(body["status"], "not ready")
        self.assertRegex(body["reason"], r"(?i)connect|refused")
        self.assertNotIn(password, resp.text)
        # and /health still says the process is alive
        self.assertEqual(client.get("/health").status_code, 200)

    def test_not_ready_within_about_two_seconds_when_the_database_hangs(self):
        hung = SilentServer()
        self.addCleanup(hung.close)
        client = self.client(migrate=False,
                             DATABASE_URL="postgresql://u:p@127.0.0.1:%d/db" % hung.port)
        started = time.monotonic()
        resp = client.get("/ready")
        elapsed = time.monotonic() - started
        self.assertEqual(resp.status_code, 503)
        self.assertGreater(elapsed, 1.5)
        self.assertLess(elapsed, 3.5)
        self.assertIn("did not answer", resp.json()["reason"])

    def test_ready_recovers_after_the_database_comes_back(self):
        client = self.client()
        self.assertEqual(client.get("/ready").status_code, 200)
        # Kill the backend connections behind the app's back.
        conn = self.db.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        conn.close()
        self.assertEqual(client.get("/ready").status_code, 200)
        self.assertEqual(client.get("/api/products").status_code, 200)


class MetricsTest(DatabaseTestCase):
    def test_metrics_count_requests_by_method_route_and_status(self):
        client = self.client()
        client.get("/api/products")
        client.get("/api/products")
        client.get("/api/products/424242")
        client.get("/no/such/path")
        resp = client.get("/metrics")
        self.assertEqual(resp.status_code, 200)
        self.assertTrue(resp.headers["content-type"].startswith("text/plain"))
        text = resp.text
        self.assertIn("# TYPE http_requests_total counter", text)
        self.assertIn('http_requests_total{method="GET",route="/api/products",status="200"} 2.0', text)
        self.assertIn('http_requests_total{method="GET",route="/api/products/{product_id}",status="404"} 1.0',
                      text)
        self.assertIn('http_requests_total{method="GET",route="unmatched",status="404"} 1.0', text)
        self.assertRegex(text, r'http_request_duration_seconds_count\{method="GET",route="/api/products"\} 2\.0')
        self.assertRegex(text, r"db_pool_connections_max 10\.0")
        self.assertRegex(text, r"db_pool_connections_idle \d")
        self.assertRegex(text, r"db_pool_connections_in_use 0\.0")
        # the id of the product never becomes a label
        self.assertIsNone(re.search(r'route="/api/products/424242"', text))

    def test_unmigrated_database_is_503_with_a_hint(self):
        client = self.client(migrate=False)
        resp = client.get("/api/products")
        self.assertEqual(resp.status_code, 503)
        self.assertIn("ecom_backend.migrate", resp.json()["detail"])

    def test_metrics_can_be_disabled(self):
        client = self.client(METRICS_ENABLED="false")
        self.assertEqual(client.get("/metrics").status_code, 404)
        self.assertEqual(client.get("/health").status_code, 200)


if __name__ == "__main__":
    unittest.main()
