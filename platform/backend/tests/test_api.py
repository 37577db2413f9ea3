"""The /api routes against a real PostgreSQL (Starlette's TestClient, in process)."""

import unittest
from decimal import Decimal

from support import DatabaseTestCase, closed_port_url


class ProductsTest(DatabaseTestCase):
    def test_lists_the_three_sample_products_ordered_by_id(self):
        client = self.client()
        resp = client.get("/api/products")
        self.assertEqual(resp.status_code, 200)
        self.assertEqual(resp.headers["content-type"], "application/json")
        products = resp.json()
        self.assertEqual([p["name"] for p in products], ["Laptop", "Mouse", "Keyboard"])
        self.assertEqual([p["price"] for p in products], ["999.99", "29.99", "79.99"])
        self.assertEqual([p["stock"] for p in products], [50, 200, 150])
        ids = [p["id"] for p in products]
        self.assertEqual(ids, sorted(ids))
        for p in products:
            self.assertEqual(set(p), {"id", "name", "description", "price", "stock"})
            self.assertIsInstance(p["description"], str)

    def test_list_follows_the_database(self):
        client = self.client(CACHE_TTL="0")
        self.db.execute("INSERT INTO products (name, price, stock) VALUES ('Cable', 5, 3)")
        self.db.execute("UPDATE products SET price = 10 WHERE name = 'Mouse'")
        products = client.get("/api/products").json()
        self.assertEqual([p["name"] for p in products], ["Laptop", "Mouse", "Keyboard", "Cable"])
        self.assertEqual(products[1]["price"], "10.00")
        self.assertEqual(products[3]["price"], "5.00")

    def test_get_one_product(self):
        client = self.client()
        laptop_id = self.db.query("SELECT id FROM products WHERE name = 'Laptop'")[0][0]
        resp = client.get("/api/products/%d" % laptop_id)
        self.assertEqual(resp.status_code, 200)
        self.assertEqual(resp.json()["name"], "Laptop")
        self.assertEqual(resp.json()["price"], "999.99")

    def test_unknown_product_is_404(self):
        client = self.client()
        for pid in ("424242", "0", "-1", "99999999999999"):
            with self.subTest(pid=pid):
                resp = client.get("/api/products/" + pid)
                self.assertEqual(resp.status_code, 404, resp.text)
                self.assertEqual(resp.json()["detail"], "product not found")
        self.assertEqual(client.get("/api/products/abc").status_code, 422)


class OrdersTest(DatabaseTestCase):
    def stock(self, name):
        return self.db.query("SELECT stock FROM products WHERE name = %s", (name,))[0][0]

    def product_id(self, name):
        return self.db.query("SELECT id FROM products WHERE name = %s", (name,))[0][0]

    def order_count(self):
        return self.db.query("SELECT count(*) FROM orders")[0][0]

    def test_order_decrements_stock_and_records_the_total(self):
        client = self.client()
        pid = self.product_id("Laptop")
        resp = client.post("/api/orders", json={"product_id": pid, "quantity": 3})
        self.assertEqual(resp.status_code, 201, resp.text)
        order = resp.json()
        self.assertEqual(order["product_id"], pid)
        self.assertEqual(order["quantity"], 3)
        self.assertEqual(order["total"], "2999.97")
        self.assertEqual(order["status"], "created")
        self.assertRegex(order["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")
        self.assertEqual(self.stock("Laptop"), 47)
        self.assertEqual(
            self.db.query("SELECT id, product_id, quantity, total, status FROM orders"),
            [(order["id"], pid, 3, Decimal("2999.97"), "created")],
        )
        self.assertEqual(client.get("/api/products/%d" % pid).json()["stock"], 47)

    def test_whole_stock_can_be_ordered_then_409(self):
        client = self.client()
        pid = self.product_id("Laptop")
        self.assertEqual(client.post("/api/orders", json={"product_id": pid, "quantity": 50}).status_code, 201)
        self.assertEqual(self.stock("Laptop"), 0)
        resp = client.post("/api/orders", json={"product_id": pid, "quantity": 1})
        self.assertEqual(resp.status_code, 409)
        self.assertEqual(self.stock("Laptop"), 0)

    def test_too_much_is_409_and_changes_nothing(self):
        client = self.client()
        pid = self.product_id("Laptop")
        resp = client.post("/api/orders", json={"product_id": pid, "quantity": 51})
        self.assertEqual(resp.status_code, 409, resp.text)
        self.assertIn("not enough stock", resp.json()["detail"])
        self.assertIn("50 available", resp.json()["detail"])
        self.assertEqual(self.stock("Laptop"), 50)
        self.assertEqual(self.order_count(), 0)

    def test_unknown_product_is_404_and_changes_nothing(self):
        client = self.client()
        resp = client.post("/api/orders", json={"product_id": 424242, "quantity": 1})
        self.assertEqual(resp.status_code, 404, resp.text)
        self.assertEqual(self.order_count(), 0)

    def test_bad_input_is_422_and_changes_nothing(self):
        client = self.client()
        pid = self.product_id("Mouse")
        bodies = [
            {"product_id": pid, "quantity": 0},
            {"product_id": pid, "quantity": -2},
            {"product_id": pid, "quantity": 1.5},
            {"product_id": pid, "quantity": "2"},
            {"product_id": str(pid), "quantity": 1},
            {"product_id": pid, "quantity": True},
            {"product_id": pid, "quantity": None},
            {"product_id": pid},
            {"quantity": 1},
            {"product_id": pid, "quantity": 2 ** 31},
            {"product_id": 0, "quantity": 1},
            [],
            {},
        ]
        for body in bodies:
            with self.subTest(body=body):
                resp = client.post("/api/orders", json=body)
                self.assertEqual(resp.status_code, 422, resp.text)
        resp = client.post("/api/orders", content=b"{not json", headers={"content-type": "application/json"})
        self.assertEqual(resp.status_code, 422)
        self.assertEqual(self.stock("Mouse"), 200)
        self.assertEqual(self.order_count(), 0)

    def test_total_out_of_range_is_422_and_rolls_back(self):
        client = self.client()
        self.db.execute("UPDATE products SET price = 99999999.99, stock = 1000 WHERE name = 'Keyboard'")
        pid = self.product_id("Keyboard")
        resp = client.post("/api/orders", json={"product_id": pid, "quantity": 2})
        self.assertEqual(resp.status_code, 422, resp.text)
        self.assertEqual(self.stock("Keyboard"), 1000)
        self.assertEqual(self.order_count(), 0)

    def test_orders_are_listed_newest_first_at_most_100(self):
        client = self.client()
        ids = []
        for name in ("Laptop", "Mouse", "Keyboard"):
            resp = client.post("/api/orders", json={"product_id": self.product_id(name), "quantity": 1})
            self.assertEqual(resp.status_code, 201)
            ids.append(resp.json()["id"])
        listed = client.get("/api/orders").json()
        self.assertEqual([o["id"] for o in listed], ids[::-1])
        self.assertEqual(listed[0]["total"], "79.99")
        self.db.execute(
            "INSERT INTO orders (product_id, quantity, total, created_at)"
            " SELECT %s, 1, 29.99, now() - interval '1 day' - g * interval '1 second'"
            " FROM generate_series(1, 120) g", (self.product_id("Mouse"),))
        listed = client.get("/api/orders").json()
        self.assertEqual(len(listed), 100)
        self.assertEqual([o["id"] for o in listed[:3]], ids[::-1])
        stamps = [o["created_at"] for o in listed]
        self.assertEqual(stamps, sorted(stamps, reverse=True))

    def test_database_down_is_503_not_500(self):
        client = self.client(migrate=False, DATABASE_URL=closed_port_url())
        for method, path, body in (("GET", "/api/products", None), ("GET", "/api/orders", None),
                                   ("POST", "/api/orders", {"product_id": 1, "quantity": 1})):
            with self.subTest(path=path, method=method):
                resp = client.request(method, path, json=body)
                self.assertEqual(resp.status_code, 503, resp.text)
                self.assertIn("database unavailable", resp.json()["detail"])

    def test_openapi_document_is_under_the_api_root(self):
        client = self.client()
        resp = client.get("/api/openapi.json")
        self.assertEqual(resp.status_code, 200)
        self.assertIn("/api/orders", resp.json()["paths"])
        self.assertEqual(client.get("/docs").status_code, 404)


class RateLimitTest(DatabaseTestCase):
    def test_fixed_window_per_client_on_api_only(self):
        client = self.client(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS="3",
                             RATE_LIMIT_WINDOW_SECONDS="3600")
        codes = [client.get("/api/products").status_code for _ in range(3)]
        self.assertEqual(codes, [200, 200, 200])
        resp = client.get("/api/orders")
        self.assertEqual(resp.status_code, 429)
        self.assertGreater(int(resp.headers["retry-after"]), 0)
        for _ in range(5):
            self.assertEqual(client.get("/health").status_code, 200)
        self.assertIn('http_requests_rate_limited_total 1.0', client.get("/metrics").text)

    def test_clients_behind_the_frontend_proxy_are_told_apart_by_x_real_ip(self):
        client = self.client(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS="2",
                             RATE_LIMIT_WINDOW_SECONDS="3600")
        a = {"X-Real-IP": "10.1.2.3"}
        b = {"X-Real-IP": "2001:db8::7"}
        self.assertEqual([client.get("/api/products", headers=a).status_code for _ in range(3)],
                         [200, 200, 429])
        self.assertEqual(client.get("/api/products", headers=b).status_code, 200)
        # a header that is not an address is ignored: the peer is the client
        junk = {"X-Real-IP": "not-an-ip"}
        self.assertEqual([client.get("/api/products", headers=junk).status_code for _ in range(3)],
                         [200, 200, 429])

    def test_disabled_by_default(self):
        client = self.client(RATE_LIMIT_REQUESTS="1")
        codes = {client.get("/api/products").status_code for _ in range(5)}
        self.assertEqual(codes, {200})

    def test_window_resets(self):
        from ecom_backend.app import RateLimiter

        limiter = RateLimiter(limit=2, window=10)
        self.assertIsNone(limiter.allow("a", now=100.0))
        self.assertIsNone(limiter.allow("a", now=101.0))
        self.assertEqual(limiter.allow("a", now=102.0), 8)
        self.assertIsNone(limiter.allow("b", now=102.0))
        self.assertIsNone(limiter.allow("a", now=110.0))


if __name__ == "__main__":
    unittest.main()
