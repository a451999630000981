"""Driving the web console in Debian's headless chromium with Playwright: a browser that
collects every JavaScript error, console error and request to anywhere but the API
server, and keeps a screenshot of each page it is asked to (test artifacts under the
test's tmp dir)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, Request, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = "#main[data-ready='true']"


@dataclass
class Browser:
    page: Page
    base: str
    shots: Path
    errors: list[str] = field(default_factory=list)

    def open(self, route: str, name: str | None = None) -> Page:
        """Go to ``#/route``, wait until the page is drawn, keep its screenshot."""
        self.page.goto(f"{self.base}/console/#/{route}")
        self.page.wait_for_selector(f"{READY}[data-page='{route.split('/')[0].split('?')[0]}']")
        self.shot(name or re.sub(r"[^a-z0-9]+", "-", route.lower()).strip("-"))
        return self.page

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def browser(base: str, shots: Path) -> Iterator[Browser]:
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            # clrk dev's serving certificate is from its own CA, which this profile lacks.
            context = chromium.new_context(ignore_https_errors=True,
                                           viewport={"width": 1400, "height": 900})
            page = context.new_page()
            b = Browser(page, base, shots)

            def console(msg: ConsoleMessage) -> None:
                # A 401 before logging in is the gate working, not a script error.
                if msg.type == "error" and "401" not in msg.text:
                    b.errors.append(f"console: {msg.text}")

            def page_error(err: Any) -> None:
                b.errors.append(f"page error: {err}")

            def request(req: Request) -> None:
                # Everything the console loads is served by clrk itself (no CDN).
                if not req.url.startswith((f"{base}/", "data:", "blob:")):
                    b.errors.append(f"request off the API server: {req.url}")

            page.on("console", console)
            page.on("request", request)
            page.on("pageerror", page_error)
            yield b
        finally:
            chromium.close()
