"""Headless Chromium for the workers: one browser per process and a pool of warm sessions."""

from worker.browser._launcher import BrowserLauncher
from worker.browser._pool import BrowserPool, PoolStats
from worker.browser._session import BrowserSession, RequestTemplate

__all__ = ["BrowserLauncher", "BrowserPool", "BrowserSession", "PoolStats", "RequestTemplate"]
