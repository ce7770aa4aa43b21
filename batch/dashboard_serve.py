"""``c360 dashboard --serve``: the dashboard on a local web server, its streaming views kept current.

One Spark session reads the lake. Every ``dashboard.refresh_seconds`` the server looks at the stream tables'
versions and, when one moved, recomputes the streaming views, which the page fetches from ``/api/live`` and
redraws in place. Every ``GOLD_CHECK_S`` it looks at the gold tables' versions and rebuilds the whole page when a
gold run has written (the open page reloads itself). It listens on ``dashboard.host`` (127.0.0.1 unless
configured otherwise) and serves only GET ``/``, ``/api/live`` and ``/healthz``.
"""

from __future__ import annotations

import errno
import json
import logging
import signal
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pyspark.sql import SparkSession

from batch import dashboard
from batch import dashboard_data as dd
from lakehouse.config import Config
from lakehouse.errors import C360Error

log = logging.getLogger(__name__)
GOLD_CHECK_S = 30.0  # how often the gold tables' versions are looked at
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class DashboardServer:
    """The page and its live views, rebuilt in a background thread and served from memory."""

    def __init__(self, cfg: Config, spark: SparkSession | None = None, *, host: str | None = None,
                 port: int | None = None, refresh_seconds: float | None = None, mask_pii: bool | None = None,
                 gold_check_seconds: float = GOLD_CHECK_S):
        """Binds the port at once (a port in use fails before Spark starts); ``start()`` builds and serves."""
        self.spark, self.cfg, self.mask_pii = spark, cfg, mask_pii
        self.host = host or cfg.dashboard.host
        self.refresh_seconds = refresh_seconds or cfg.dashboard.refresh_seconds
        self.gold_check_seconds = gold_check_seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._page = b""
        self._live = b"{}"
        self.page_version = 0
        self._live_versions: dict[str, int | None] = {}
        self._gold_versions: dict[str, int | None] = {}
        try:
            self.httpd = ThreadingHTTPServer((self.host, cfg.dashboard.port if port is None else port),
                                             _handler(self))
        except OSError as exc:
            wanted = f"{self.host}:{cfg.dashboard.port if port is None else port}"
            if exc.errno == errno.EADDRINUSE:
                raise C360Error(f"cannot serve the dashboard on {wanted}: the port is in use "
                                "(choose another with --port or dashboard.port)") from None
            raise C360Error(f"cannot serve the dashboard on {wanted}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        if self.host not in LOCAL_HOSTS:
            log.warning("the dashboard listens on %s: anyone who can reach this address can read it", self.host)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def _versions(self, tables) -> dict[str, int | None]:
        lake = dd.Lake(self.spark, self.cfg.lake.root)
        return {t: lake.info(t).version for t in tables}

    def rebuild_page(self) -> None:
        page = dashboard.build(self.spark, self.cfg, mask_pii=self.mask_pii)
        with self._lock:
            self.page_version += 1
            self._page = dashboard.render(page, live={"url": "/api/live", "seconds": self.refresh_seconds},
                                          page_version=self.page_version).encode()
            self._live_versions = dict(page.live_version)
            self._set_live([v for v in page.views if v.live])

    def rebuild_live(self) -> None:
        views = dashboard.build_live(self.spark, self.cfg)
        with self._lock:
            self._set_live(views)

    def _set_live(self, views) -> None:
        self._live = dashboard.script_json({
            "page_version": self.page_version, "updated_at": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}",
            "views": {v.id: v.spec() for v in views}}).encode()

    def tick(self, *, check_gold: bool) -> None:
        """One refresh: the streaming views when a stream table moved; the page when a gold table did."""
        if check_gold:
            gold = self._versions(dashboard.GOLD_TABLES)
            if gold != self._gold_versions:
                self._gold_versions = gold
                self.rebuild_page()
                return
        live = self._versions(dashboard.LIVE_TABLES)
        if live != self._live_versions:
            self._live_versions = live
            self.rebuild_live()

    def _loop(self) -> None:
        last_gold = time.monotonic()
        while not self._stop.wait(self.refresh_seconds):
            due = time.monotonic() - last_gold >= self.gold_check_seconds
            try:
                self.tick(check_gold=due)
            except Exception as exc:  # noqa: BLE001 - keep serving the last good page; say what failed
                from lakehouse import engine

                if engine.session_ended(exc):  # idle past the engine's timeout: the next refresh redoes this one
                    log.warning("the embedded engine ended the dashboard's session: the next refresh opens a new one")
                    self.spark = engine.get_session(self.cfg, "c360-dashboard", new=True)
                    self._gold_versions, self._live_versions = {}, {}
                    continue
                log.exception("dashboard refresh failed; serving the previous data")
            if due:
                last_gold = time.monotonic()

    def start(self) -> DashboardServer:
        """Build the page, then serve it and refresh it in background threads."""
        if self.spark is None:
            from lakehouse.engine import get_session

            self.spark = get_session(self.cfg, "c360-dashboard")
        self._gold_versions = self._versions(dashboard.GOLD_TABLES)
        self.rebuild_page()
        threading.Thread(target=self.httpd.serve_forever, name="dashboard-http", daemon=True).start()
        self._thread = threading.Thread(target=self._loop, name="dashboard-refresh", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wait(self) -> None:
        """Block until ``stop()`` (from a signal handler or another thread)."""
        while not self._stop.wait(0.5):
            pass

    def body(self, path: str) -> tuple[int, str, bytes]:
        route = path.split("?", 1)[0]
        with self._lock:
            if route in ("/", "/index.html"):
                return 200, "text/html; charset=utf-8", self._page
            if route == "/api/live":
                return 200, "application/json", self._live
        if route == "/healthz":
            return 200, "application/json", json.dumps({"ok": True, "page_version": self.page_version}).encode()
        return 404, "text/plain; charset=utf-8", b"not found\n"


def _handler(server: DashboardServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "c360-dashboard"
        sys_version = ""

        def do_GET(self):  # noqa: N802 - http.server's naming
            status, ctype, body = server.body(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # noqa: A002 - http.server's signature
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def serve(cfg: Config, *, host: str | None = None, port: int | None = None, refresh_seconds: float | None = None,
          mask_pii: bool | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    server = DashboardServer(cfg, host=host, port=port, refresh_seconds=refresh_seconds, mask_pii=mask_pii)
    server.start()
    previous = signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop).start())
    print(f"serving the dashboard on {server.url} (streaming views refresh every {server.refresh_seconds:g} s; "
          "Ctrl-C stops)", flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("dashboard server stopped")
    return 0
