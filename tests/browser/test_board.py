"""The fleet board in headless Chromium on the real chain: it loads live with no console errors, a register change at
the simulator reaches its tile without a reload, and a tile goes grey with "no data since hh:mm" and the reason when
the PLC stops answering and when the agent is killed (SIGKILL: the broker's last will).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from browser_chain import Chain, Tab

from api.core.i18n import label

pytestmark = pytest.mark.browser

HHMM = re.compile(r"\b([01]\d|2[0-3]):[0-5]\d\b")


def _board(tab_factory: Any, chain: Chain, who: str = "operator") -> Tab:
    tab: Tab = tab_factory()
    tab.sign_in(chain.keys[who])
    assert tab.page.url == f"{chain.base}/board"  # GET / sends an operator to the board
    tab.page.wait_for_selector("[data-testid=conn-status][data-state=live]")
    # A marker a reload would lose: every change below must arrive through the stream.
    tab.page.evaluate("window.__no_reload = 1")
    return tab


def _tile(tab: Tab, machine: str) -> Any:
    return tab.testid(f"tile-{machine}")


def _wait_state(tab: Tab, machine: str, state: str) -> None:
    tab.page.wait_for_selector(f"[data-testid=tile-{machine}][data-state={state}]")


def _grey(tab: Tab, selector: str) -> bool:
    rgb = tab.page.eval_on_selector(selector, "el => getComputedStyle(el).backgroundColor")
    r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
    return r == g == b


def _still_same_page(tab: Tab) -> None:
    assert tab.page.evaluate("window.__no_reload") == 1, "the page reloaded"


def test_board_loads_live_with_every_tile_and_no_console_errors(live: Chain, tab_factory: Any) -> None:
    tab = _board(tab_factory, live)
    for machine in live.site.machines:
        # The quiet scenario: every machine IDLE and free.
        _wait_state(tab, machine.id, "IDLE")
        tile = _tile(tab, machine.id)
        assert tile.get_by_test_id("tile-state").inner_text() == label("state_idle", "en")
        assert tile.get_by_test_id("tile-tenant").inner_text() == label("web_free", "en")
        assert tile.get_by_test_id("tile-nodata").is_hidden()
    assert tab.testid("page-title").inner_text() == label("web_board", "en")
    assert tab.testid("conn-status").inner_text() == label("web_live", "en")
    tab.page.wait_for_timeout(1500)  # let the age ticker run a round: errors there count too
    tab.no_console_errors()


def test_a_register_change_at_the_simulator_appears_on_its_tile(live: Chain, tab_factory: Any) -> None:
    tab = _board(tab_factory, live)
    _wait_state(tab, "brake-01", "IDLE")
    live.sim.set("brake-01", state="MAINTENANCE")
    _wait_state(tab, "brake-01", "MAINTENANCE")
    assert _tile(tab, "brake-01").get_by_test_id("tile-state").inner_text() == label("state_maintenance", "en")
    # acme's badge (1001) and a job at cnc-01: the tile names the tenant (its name from the business DB) and job.
    live.sim.set("cnc-01", state="RUNNING", badge=1001, job="ACME-777", power_kw=7.5)
    _wait_state(tab, "cnc-01", "RUNNING")
    tile = _tile(tab, "cnc-01")
    tab.page.wait_for_function(
        "() => document.querySelector('[data-testid=tile-cnc-01] [data-testid=tile-job]').textContent === 'ACME-777'"
    )
    assert tile.get_by_test_id("tile-tenant").inner_text() == "PT Acme Presisi"
    assert tile.get_by_test_id("tile-power").inner_text() == "7.5 kW"
    _still_same_page(tab)
    tab.no_console_errors()


def test_a_tile_goes_grey_when_the_plc_stops_answering(live: Chain, tab_factory: Any) -> None:
    tab = _board(tab_factory, live)
    _wait_state(tab, "laser-01", "IDLE")
    assert not _grey(tab, "[data-testid=tile-laser-01] [data-testid=tile-state]")
    live.sim.silence("laser-01", True)
    _wait_state(tab, "laser-01", "UNKNOWN")
    tile = _tile(tab, "laser-01")
    nodata = tile.get_by_test_id("tile-nodata")
    assert nodata.is_visible()
    text = nodata.inner_text()
    assert text.startswith("No data since ") and HHMM.search(text), text
    assert label("web_reason_unreachable", "en") in text, text
    assert tile.get_by_test_id("tile-state").inner_text() == label("state_unknown", "en")
    assert _grey(tab, "[data-testid=tile-laser-01]")
    assert _grey(tab, "[data-testid=tile-laser-01] [data-testid=tile-state]")
    # The other machines are still polled fine.
    assert _tile(tab, "cnc-02").get_attribute("data-state") == "IDLE"
    live.sim.silence("laser-01", False)
    _wait_state(tab, "laser-01", "IDLE")
    assert nodata.is_hidden()
    _still_same_page(tab)
    tab.no_console_errors()


def test_every_tile_goes_grey_when_the_agent_is_killed(live: Chain, tab_factory: Any) -> None:
    tab = _board(tab_factory, live)
    for machine in live.site.machines:
        _wait_state(tab, machine.id, "IDLE")
    live.kill_agent()
    for machine in live.site.machines:
        _wait_state(tab, machine.id, "UNKNOWN")
        text = _tile(tab, machine.id).get_by_test_id("tile-nodata").inner_text()
        assert text.startswith("No data since ") and HHMM.search(text), text
        assert label("web_reason_agent_offline", "en") in text, text
        assert _grey(tab, f"[data-testid=tile-{machine.id}]")
    # A new agent brings them back, on the same page.
    live.start_agent()
    for machine in live.site.machines:
        _wait_state(tab, machine.id, "IDLE")
    _still_same_page(tab)
    tab.no_console_errors()
