"""Access log (JSON lines, rotation, stderr fallback) and the application log."""

import glob
import json
import logging
import os
import unittest

from support import SECRETS, DatabaseTestCase, captured_stderr, closed_port_url, free_port

ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$"


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_json_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class AccessLogTest(DatabaseTestCase):
    def test_one_json_line_per_request(self):
        log_file = os.path.join(self.tmp, "access.log")
        client = self.client(LOG_FILE=log_file)
        client.get("/api/products")
        client.post("/api/orders", json={"product_id": 1, "quantity": 0})
        client.get("/health?token=abc")
        logging.getLogger("ecom_backend.access").handlers[0].flush()
        lines = read_json_lines(log_file)
        self.assertEqual(len(lines), 3)
        for line in lines:
            for key in ("timestamp", "method", "path", "status", "duration_ms", "client"):
                self.assertIn(key, line)
            self.assertRegex(line["timestamp"], ISO_MS)
            self.assertIsInstance(line["duration_ms"], (int, float))
            self.assertGreaterEqual(line["duration_ms"], 0)
        self.assertEqual([(l["method"], l["path"], l["status"]) for l in lines],
                         [("GET", "/api/products", 200), ("POST", "/api/orders", 422),
                          ("GET", "/health", 200)])
        self.assertEqual(lines[0]["client"], "testclient")
        client.get("/health", headers={"X-Real-IP": "192.0.2.10"})
        logging.getLogger("ecom_backend.access").handlers[0].flush()
        last = read_json_lines(log_file)[-1]
        self.assertEqual((last["client"], last["peer"]), ("192.0.2.10", "testclient"))
        self.assertNotIn("token=abc", read_text(log_file))  # no query strings

    def test_rotation(self):
        log_file = os.path.join(self.tmp, "access.log")
        client = self.client(LOG_FILE=log_file, LOG_FILE_MAX_BYTES="600", LOG_FILE_BACKUP_COUNT="2")
        for _ in range(40):
            client.get("/health")
        files = sorted(os.path.basename(p) for p in glob.glob(log_file + "*"))
        self.assertEqual(files, ["access.log", "access.log.1", "access.log.2"])
        for path in glob.glob(log_file + "*"):
            self.assertLessEqual(os.path.getsize(path), 600)
            for line in read_json_lines(path):
                self.assertEqual(line["path"], "/health")

    def test_unwritable_directory_falls_back_to_stderr_and_says_so_once(self):
        not_a_dir = os.path.join(self.tmp, "plain-file")
        open(not_a_dir, "w").close()
        log_file = os.path.join(not_a_dir, "access.log")
        with captured_stderr() as err:
            client = self.client(LOG_FILE=log_file, LOG_LEVEL="info")
            for _ in range(3):
                self.assertEqual(client.get("/health").status_code, 200)
        lines = [json.loads(l) for l in err.getvalue().splitlines() if l.strip()]
        warnings = [l for l in lines if "access log file unavailable" in l.get("message", "")]
        self.assertEqual(len(warnings), 1, lines)
        self.assertEqual(warnings[0]["log_file"], log_file)
        self.assertEqual(warnings[0]["level"], "warning")
        access = [l for l in lines if l.get("path") == "/health" and "status" in l]
        self.assertEqual(len(access), 3)
        self.assertFalse(os.path.exists(log_file))


class AppLogTest(DatabaseTestCase):
    def test_json_on_stderr(self):
        with captured_stderr() as err:
            client = self.client(LOG_LEVEL="info", LOG_FORMAT="json")
            client.post("/api/orders", json={"product_id": 1, "quantity": 1})
        records = [json.loads(l) for l in err.getvalue().splitlines() if l.strip()]
        messages = [r["message"] for r in records]
        self.assertIn("ecom backend configured", messages)
        self.assertIn("order created", messages)
        for r in records:
            self.assertRegex(r["timestamp"], ISO_MS)
            self.assertIn(r["level"], ("debug", "info", "warning", "error", "critical"))
        configured = records[messages.index("ecom backend configured")]
        self.assertEqual(configured["pod"], "backend-test-0")
        self.assertEqual(configured["namespace"], "ecommerce")

    def test_text_format(self):
        with captured_stderr() as err:
            self.client(LOG_LEVEL="info", LOG_FORMAT="text")
        first = err.getvalue().splitlines()[0]
        self.assertIn("INFO ecom_backend: ecom backend configured", first)
        with self.assertRaises(ValueError):
            json.loads(first)

    def test_log_level_filters(self):
        with captured_stderr() as err:
            self.client(LOG_LEVEL="warning")
        self.assertNotIn("ecom backend configured", err.getvalue())


class SecretsNotLoggedTest(DatabaseTestCase):
    def test_no_secret_reaches_any_log(self):
        redis_password = "redis-SECRET-83c1"
        log_file = os.path.join(self.tmp, "access.log")
        outputs = []
        with captured_stderr() as err:
            client = self.client(LOG_LEVEL="debug", LOG_FILE=log_file,
                                 REDIS_URL="redis://:%s@127.0.0.1:%d/0" % (redis_password, free_port()))
            client.get("/api/products")
            client.post("/api/orders", json={"product_id": 1, "quantity": 1})
            client.get("/ready")
            logging.getLogger("ecom_backend").warning("echo %s", SECRETS["JWT_SECRET"])
            logging.getLogger("ecom_backend").error("url %s", self.db.url)
            down_password = "closed-port-SECRET-41d2"
            down = self.client(migrate=False, LOG_LEVEL="debug", LOG_FILE=log_file,
                               DATABASE_URL=closed_port_url(down_password))
            down.get("/ready")
            down.get("/api/products")
        outputs.append(err.getvalue())
        logging.getLogger("ecom_backend.access").handlers[0].flush()
        outputs.append(read_text(log_file))
        text = "\n".join(outputs)
        self.assertIn("ecom backend configured", text)
        self.assertIn("***", text)
        for secret in list(SECRETS.values()) + [self.db.password, redis_password, down_password]:
            self.assertNotIn(secret, text)
        # the redacted forms are what appears
        self.assertIn("%s:***@" % self.db.role, text)
        self.assertIn("redis://:***@127.0.0.1", text)

    def test_settings_repr_hides_secrets(self):
        from ecom_backend.config import load_settings

        settings = load_settings(self.env(REDIS_URL="redis://:redis-SECRET-83c1@r:6379/0"))
        text = repr(settings) + str(settings)
        for secret in list(SECRETS.values()) + [self.db.password, "redis-SECRET-83c1"]:
            self.assertNotIn(secret, text)


if __name__ == "__main__":
    unittest.main()
