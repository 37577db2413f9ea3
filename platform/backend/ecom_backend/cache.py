"""Best-effort Redis cache for the product list.

Never fails a request: every Redis error is logged (rate limited) and treated
as a miss; after an error Redis is left alone for BACKOFF_SECONDS so a dead
Redis costs at most one short timeout per backoff period.

Invalidation uses a generation counter: readers cache under
"<prefix>products:<generation>"; writers bump the generation after their
transaction commits. A reader that loaded the list before the commit can only
write the old generation's key, which nobody reads any more, so a stale list
is never served after an order (as long as Redis answered the bump).
The prefix contains the database name, so two databases never share entries.
"""

import json
import logging
import threading
import time
from typing import Any, Callable, Optional

log = logging.getLogger("ecom_backend.cache")

SOCKET_TIMEOUT_SECONDS = 0.5
BACKOFF_SECONDS = 5.0


class ProductCache:
    def __init__(self, redis_url: str, ttl: int, namespace: str,
                 on_result: Optional[Callable[[str], None]] = None):
        self.redis_url = redis_url
        self.ttl = ttl
        self.prefix = "ecom:%s:" % namespace
        self._client = None
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._on_result = on_result or (lambda result: None)

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url) and self.ttl > 0

    @property
    def generation_key(self) -> str:
        return self.prefix + "products:generation"

    def products_key(self, generation: int) -> str:
        return "%sproducts:%d" % (self.prefix, generation)

    def _redis(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import redis  # imported lazily: the app runs without Redis

                    self._client = redis.Redis.from_url(
                        self.redis_url,
                        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                        socket_timeout=SOCKET_TIMEOUT_SECONDS,
                        health_check_interval=30,
                    )
        return self._client

    def _available(self) -> bool:
        return self.enabled and time.monotonic() >= self._down_until

    def _failed(self, action: str, exc: BaseException) -> None:
        first = time.monotonic() >= self._down_until
        self._down_until = time.monotonic() + BACKOFF_SECONDS
        self._on_result("error")
        if first:
            log.warning(
                "redis unavailable, serving from the database",
                extra={"action": action, "error": "%s: %s" % (exc.__class__.__name__, exc)},
            )

    def get_products(self, load: Callable[[], Any]) -> Any:
        """Return the cached product list, or load() it and cache it."""
        if not self._available():
            return load()
        try:
            client = self._redis()
            generation = int(client.get(self.generation_key) or 0)
            key = self.products_key(generation)
            raw = client.get(key)
        except Exception as exc:  # redis.RedisError, OSError, bad data...
            self._failed("get", exc)
            return load()
        if raw is not None:
            try:
                value = json.loads(raw)
                self._on_result("hit")
                return value
            except ValueError:
                pass
        self._on_result("miss")
        value = load()
        try:
            client.set(key, json.dumps(value), ex=self.ttl)
        except Exception as exc:
            self._failed("set", exc)
        return value

    def invalidate_products(self) -> None:
        """Bump the generation so the next read reloads from the database.

        Tried even during a backoff: a missed invalidation leaves a stale list
        for up to CACHE_TTL, so it is worth one short timeout.
        """
        if not self.enabled:
            return
        try:
            client = self._redis()
            client.incr(self.generation_key)
        except Exception as exc:
            self._failed("invalidate", exc)

    def ping(self) -> bool:
        if not self.enabled:
            return False
        try:
            return bool(self._redis().ping())
        except Exception:
            return False

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
