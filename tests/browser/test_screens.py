"""Every screen in both languages: a screenshot saved as a test artifact ($SHOPFLOOR_ARTIFACTS, default
tests/browser/artifacts/), an axe-core scan run in the page (serious and critical violations fail: contrast, labels,
names), no console errors; and the language switch: labels and number formats change without a reload, and the
choice is remembered after signing out and in again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_chain import Chain, Tab, artifacts_dir, run_axe

from api.core.i18n import label

pytestmark = pytest.mark.browser

# screen -> (who signs in (None: nobody), path)
SCREENS: dict[str, tuple[str | None, str]] = {
    "signin": (None, "/signin"),
    "board": ("operator", "/board"),
    "board-kiosk": ("operator", "/board?kiosk=1"),
    "machine": ("operator", "/machines/cnc-01"),
    "reports": ("admin", "/reports"),
    "portal": ("acme", "/portal"),
}
SET_LANG = """async (lang) => {
  const csrf = JSON.parse(document.getElementById('boot').textContent).csrf;
  const r = await fetch('/v1/me/lang', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify({lang})});
  return r.status;
}"""


def _set_lang(tab: Tab, lang: str) -> None:
    """Store lang for the signed-in key (as the switch does) and reload the page in it."""
    assert tab.page.evaluate(SET_LANG, lang) == 200
    tab.page.reload()


def _november(tab: Tab) -> None:
    tab.page.fill("#range-from", "2026-11-01")
    tab.page.fill("#range-to", "2026-11-30")
    tab.testid("range-show").click()
    # The first load (this month so far) has invoices but no usage: wait for November's rows (or sessions).
    tab.page.wait_for_selector("[data-testid=usage-table], [data-testid=sessions-table]")
    tab.page.wait_for_selector("[data-testid=invoices-table]")


def _ready(tab: Tab, screen: str) -> None:
    """Wait until the screen has its data: the stream live, every tile filled, nothing still loading."""
    if screen in ("reports", "portal"):
        _november(tab)
    if screen != "signin" and screen != "reports":
        tab.page.wait_for_selector("[data-testid=conn-status][data-state=live]")
    if screen.startswith("board") or screen == "portal":
        tab.page.wait_for_function("() => ![...document.querySelectorAll('#board .tile')].some(t => !t.dataset.state)")
    tab.page.wait_for_function("() => !document.querySelector('#main [data-label=web_loading]')")
    assert tab.testid("page-error").is_hidden(), tab.testid("page-error").inner_text()


@pytest.fixture
def english(chain: Chain) -> Iterator[None]:
    """Every key back in English afterwards (the language is remembered per key)."""
    yield
    for who in ("operator", "admin", "acme"):
        # A bearer request needs no CSRF token.
        assert chain.call("POST", "/v1/me/lang", who, json={"lang": "en"}).status_code == 200


@pytest.mark.parametrize("lang", ["en", "id"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_screenshot_and_accessibility(
    screen: str, lang: str, live: Chain, tab_factory: Any, english: None
) -> None:
    who, path = SCREENS[screen]
    tab: Tab = tab_factory()
    if who is None:
        tab.open(f"{path}?lang={lang}")
    else:
        tab.sign_in(live.keys[who])
        tab.open(path)
        if tab.page.evaluate("document.documentElement.lang") != lang:
            _set_lang(tab, lang)
    assert tab.page.evaluate("document.documentElement.lang") == lang
    _ready(tab, screen)
    title = {"signin": "web_signin_title", "machine": "machine", "reports": "web_reports", "portal": "web_portal"}
    assert tab.testid("page-title").inner_text() == label(title.get(screen, "web_board"), lang)
    if screen == "board-kiosk":
        assert tab.page.evaluate("document.body.classList.contains('kiosk')")
    shot = artifacts_dir() / f"{screen}-{lang}.png"
    tab.page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    violations = run_axe(tab, f"{screen} ({lang})")
    assert violations == [], f"axe: {[(v['impact'], v['id'], len(v['nodes'])) for v in violations]} (printed above)"
    tab.no_console_errors()


def test_the_language_switch_changes_labels_and_formats_and_is_remembered(
    live: Chain, tab_factory: Any, english: None
) -> None:
    acme = next(i for i in live.get("/v1/invoices")["invoices"] if i["tenant"] == "acme")
    total = acme["total"]
    en_money, id_money = f"Rp {total:,}", "Rp " + f"{total:,}".replace(",", ".")
    tab: Tab = tab_factory()
    tab.sign_in(live.keys["admin"])
    tab.open("/reports")
    if tab.page.evaluate("document.documentElement.lang") != "en":
        _set_lang(tab, "en")
    _november(tab)
    invoices, usage = tab.testid("invoices-table"), tab.testid("usage-table")
    assert en_money in invoices.inner_text()
    hours_en = usage.locator("tbody tr").first.locator("td").nth(1).inner_text()  # session hours of a tenant
    assert re.fullmatch(r"\d+(\.\d+)? h", hours_en), hours_en
    assert tab.testid("page-title").inner_text() == label("web_reports", "en")
    tab.page.evaluate("window.__no_reload = 1")

    tab.testid("lang-switch").click()
    tab.page.wait_for_function("() => document.documentElement.lang === 'id'")
    shows = "(text) => document.querySelector('[data-testid=invoices-table]').innerText.includes(text)"
    tab.page.wait_for_function(shows, arg=id_money)
    assert en_money not in invoices.inner_text()
    assert tab.testid("page-title").inner_text() == label("web_reports", "id")
    assert tab.testid("nav-board").inner_text() == label("web_board", "id")
    hours_id = usage.locator("tbody tr").first.locator("td").nth(1).inner_text()
    # The same figure in the other format: "0.01 h" -> "0,01 jam".
    assert hours_id == hours_en.replace(".", ",").replace(" h", " jam"), (hours_en, hours_id)
    assert tab.page.evaluate("window.__no_reload") == 1, "the switch reloaded the page"
    tab.no_console_errors()

    # Remembered for the key: sign out, sign in again, the pages come in Bahasa Indonesia.
    with tab.page.expect_navigation():
        tab.testid("signout").click()
    assert tab.page.url.startswith(f"{live.base}/signin")
    tab.sign_in(live.keys["admin"])
    assert tab.page.evaluate("document.documentElement.lang") == "id"
    assert tab.testid("page-title").inner_text() == label("web_board", "id")


def test_the_scan_finds_what_it_looks_for(chain: Chain, tab_factory: Any) -> None:
    tab: Tab = tab_factory()
    tab.open("/signin")
    # Light grey on white and an input with no label: a contrast failure (serious) and a label failure (critical).
    tab.page.evaluate(
        """() => {
          const p = document.createElement('p'); p.textContent = 'faint text'; p.style.color = '#d0d0d0';
          p.style.background = '#ffffff'; document.querySelector('main').append(p);
          document.querySelector('main').append(document.createElement('input'));
        }"""
    )
    found = {v["id"] for v in run_axe(tab, "signin (planted faults)")}
    assert {"color-contrast", "label"} <= found, found
