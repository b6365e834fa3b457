"""The browser tests' one set-up: Debian's Chromium driven by Playwright, and the guard every page runs under.

* ``ARGS``: how Chromium is launched (no sandbox in containers, nothing phoning home).
* ``browser``: a module-scoped fixture (import it into a test module); ``launch()`` for a test module
  that needs its own fixture (one that checks more before starting) or a browser of its own.
  A missing Chromium or Playwright FAILS the test, never skips it: these tests are what prove the web
  client works.
* ``Watch``: what a context's pages did wrong — console errors (but those a test names in
  ``watch.allowed``), uncaught page errors, 5xx answers, and requests to any host but the test's
  servers (blocked and recorded).  ``watch.check()`` fails the test on any of them;
  ``with watch.allowing(pattern):`` expects console errors (a refused request the browser logs).
* ``watched_context``/``checked_context``/``checked_page``: contexts and pages under a ``Watch``;
  ``sign_in``/``signed_in_context``: the sign-in form filled as a user would.
* ``DESKTOP``/``PHONE``/``VIEWPORTS``, ``TIMEOUT``, ``SHOTS``/``shoot``: the sizes, the wait and the
  screenshots (``$OPUS_ARTIFACTS_DIR/screenshots``, default ``test-artifacts/screenshots``).
* ``axe_violations``: serious and critical axe-core findings on a page (``require_axe`` fails the test
  when node_modules/axe-core is missing).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from opus.settings import REPO_ROOT

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
Viewport = dict[str, int]
DESKTOP: Viewport = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
#: Playwright's wait for one action (ms).
TIMEOUT = 20_000
SHOTS = Path(os.environ.get("OPUS_ARTIFACTS_DIR") or REPO_ROOT / "test-artifacts") / "screenshots"
#: axe-core, a test tool from package-lock.json (node_modules), never served by /web/lib.
AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
#: The home page has drawn its definitions (none is an answer too): a signed-in page is ready.
HOME_READY = "#definitions:not([aria-busy])"
#: A pattern that matches nothing: no console error is allowed.
NOTHING = re.compile(r"(?!)")


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: pip install -e '.[test]'")
    return sync_playwright


@contextmanager
def launch() -> Iterator[Any]:
    """Debian's Chromium through Playwright, closed on leaving; a missing one fails the test."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: scripts/setup.sh --test installs it")
    with _sync_playwright()() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the test module (import this fixture into the module)."""
    with launch() as chromium:
        yield chromium


def require_axe() -> str:
    """The source of axe-core, to evaluate in a page; a missing one fails the test."""
    if not AXE.exists():
        pytest.fail("node_modules/axe-core is missing: run npm ci (scripts/setup.sh does)")
    return AXE.read_text(encoding="utf-8")


#: The axe-core impacts that fail a page.
BLOCKING = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is (WCAG 2.x A and AA, best practices).
    axe-core runs through the DevTools protocol, which the page's CSP does not govern."""
    page.evaluate(require_axe())
    result = page.evaluate("""async () => {
      const r = await axe.run(document, {resultTypes: ["violations"]});
      return r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => n.target.join(" ") + ": " + n.failureSummary.split("\\n").slice(0, 2).join(" "))}));
    }""")
    return [v for v in result if v["impact"] in BLOCKING]


class Watch:
    """What a context's pages did wrong: console errors, page errors, outside requests, 5xx."""

    def __init__(self, hosts: Iterable[str]):
        self.hosts = set(hosts)
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.allowed = NOTHING  # console errors a test expects (none by default)

    def guard(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).netloc in self.hosts:
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def attach(self, page: Any) -> None:
        page.on("console", lambda message: self._console(page, message))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error} ({page.url})"))
        page.on("response", self._response)

    def _console(self, page: Any, message: Any) -> None:
        if message.type == "error" and not self.allowed.search(message.text):
            self.errors.append(f"console: {message.text} ({page.url})")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.errors.append(f"HTTP {response.status}: {response.url}")

    @contextmanager
    def allowing(self, pattern: str) -> Iterator[None]:
        """Console errors matching ``pattern`` are expected inside the block (a refused request the
        browser logs); the default (none) is back after it."""
        self.allowed = re.compile(pattern)
        try:
            yield
        finally:
            self.allowed = NOTHING

    def check(self) -> None:
        assert not self.outside, f"requests to other hosts: {self.outside}"
        assert not self.errors, "\n".join(self.errors)


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def watched_context(browser: Any, *urls: str, viewport: Viewport | None = None, **options: Any) -> Any:
    """A context whose pages may reach only the servers at ``urls``, under a ``Watch`` (``context.watch``).
    ``viewport`` defaults to DESKTOP; ``options`` go to ``browser.new_context``."""
    watch = Watch(host_of(url) for url in urls)
    context = browser.new_context(viewport=viewport or DESKTOP, **options)
    context.set_default_timeout(TIMEOUT)
    context.route("**/*", watch.guard)
    context.on("page", watch.attach)
    context.watch = watch
    return context


@contextmanager
def checked_context(browser: Any, *urls: str, viewport: Viewport | None = None, **options: Any) -> Iterator[Any]:
    """``watched_context``, closed and checked on leaving the block."""
    context = watched_context(browser, *urls, viewport=viewport, **options)
    try:
        yield context
    finally:
        context.close()
    context.watch.check()


@contextmanager
def checked_page(context: Any) -> Iterator[Any]:
    """A new page of a watched context; the watch's errors so far are cleared, and checked on leaving."""
    page = context.new_page()
    context.watch.errors.clear()
    try:
        yield page
    finally:
        page.close()
    context.watch.check()


def fill_sign_in(page: Any, name: str, secret: str) -> None:
    """Fill the sign-in form shown by ``page`` and submit it."""
    page.fill("#signin-name", name)
    page.fill("#signin-token", secret)
    page.click("#signin-form button[type=submit]")


def sign_in(page: Any, url: str, name: str, secret: str, ready: str | None = HOME_READY) -> None:
    """Sign in through the form at ``url``/web/signin; wait for ``ready`` (the home page) unless None."""
    page.goto(f"{url}/web/signin")
    fill_sign_in(page, name, secret)
    if ready:
        page.wait_for_selector(ready)


def signed_in_context(browser: Any, url: str, name: str, secret: str, *other_urls: str,
                      viewport: Viewport | None = None, **options: Any) -> Any:
    """A watched context (``url`` and ``other_urls`` allowed) signed in as ``name`` through the form."""
    context = watched_context(browser, url, *other_urls, viewport=viewport, **options)
    page = context.new_page()
    sign_in(page, url, name, secret)
    page.close()
    return context


def shoot(page: Any, name: str, settle_ms: int = 0) -> None:
    """Screenshots of the page as it is, at desktop and at phone width (``name``-desktop/-phone.png);
    ``settle_ms`` lets a page redraw after a resize.  The page's size is restored."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    size = page.viewport_size
    for label, viewport in VIEWPORTS.items():
        page.set_viewport_size(viewport)
        if settle_ms:
            page.wait_for_timeout(settle_ms)
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(size)


def shoot_as_is(page: Any, name: str, label: str) -> None:
    """One screenshot at the page's current size (``name``-``label``.png)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
