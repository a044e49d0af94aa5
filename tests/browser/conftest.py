"""Fixtures of the browser tests: the chain (browser_chain.start_chain) and headless Chromium tabs.

Chromium or playwright missing: the tests skip with the reason, except under CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser_chain import CHROMIUM, WAIT_MS, Chain, Tab, start_chain


def _no_browser(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser tests (install Debian's chromium and playwright)")
    pytest.skip(reason)


# Module scope, not session: playwright's sync API runs an event loop on the main thread while it is open, and the
# rest of the suite (asyncio.run in agent and simulator tests) must not find one; nor should a chain keep running.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), shared by a module's tests."""
    if not CHROMIUM.exists():
        _no_browser(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        yield chrome
        chrome.close()


@pytest.fixture(scope="module")
def chain(browser: Any) -> Iterator[Chain]:
    """The running chain, shared by a module's tests (started after the browser check: no chain without one)."""
    started = start_chain()
    yield started
    started.close()


@pytest.fixture
def live(chain: Chain) -> Iterator[Chain]:
    """The chain with an agent polling every machine, and no register overrides left behind."""
    chain.sim.reset()
    chain.start_agent()
    yield chain
    chain.sim.reset()


@pytest.fixture
def tab_factory(browser: Any, chain: Chain) -> Iterator[Callable[..., Tab]]:
    """Make tabs, each in a fresh browser context (own cookies); record=True keeps every response body."""
    contexts: list[Any] = []

    def make(viewport: dict[str, int] | None = None, record: bool = False) -> Tab:
        context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900}, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        tab = Tab(page, chain.base)

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                tab.errors.append(f"console: {msg.text} ({msg.location})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: tab.errors.append(f"pageerror: {exc}"))
        if record:

            def on_response(resp: Any) -> None:
                if resp.url.endswith("/v1/stream"):
                    return  # an open stream has no end to wait for: read on its own (browser_chain.stream_text)
                try:
                    tab.bodies.append((resp.url, resp.body()))
                except Exception as exc:  # a redirect has no body
                    tab.bodies.append((resp.url, f"<no body: {exc}>".encode()))

            page.on("response", on_response)
        return tab

    yield make
    for context in contexts:
        context.close()
