"""`python3 -m ecom_backend`: run the API with uvicorn, configured from the environment.

Equivalent to
  python3 -m uvicorn ecom_backend.app:app --host $API_HOST --port $API_PORT --workers $API_WORKERS
plus: the environment is checked before anything starts (a clear message and
exit 2 when DATABASE_URL is missing or a value is malformed), logs are JSON
from the first line, uvicorn's own access log is replaced by ours, and with
API_WORKERS > 1 the Prometheus samples of all workers are merged through a
PROMETHEUS_MULTIPROC_DIR under /tmp (removed on exit).
"""

import glob
import logging
import os
import shutil
import sys
import tempfile

from .config import load_settings_or_exit
from .logs import setup_logging
from .metrics import MULTIPROC_ENV


def _prepare_multiprocess_metrics(settings, log) -> str:
    """Return the directory we created (to remove at exit), or ''."""
    if settings.api_workers <= 1 or not settings.metrics_enabled:
        return ""
    existing = os.environ.get(MULTIPROC_ENV, "")
    if existing:
        os.makedirs(existing, exist_ok=True)
        for path in glob.glob(os.path.join(existing, "*.db")):
            os.unlink(path)
        return ""
    path = tempfile.mkdtemp(prefix="ecom-backend-metrics-", dir=tempfile.gettempdir())
    os.environ[MULTIPROC_ENV] = path
    log.info("merging metrics of %d workers" % settings.api_workers, extra={"dir": path})
    return path


def main() -> int:
    settings = load_settings_or_exit()
    log = setup_logging(settings, access_log=False)
    created = _prepare_multiprocess_metrics(settings, log)
    try:
        import uvicorn

        log.info(
            "starting uvicorn",
            extra={
                "host": settings.api_host,
                "port": settings.api_port,
                "workers": settings.api_workers,
                "database": settings.database_url_redacted,
            },
        )
        uvicorn.run(
            "ecom_backend.app:app",
            host=settings.api_host,
            port=settings.api_port,
            workers=settings.api_workers,
            log_config=None,
            log_level=settings.log_level,
            access_log=False,
            server_header=False,
            proxy_headers=True,
        )
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)
        logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
