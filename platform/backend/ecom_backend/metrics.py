"""Prometheus metrics (prometheus_client).

With several uvicorn workers, `python3 -m ecom_backend` sets
PROMETHEUS_MULTIPROC_DIR (under /tmp) before the workers start, and /metrics
then merges the samples of all workers. Without it (one worker, or
`python3 -m uvicorn ... --workers N`) each worker reports its own numbers.
"""

import os
from typing import Tuple

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str:
    path = os.environ.get(MULTIPROC_ENV, "")
    return path if path and os.path.isdir(path) else ""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency in seconds, by method and route template.",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.rate_limited = Counter(
            "http_requests_rate_limited_total",
            "Requests refused with 429 by the per-client rate limit.",
            registry=r,
        )
        self.cache = Counter(
            "ecom_cache_requests_total",
            "Product cache lookups by result (hit, miss, error).",
            ["result"],
            registry=r,
        )
        self.orders = Counter(
            "ecom_orders_created_total", "Orders created.", registry=r
        )
        self.pool_in_use = Gauge(
            "db_pool_connections_in_use",
            "Database connections currently borrowed from the pool.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_idle = Gauge(
            "db_pool_connections_idle",
            "Open database connections waiting in the pool.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_max = Gauge(
            "db_pool_connections_max",
            "Maximum database connections of the pool (POOL_SIZE + MAX_OVERFLOW).",
            registry=r,
            multiprocess_mode="livesum",
        )

    def pool_stats(self, in_use: int, idle: int, maximum: int) -> None:
        self.pool_in_use.set(in_use)
        self.pool_idle.set(idle)
        self.pool_max.set(maximum)

    def cache_result(self, result: str) -> None:
        self.cache.labels(result).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> Tuple[bytes, str]:
        path = multiprocess_dir()
        if path:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
