"""The FastAPI application.

`ecom_backend.app:app` is created on first access (PEP 562 module __getattr__)
from the environment, so importing this module has no side effect; tests call
create_app(settings) directly.

Routes (paths come from the environment, defaults shown):
  GET  /health                liveness, never touches the database
  GET  /ready                 SELECT 1 within ~2 s, else 503 with the reason
  GET  /metrics               Prometheus text (METRICS_ENABLED)
  GET  /api/products          product list, cached in Redis for CACHE_TTL
  GET  /api/products/{id}
  POST /api/orders            {"product_id": int, "quantity": int >= 1}
  GET  /api/orders            newest first, at most 100
"""

import asyncio
import ipaddress
import logging
import threading
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Dict, List, Optional, Tuple

import psycopg2
import psycopg2.errors
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, conint
from starlette.concurrency import run_in_threadpool

from .cache import ProductCache
from .config import Settings, load_settings_or_exit
from .db import Database, DatabaseUnavailable
from .logs import ACCESS_LOGGER, setup_logging
from .metrics import Metrics

INT4_MAX = 2147483647
READY_TIMEOUT_SECONDS = 2.0
CENT = Decimal("0.01")

log = logging.getLogger("ecom_backend")


class OrderIn(BaseModel):
    product_id: conint(strict=True, ge=1, le=INT4_MAX)  # type: ignore[valid-type]
    quantity: conint(strict=True, ge=1, le=INT4_MAX)  # type: ignore[valid-type]


def _money(value: Decimal) -> str:
    return str(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP))


def _product(row) -> Dict[str, Any]:
    return {
        "id": row[0],
        "name": row[1],
        "description": row[2],
        "price": _money(row[3]),
        "stock": row[4],
    }


def _order(row) -> Dict[str, Any]:
    return {
        "id": row[0],
        "product_id": row[1],
        "quantity": row[2],
        "total": _money(row[3]),
        "status": row[4],
        "created_at": row[5].isoformat(timespec="milliseconds") if row[5] else None,
    }


def client_address(scope) -> Tuple[str, str]:
    """(client, peer): the client is X-Real-IP when it holds an IP address.

    The seeded NetworkPolicies let only the frontend's nginx (which sets
    X-Real-IP to its own $remote_addr, overwriting what a browser sent),
    Prometheus and the nodes reach the backend; from the nodes that is the
    API server's service proxy, used by users Kubernetes authenticated and
    allowed to proxy (administrators), who could set the header themselves.
    So the header is trusted, for the rate limiter's key and the access
    log; without it the TCP peer is the client.
    """
    peer = (scope.get("client") or ("-", 0))[0]
    for name, value in scope.get("headers") or ():
        if name == b"x-real-ip":
            candidate = value.decode("latin-1").strip()
            try:
                ipaddress.ip_address(candidate)
            except ValueError:
                break
            return candidate, peer
    return peer, peer


class RateLimiter:
    """Fixed window per client IP, per worker process (state is not shared)."""

    def __init__(self, limit: int, window: int):
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._window_start = 0
        self._counts: Dict[str, int] = {}

    def allow(self, client: str, now: Optional[float] = None) -> Optional[int]:
        """None when allowed, else the seconds until the window ends."""
        now = time.time() if now is None else now
        start = int(now // self.window) * self.window
        with self._lock:
            if start != self._window_start:
                self._window_start = start
                self._counts = {}
            count = self._counts.get(client, 0) + 1
            self._counts[client] = count
        if count > self.limit:
            return max(1, int(start + self.window - now + 0.999))
        return None


class ObservabilityMiddleware:
    """Pure ASGI middleware: rate limit, metrics and the JSON access log."""

    def __init__(self, app, state: "AppState"):
        self.app = app
        self.state = state
        self.access = logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        start = time.perf_counter()
        status = {"code": 500}
        client, peer = client_address(scope)
        path = scope.get("path", "")

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            retry_after = None
            if state.limiter is not None and state.is_api_path(path):
                retry_after = state.limiter.allow(client)
            if retry_after is not None:
                state.metrics.rate_limited.inc()
                response = JSONResponse(
                    {"detail": "rate limit exceeded"},
                    status_code=429,
                    headers={"Retry-After": str(retry_after)},
                )
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = state.route_label(scope)
            method = scope.get("method", "")
            state.metrics.observe(method, route, status["code"], elapsed)
            entry = {
                "method": method,
                "path": path,
                "status": status["code"],
                "duration_ms": round(elapsed * 1000, 3),
                "client": client,
                "route": route,
            }
            if peer != client:
                entry["peer"] = peer
            self.access.info("%s %s %s", method, path, status["code"], extra={"access": entry})


class AppState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = Metrics()
        self.db = Database(settings, on_stats=self.metrics.pool_stats)
        self.cache = ProductCache(
            settings.redis_url,
            settings.cache_ttl,
            namespace=settings.database_name,
            on_result=self.metrics.cache_result,
        )
        self.limiter = (
            RateLimiter(settings.rate_limit_requests, settings.rate_limit_window_seconds)
            if settings.rate_limit_enabled
            else None
        )
        self.route_paths: Dict[Any, str] = {}
        root = settings.api_root_path.rstrip("/")
        self._api_prefix = root + "/"
        self._api_root = root

    def is_api_path(self, path: str) -> bool:
        return path.startswith(self._api_prefix) or path == self._api_root

    def route_label(self, scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return "unmatched"
        return self.route_paths.get(endpoint, "unmatched")


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    settings = settings or load_settings_or_exit()
    setup_logging(settings)
    state = AppState(settings)
    root = settings.api_root_path.rstrip("/")

    app = FastAPI(
        title="ecom reference backend",
        version="1.0.0",
        openapi_url=root + "/openapi.json",
        docs_url=None,  # Swagger UI loads assets from a CDN: nothing external here.
        redoc_url=None,
    )
    app.state.ecom = state

    @app.exception_handler(DatabaseUnavailable)
    async def _db_unavailable(request: Request, exc: DatabaseUnavailable):
        log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse({"detail": "database unavailable: %s" % exc}, status_code=503)

    @app.exception_handler(psycopg2.OperationalError)
    async def _db_operational(request: Request, exc: psycopg2.OperationalError):
        reason = (str(exc).strip().splitlines() or ["operational error"])[0]
        log.warning("database error", extra={"path": request.url.path, "error": reason})
        return JSONResponse({"detail": "database unavailable: %s" % reason}, status_code=503)

    @app.exception_handler(psycopg2.errors.UndefinedTable)
    async def _db_not_migrated(request: Request, exc: psycopg2.errors.UndefinedTable):
        log.error("database schema missing", extra={"path": request.url.path})
        return JSONResponse(
            {"detail": "database schema missing: run python3 -m ecom_backend.migrate"},
            status_code=503,
        )

    # -- probes and metrics ----------------------------------------------
    @app.get(settings.health_path, include_in_schema=False)
    def health():
        return {"status": "ok"}

    @app.get(settings.readiness_path, include_in_schema=False)
    async def ready():
        try:
            await asyncio.wait_for(
                run_in_threadpool(state.db.ping, READY_TIMEOUT_SECONDS),
                timeout=READY_TIMEOUT_SECONDS + 0.5,
            )
        except asyncio.TimeoutError:
            reason = "database did not answer within %.0fs" % READY_TIMEOUT_SECONDS
        except DatabaseUnavailable as exc:
            reason = str(exc)
        else:
            return {"status": "ready"}
        log.warning("not ready", extra={"reason": reason})
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    if settings.metrics_enabled:

        @app.get(settings.metrics_path, include_in_schema=False)
        def metrics():
            body, content_type = state.metrics.render()
            return Response(content=body, media_type=content_type)

    # -- API ---------------------------------------------------------------
    api = APIRouter(prefix=root)

    def load_products() -> List[Dict[str, Any]]:
        with state.db.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT id, name, description, price, stock FROM products ORDER BY id")
            return [_product(row) for row in cur.fetchall()]

    @api.get("/products")
    def list_products():
        return state.cache.get_products(load_products)

    @api.get("/products/{product_id}")
    def get_product(product_id: int):
        if not 1 <= product_id <= INT4_MAX:
            raise HTTPException(status_code=404, detail="product not found")
        with state.db.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id, name, description, price, stock FROM products WHERE id = %s",
                (product_id,),
            )
            row = cur.fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail="product not found")
        return _product(row)

    @api.post("/orders", status_code=201)
    def create_order(order: OrderIn):
        stale = False
        try:
            with state.db.connection() as conn, conn.cursor() as cur:
                # The conditional UPDATE locks the row: concurrent orders
                # serialise and stock never goes below zero.
                cur.execute(
                    "UPDATE products SET stock = stock - %s"
                    " WHERE id = %s AND stock >= %s RETURNING price",
                    (order.quantity, order.product_id, order.quantity),
                )
                row = cur.fetchone()
                if row is None:
                    cur.execute("SELECT stock FROM products WHERE id = %s", (order.product_id,))
                    found = cur.fetchone()
                    if found is None:
                        raise HTTPException(status_code=404, detail="product not found")
                    # The client ordered from a list that may be stale (stock
                    # changed outside this API): let the next read reload it.
                    stale = True
                    raise HTTPException(
                        status_code=409,
                        detail="not enough stock: %d requested, %d available"
                        % (order.quantity, found[0]),
                    )
                total = (Decimal(row[0]) * order.quantity).quantize(CENT)
                cur.execute(
                    "INSERT INTO orders (product_id, quantity, total) VALUES (%s, %s, %s)"
                    " RETURNING id, product_id, quantity, total, status, created_at",
                    (order.product_id, order.quantity, total),
                )
                created = _order(cur.fetchone())
        except psycopg2.errors.NumericValueOutOfRange:
            raise HTTPException(status_code=422, detail="order total out of range") from None
        except HTTPException:
            if stale:
                state.cache.invalidate_products()
            raise
        state.cache.invalidate_products()
        state.metrics.orders.inc()
        log.info("order created", extra={"order_id": created["id"], "product_id": order.product_id,
                                         "quantity": order.quantity})
        return created

    @api.get("/orders")
    def list_orders():
        with state.db.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id, product_id, quantity, total, status, created_at FROM orders"
                " ORDER BY created_at DESC, id DESC LIMIT 100"
            )
            return [_order(row) for row in cur.fetchall()]

    app.include_router(api)
    app.add_middleware(ObservabilityMiddleware, state=state)

    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        if endpoint is not None:
            state.route_paths[endpoint] = route.path

    @app.on_event("shutdown")
    def _shutdown():
        state.db.close()
        state.cache.close()

    log.info(
        "ecom backend configured",
        extra={
            "database": settings.database_url_redacted,
            "redis": settings.redis_url_redacted or None,
            "api_root_path": root,
            "cache_ttl": settings.cache_ttl,
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "metrics": settings.metrics_path if settings.metrics_enabled else None,
            "rate_limit": (
                "%d/%ds" % (settings.rate_limit_requests, settings.rate_limit_window_seconds)
                if settings.rate_limit_enabled else None
            ),
        },
    )
    return app


def __getattr__(name: str):
    # `uvicorn ecom_backend.app:app` builds the application from the
    # environment on first access.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["create_app"]
