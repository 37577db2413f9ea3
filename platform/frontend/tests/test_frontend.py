"""Tests of the ecom reference frontend: template, nginx config, entrypoint, static files.

Needs nginx (nginx-light) and envsubst (gettext-base) on PATH: run inside the
frontend's Debian root (platform/test.sh does). When run as root, nginx runs
as uid/gid 101 as in the image.
"""

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urlsplit

FRONTEND_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATIC_FILES = ("index.html", "app.js", "style.css")
STATIC_ROOT = "/usr/share/ecom-frontend"
NGINX_UID = 101
IS_ROOT = os.geteuid() == 0
TMP_PATHS = ("/tmp/client_temp", "/tmp/proxy_temp", "/tmp/fastcgi_temp", "/tmp/uwsgi_temp",
             "/tmp/scgi_temp", "/tmp/nginx.pid")


def require_tools():
    missing = [tool for tool in ("nginx", "envsubst") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError("missing %s: run inside a root with nginx-light and gettext-base "
                           "(platform/test.sh ROOT)" % ", ".join(missing))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_nginx_user():
    return {"user": NGINX_UID, "group": NGINX_UID, "extra_groups": []} if IS_ROOT else {}


def render(template_text, port, api):
    env = dict(os.environ, NGINX_PORT=str(port), API_BASE_URL=api)
    return subprocess.run(["envsubst", "${NGINX_PORT} ${API_BASE_URL}"], input=template_text,
                          env=env, capture_output=True, text=True, check=True, timeout=30).stdout


def fetch(url, method="GET", body=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class StubBackend:
    """Records what nginx forwards and answers JSON."""

    def __init__(self):
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append((self.command, self.path, dict(self.headers), body))
                payload = json.dumps({"stub": True, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FrontendTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require_tools()
        with open(os.path.join(FRONTEND_DIR, "nginx.conf.template"), encoding="utf-8") as f:
            cls.template = f.read()
        cls.preexisting = {p for p in TMP_PATHS if os.path.exists(p)}

    @classmethod
    def tearDownClass(cls):
        for path in TMP_PATHS:
            if path not in cls.preexisting:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.unlink(path)

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="ecom-frontend-test-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name
        os.chmod(self.tmp, 0o755)


class TemplateTest(FrontendTestCase):
    def test_only_the_two_variables_are_substituted(self):
        text = render(self.template, 8080, "http://backend-service.ecommerce.svc.cluster.local:8000")
        self.assertNotIn("${", text)
        self.assertIn("listen 8080 default_server;", text)
        self.assertIn("proxy_pass http://backend-service.ecommerce.svc.cluster.local:8000;", text)
        for nginx_var in ("$remote_addr", "$proxy_add_x_forwarded_for", "$uri", "$status"):
            self.assertIn(nginx_var, text)

    def test_directives_of_the_contract(self):
        text = render(self.template, 8080, "http://127.0.0.1:8000")
        lines = [l.split("#", 1)[0].strip() for l in text.splitlines()]
        directives = [l for l in lines if l]
        self.assertFalse([l for l in directives if l.startswith("user ")], "no user directive")
        for expected in ("pid /tmp/nginx.pid;", "error_log /dev/stderr warn;",
                         "access_log /dev/stdout json;", "server_tokens off;", "gzip on;",
                         "root %s;" % STATIC_ROOT, "client_body_temp_path /tmp/client_temp;",
                         "proxy_temp_path /tmp/proxy_temp;", "fastcgi_temp_path /tmp/fastcgi_temp;",
                         "uwsgi_temp_path /tmp/uwsgi_temp;", "scgi_temp_path /tmp/scgi_temp;",
                         "location /api/ {", "location = /healthz {", 'return 200 "ok\\n";'):
            self.assertIn(expected, directives)
        csp = re.search(r'Content-Security-Policy "([^"]+)"', text).group(1)
        sources = {tok for directive in csp.split(";") for tok in directive.split()[1:]}
        self.assertTrue(sources <= {"'self'", "'none'"}, sources)

    def nginx_t(self, conf):
        """nginx -t -c conf as the nginx user, stderr in a file that user owns."""
        err_path = os.path.join(self.tmp, "nginx-t.err")
        with open(err_path, "w") as err:
            if IS_ROOT:
                os.fchown(err.fileno(), NGINX_UID, NGINX_UID)
            code = subprocess.run(["nginx", "-t", "-c", conf], stdout=err, stderr=subprocess.STDOUT,
                                  timeout=30, **as_nginx_user()).returncode
        with open(err_path, encoding="utf-8") as f:
            return subprocess.CompletedProcess(["nginx", "-t"], code, "", f.read())

    def test_nginx_accepts_the_rendered_config(self):
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(render(self.template, 8080, "http://127.0.0.1:8000"))
        os.chmod(conf, 0o644)
        result = self.nginx_t(conf)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("syntax is ok", result.stderr)
        self.assertIn("test is successful", result.stderr)

    def test_nginx_rejects_a_broken_render(self):
        # The check above can fail: an unsubstituted port is refused.
        conf = os.path.join(self.tmp, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(self.template)
        os.chmod(conf, 0o644)
        result = self.nginx_t(conf)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("${NGINX_PORT}", result.stderr)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value is not None:
                self.refs.append((tag, name, value))


class StaticFilesTest(FrontendTestCase):
    def read(self, name):
        with open(os.path.join(FRONTEND_DIR, name), encoding="utf-8") as f:
            return f.read()

    def test_index_references_only_relative_urls(self):
        parser = _Refs()
        parser.feed(self.read("index.html"))
        self.assertIn(("script", "src", "app.js"), parser.refs)
        self.assertIn(("link", "href", "style.css"), parser.refs)
        for tag, attr, value in parser.refs:
            with self.subTest(ref=value):
                parts = urlsplit(value)
                self.assertEqual(parts.scheme, "", "%s %s=%s is not relative" % (tag, attr, value))
                self.assertEqual(parts.netloc, "")
                self.assertFalse(value.startswith("//"))
        # every referenced local file exists
        for _, _, value in parser.refs:
            if value in STATIC_FILES:
                self.assertTrue(os.path.exists(os.path.join(FRONTEND_DIR, value)))
        self.assertNotRegex(self.read("index.html"), r"<script>|style=|<style|\son[a-z]+=",
                            "inline script/style would be blocked by the CSP")

    def test_no_external_urls_anywhere(self):
        for name in STATIC_FILES:
            with self.subTest(file=name):
                text = self.read(name)
                self.assertNotRegex(text, r"(?i)https?://|wss?://|@import|url\(")

    def test_app_calls_the_api_relative_to_the_page(self):
        text = self.read("app.js")
        self.assertIn('var API = "api/";', text)
        self.assertIn('request("GET", "products")', text)
        self.assertIn('request("POST", "orders", { product_id: product.id, quantity: 1 })', text)
        self.assertNotIn("innerHTML", text)

    def test_entrypoint_is_posix_sh(self):
        path = os.path.join(FRONTEND_DIR, "entrypoint.sh")
        self.assertTrue(self.read("entrypoint.sh").startswith("#!/bin/sh\n"))
        self.assertTrue(os.access(path, os.X_OK), "entrypoint.sh is not executable")
        for shell in ("sh", "dash"):
            if shutil.which(shell):
                result = subprocess.run([shell, "-n", path], capture_output=True, text=True, timeout=30)
                self.assertEqual(result.returncode, 0, result.stderr)


class EntrypointTest(FrontendTestCase):
    def setUp(self):
        super().setUp()
        self.www = os.path.join(self.tmp, "www")
        os.mkdir(self.www, 0o755)
        for name in STATIC_FILES:
            shutil.copy(os.path.join(FRONTEND_DIR, name), self.www)
            os.chmod(os.path.join(self.www, name), 0o644)
        # The same template, serving the copies instead of the image's path.
        self.template_path = os.path.join(self.tmp, "nginx.conf.template")
        with open(self.template_path, "w", encoding="utf-8") as f:
            f.write(self.template.replace("root %s;" % STATIC_ROOT, "root %s;" % self.www))
        os.chmod(self.template_path, 0o644)
        self.conf_dir = os.path.join(self.tmp, "conf")
        os.mkdir(self.conf_dir, 0o755)
        if IS_ROOT:
            os.chown(self.conf_dir, NGINX_UID, NGINX_UID)

    def entrypoint(self, **env):
        environ = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/tmp",
            "NGINX_TEMPLATE": self.template_path,
            "NGINX_CONF": os.path.join(self.conf_dir, "nginx.conf"),
        }
        environ.update(env)
        out = open(os.path.join(self.tmp, "nginx.out"), "w")
        self.addCleanup(out.close)
        if IS_ROOT:
            # nginx reopens /dev/stdout and /dev/stderr by path; container
            # runtimes (runc) hand the process stdio pipes owned by its uid.
            os.fchown(out.fileno(), NGINX_UID, NGINX_UID)
        proc = subprocess.Popen(["/bin/sh", os.path.join(FRONTEND_DIR, "entrypoint.sh")], env=environ,
                                stdout=out, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
                                **as_nginx_user())
        self.addCleanup(self._kill, proc)
        return proc

    def _kill(self, proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def output(self):
        with open(os.path.join(self.tmp, "nginx.out"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def test_serves_static_files_and_proxies_the_api(self):
        stub = StubBackend()
        self.addCleanup(stub.close)
        port = free_port()
        base = "http://127.0.0.1:%d" % port
        # a trailing slash would turn /api/x into /x upstream: the entrypoint drops it
        proc = self.entrypoint(NGINX_PORT=str(port), API_BASE_URL="http://127.0.0.1:%d/" % stub.port)

        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                self.fail("nginx exited with %s:\n%s" % (proc.returncode, self.output()))
            try:
                status, _, body = fetch(base + "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("nginx did not answer /healthz within 20 s:\n" + self.output())
            time.sleep(0.1)
        self.assertEqual(body, b"ok\n")

        if IS_ROOT:
            with open("/proc/%d/status" % proc.pid) as f:
                uid_line = [l for l in f if l.startswith("Uid:")][0]
            self.assertEqual(uid_line.split()[1:], [str(NGINX_UID)] * 4)
            with open("/proc/%d/comm" % proc.pid) as f:
                self.assertEqual(f.read().strip(), "nginx")  # exec'd, no shell left

        status, headers, body = fetch(base + "/")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/html"))
        self.assertIn(b'src="app.js"', body)
        self.check_security_headers(headers)
        self.assertEqual(headers.get("Server"), "nginx")  # server_tokens off: no version

        status, headers, body = fetch(base + "/app.js", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("Content-Encoding"), "gzip")
        self.assertIn("javascript", headers["Content-Type"])

        status, headers, body = fetch(base + "/style.css")
        self.assertEqual((status, headers["Content-Type"].split(";")[0]), (200, "text/css"))

        status, headers, body = fetch(base + "/api/products?x=1")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"stub": True, "path": "/api/products?x=1"})
        self.check_security_headers(headers)
        method, path, fwd_headers, _ = stub.requests[-1]
        self.assertEqual((method, path), ("GET", "/api/products?x=1"))
        self.assertEqual(fwd_headers.get("X-Real-IP"), "127.0.0.1")
        self.assertEqual(fwd_headers.get("X-Forwarded-For"), "127.0.0.1")

        order = json.dumps({"product_id": 1, "quantity": 1}).encode()
        status, _, _ = fetch(base + "/api/orders", method="POST", body=order,
                             headers={"Content-Type": "application/json", "X-Real-IP": "6.6.6.6"})
        self.assertEqual(status, 200)
        method, path, fwd_headers, body = stub.requests[-1]
        self.assertEqual((method, path, body), ("POST", "/api/orders", order))
        self.assertEqual(fwd_headers.get("X-Real-IP"), "127.0.0.1")  # not the client's claim

        status, headers, _ = fetch(base + "/missing.html")
        self.assertEqual(status, 404)
        self.check_security_headers(headers)

        os.kill(proc.pid, signal.SIGQUIT)  # graceful stop
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("nginx did not stop within 15 s")
        output = self.output()
        self.assertIn("/api/ -> http://127.0.0.1:%d" % stub.port, output)
        access = [json.loads(l) for l in output.splitlines() if l.startswith("{")]
        self.assertIn(("GET", "/api/products", 200),
                      [(a["method"], a["path"], a["status"]) for a in access])
        self.assertNotIn("[emerg]", output)

    def check_security_headers(self, headers):
        self.assertEqual(headers.get("X-Content-Type-Options"), "nosniff")
        self.assertEqual(headers.get("X-Frame-Options"), "DENY")
        csp = headers.get("Content-Security-Policy", "")
        self.assertIn("default-src 'self'", csp)
        self.assertNotRegex(csp, r"https?:|\*|unsafe-")

    def test_rejects_bad_settings(self):
        cases = [
            ({"NGINX_PORT": "http"}, "NGINX_PORT must be a port number"),
            ({"NGINX_PORT": "70000"}, "NGINX_PORT out of range"),
            ({"API_BASE_URL": "backend:8000"}, "API_BASE_URL must be http(s)://host[:port]"),
            ({"API_BASE_URL": "http://backend:8000/api"}, "must not have a path"),
            ({"API_BASE_URL": "http://backend:8000;evil"}, "characters that are not allowed"),
            ({"NGINX_TEMPLATE": "/nonexistent.template"}, "cannot read the template"),
        ]
        for env, message in cases:
            with self.subTest(env=env):
                proc = self.entrypoint(**env)
                self.assertEqual(proc.wait(20), 2)
                self.assertIn(message, self.output())


if __name__ == "__main__":
    unittest.main()
