"""The Redis product cache: used, invalidated by orders, harmless when Redis is gone."""

import time
import unittest

from support import DatabaseTestCase, SilentServer, free_port, redis_url


def _metric(text, result):
    for line in text.splitlines():
        if line.startswith('ecom_cache_requests_total{result="%s"}' % result):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class CacheWithRedisTest(DatabaseTestCase):
    def setUp(self):
        if not redis_url():
            self.skipTest("TEST_REDIS_URL is not set (platform/test.sh sets it)")
        super().setUp()
        import redis

        self.redis = redis.Redis.from_url(redis_url(), socket_timeout=5)
        self.addCleanup(self.redis.close)
        self.redis.ping()
        self.prefix = "ecom:%s:" % self.db.name
        self.addCleanup(self._clean_keys)

    def _clean_keys(self):
        keys = list(self.redis.scan_iter(self.prefix + "*"))
        if keys:
            self.redis.delete(*keys)

    def cached_keys(self):
        return sorted(k.decode() for k in self.redis.scan_iter(self.prefix + "products:*")
                      if not k.endswith(b"generation"))

    def test_list_is_served_from_redis_until_an_order_invalidates_it(self):
        client = self.client(REDIS_URL=redis_url(), CACHE_TTL="300")
        first = client.get("/api/products").json()
        self.assertEqual(len(self.cached_keys()), 1)
        key = self.cached_keys()[0]
        ttl = self.redis.ttl(key)
        self.assertTrue(0 < ttl <= 300, ttl)

        # Change the database behind the app's back: the cached copy is served.
        self.db.execute("UPDATE products SET description = 'changed' WHERE name = 'Mouse'")
        second = client.get("/api/products").json()
        self.assertEqual(second, first)
        metrics = client.get("/metrics").text
        self.assertEqual((_metric(metrics, "miss"), _metric(metrics, "hit")), (1.0, 1.0))

        # An order changes stock: the next read goes to the database again.
        laptop = first[0]
        resp = client.post("/api/orders", json={"product_id": laptop["id"], "quantity": 2})
        self.assertEqual(resp.status_code, 201, resp.text)
        third = client.get("/api/products").json()
        self.assertEqual(third[0]["stock"], laptop["stock"] - 2)
        self.assertEqual(third[1]["description"], "changed")
        self.assertEqual(_metric(client.get("/metrics").text, "miss"), 2.0)

    def test_refused_orders(self):
        client = self.client(REDIS_URL=redis_url())
        products = client.get("/api/products").json()
        gen_key = self.prefix + "products:generation"
        generation = self.redis.get(gen_key)
        # 404 and 422 change nothing: the cached list stays.
        self.assertEqual(client.post("/api/orders", json={"product_id": 424242, "quantity": 1}).status_code, 404)
        self.assertEqual(client.post("/api/orders", json={"product_id": 1, "quantity": 0}).status_code, 422)
        self.assertEqual(self.redis.get(gen_key), generation)
        client.get("/api/products")
        self.assertEqual(_metric(client.get("/metrics").text, "hit"), 1.0)
        # 409: the client saw a stock that is not there (changed outside the
        # API): the list is reloaded.
        self.db.execute("UPDATE products SET stock = 0 WHERE id = %s", (products[2]["id"],))
        resp = client.post("/api/orders", json={"product_id": products[2]["id"], "quantity": 1})
        self.assertEqual(resp.status_code, 409)
        self.assertNotEqual(self.redis.get(gen_key), generation)
        self.assertEqual(client.get("/api/products").json()[2]["stock"], 0)

    def test_entries_expire_after_cache_ttl(self):
        client = self.client(REDIS_URL=redis_url(), CACHE_TTL="1")
        client.get("/api/products")
        self.db.execute("UPDATE products SET stock = 1 WHERE name = 'Laptop'")
        self.assertEqual(client.get("/api/products").json()[0]["stock"], 50)
        time.sleep(2.2)
        self.assertEqual(client.get("/api/products").json()[0]["stock"], 1)

    def test_cache_ttl_zero_disables_the_cache(self):
        client = self.client(REDIS_URL=redis_url(), CACHE_TTL="0")
        client.get("/api/products")
        self.db.execute("UPDATE products SET stock = 1 WHERE name = 'Laptop'")
        self.assertEqual(client.get("/api/products").json()[0]["stock"], 1)
        self.assertEqual(self.cached_keys(), [])

    def test_stale_writer_cannot_resurrect_an_invalidated_list(self):
        # A reader that loaded the list before an order committed stores it
        # under the old generation, which is no longer read.
        client = self.client(REDIS_URL=redis_url())
        cache = client.app.state.ecom.cache
        old = client.get("/api/products").json()
        self.redis.delete(*self.cached_keys())

        def slow_load():
            # the order commits and invalidates while this reader is working
            resp = client.post("/api/orders", json={"product_id": old[0]["id"], "quantity": 1})
            assert resp.status_code == 201, resp.text
            return old

        self.assertEqual(cache.get_products(slow_load), old)
        self.assertEqual(client.get("/api/products").json()[0]["stock"], old[0]["stock"] - 1)

    def test_two_databases_never_share_entries(self):
        client = self.client(REDIS_URL=redis_url())
        client.get("/api/products")
        self.assertTrue(all(k.startswith(self.prefix) for k in self.cached_keys()))
        self.assertIn(self.db.name, self.prefix)


class CacheWithoutRedisTest(DatabaseTestCase):
    def _exercise(self, client, budget):
        started = time.monotonic()
        products = client.get("/api/products")
        self.assertEqual(products.status_code, 200, products.text)
        self.assertEqual(len(products.json()), 3)
        laptop = products.json()[0]
        resp = client.post("/api/orders", json={"product_id": laptop["id"], "quantity": 1})
        self.assertEqual(resp.status_code, 201, resp.text)
        for _ in range(5):
            again = client.get("/api/products")
            self.assertEqual(again.status_code, 200)
            self.assertEqual(again.json()[0]["stock"], laptop["stock"] - 1)
        self.assertLess(time.monotonic() - started, budget)
        self.assertGreaterEqual(_metric(client.get("/metrics").text, "error"), 1.0)
        self.assertEqual(client.get("/ready").status_code, 200)

    def test_unreachable_redis_is_harmless(self):
        password = "redis-SECRET-83c1"
        client = self.client(REDIS_URL="redis://:%s@127.0.0.1:%d/0" % (password, free_port()))
        self._exercise(client, budget=5)

    def test_hung_redis_costs_one_short_timeout(self):
        hung = SilentServer()
        self.addCleanup(hung.close)
        client = self.client(REDIS_URL="redis://127.0.0.1:%d/0" % hung.port)
        # 0.5 s socket timeout, then Redis is left alone for a while
        self._exercise(client, budget=3)

    def test_without_redis_url_the_database_serves(self):
        client = self.client(REDIS_URL="")
        self._exercise_no_cache(client)

    def _exercise_no_cache(self, client):
        self.assertEqual(len(client.get("/api/products").json()), 3)
        self.db.execute("UPDATE products SET stock = 3 WHERE name = 'Laptop'")
        self.assertEqual(client.get("/api/products").json()[0]["stock"], 3)


if __name__ == "__main__":
    unittest.main()
