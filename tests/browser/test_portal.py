"""The tenant portal in headless Chromium: acme sees its own sessions and invoices, and nothing of batik's or cipta's
reaches the browser: not in the page, not in any response body (HTML, JSON, static), not in the SSE stream, while
batik works live at another machine with a job and counts only batik may see.

History (November 2026, the two-tenant scenario): acme on cnc-01 02:00:02-02:00:28 UTC, batik on cnc-01 from
02:00:32, cipta on laser-01; one draft invoice each (amounts read from the admin's JSON).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from browser_chain import Chain, Tab, stream_text

from api.core.i18n import label

pytestmark = pytest.mark.browser

SECRET_JOB = "BATIK-SECRET"
SECRET_COUNT = 987_654_321
SECRET_POWER = 9.25


def _formats(amount: int) -> list[str]:
    # The digits bare and with either thousands separator (en "194,568", id "194.568").
    return [str(amount), f"{amount:,}", f"{amount:,}".replace(",", ".")]


def _secrets(chain: Chain) -> tuple[list[str], list[re.Pattern[str]]]:
    """What acme must never receive: other tenants' ids, names, badges, jobs, amounts, session times."""
    texts = ["batik", "Batik", "cipta", "Cipta", "BATIK-07", "CIPTA-LZ1", SECRET_JOB, str(SECRET_COUNT), "987654"]
    texts.append("9.25")
    invoices = chain.get("/v1/invoices")["invoices"]
    others = [i for i in invoices if i["tenant"] != "acme"]
    assert {i["tenant"] for i in others} == {"batik", "cipta"}, invoices
    for inv in others:
        for key in ("total", "subtotal", "tax"):
            texts += _formats(inv[key])
    sessions = chain.get("/v1/sessions", **{"from": "2026-11-01T00:00:00+07:00", "to": "2026-12-01T00:00:00+07:00"})
    for s in sessions["sessions"]:
        if s["tenant"] != "acme":
            texts.append(s["start"][:19])  # 2026-11-02T02:00:32
    # Badges as whole numbers: random tokens (CSRF) are word characters, so \b keeps "2001" from matching inside one.
    badges = [re.compile(rf"\b{b}\b") for b in (2001, 2002, 3001, 3002)]
    return texts, badges


def _leaks(text: str, texts: list[str], badges: list[re.Pattern[str]]) -> list[str]:
    found = [t for t in texts if t in text]
    found += [p.pattern for p in badges if p.search(text)]
    return found


def _first_event(chain: Chain, who: str) -> str:
    """The first event of who's stream (the snapshot), read with its bearer key."""
    headers = {"Authorization": f"Bearer {chain.keys[who]}"}
    with httpx.stream("GET", f"{chain.base}/v1/stream", headers=headers, timeout=30) as resp:
        text = ""
        for chunk in resp.iter_text():
            text += chunk
            if "event: snapshot" in text and "\n\n" in text.split("event: snapshot", 1)[1]:
                return text
    raise AssertionError(f"{who}'s stream ended before its snapshot: {text[:300]}")


def _drop_ids(sse: str) -> str:
    # id: lines are the hub's sequence numbers, not data.
    return "\n".join(line for line in sse.split("\n") if not line.startswith("id: "))


def test_a_tenant_sees_only_its_own_in_page_json_and_stream(live: Chain, tab_factory: Any) -> None:
    texts, badges = _secrets(live)
    acme_invoice = next(i for i in live.get("/v1/invoices")["invoices"] if i["tenant"] == "acme")
    # batik works at cnc-02 right now; acme at cnc-01.
    live.sim.set("cnc-02", state="RUNNING", badge=2001, job=SECRET_JOB, good_count=SECRET_COUNT, power_kw=SECRET_POWER)
    live.wait_hub(lambda now: now["cnc-02"].view.job == SECRET_JOB, "batik's job at cnc-02")

    tab: Tab = tab_factory(record=True)
    tab.sign_in(live.keys["acme"])
    assert tab.page.url == f"{live.base}/portal"
    tab.page.wait_for_selector("[data-testid=conn-status][data-state=live]")
    other = tab.testid("tile-cnc-02")
    tab.page.wait_for_selector("[data-testid=tile-cnc-02][data-state=HIDDEN]")
    assert other.get_by_test_id("tile-state").inner_text() == label("web_occupied", "en")
    assert other.get_by_test_id("tile-tenant").inner_text() == label("web_occupied", "en")
    assert other.get_by_test_id("tile-job").inner_text() == "-"

    # November: acme's session and invoice.
    tab.page.fill("#range-from", "2026-11-01")
    tab.page.fill("#range-to", "2026-11-30")
    tab.testid("range-show").click()
    table = tab.testid("sessions-table")
    table.wait_for()
    tab.page.wait_for_selector("[data-testid=invoices-table]")
    rows = table.locator("tbody tr")
    assert rows.count() == 1, table.inner_text()  # acme's one session; batik's on the same machine is not shown
    assert "PT Acme Presisi" in rows.first.inner_text()
    assert f"Rp {acme_invoice['total']:,}" in tab.testid("invoices-table").inner_text()
    assert tab.testid(f"invoice-pdf-{acme_invoice['id']}").count() == 1
    parts = f"5 {label('good', 'en')} / 4 {label('reject', 'en')}"  # acme's one session: 5 good, 4 reject
    assert tab.testid("summary-parts").text_content() == parts

    # acme's own machine changes live, then the stream is read with the page's own cookie.
    live.sim.set("cnc-01", state="RUNNING", badge=1001, job="ACME-OWN")
    tab.page.wait_for_function(
        "() => document.querySelector('[data-testid=tile-cnc-01] [data-testid=tile-job]').textContent === 'ACME-OWN'"
    )
    sse = _drop_ids(stream_text(tab, 2500))
    assert "event: snapshot" in sse and "ACME-OWN" in sse and '"cnc-02"' in sse, sse[:500]

    bodies = [(url, body.decode("utf-8", "replace")) for url, body in tab.bodies]
    assert any("/v1/invoices" in url for url, _ in bodies) and any("/v1/sessions" in url for url, _ in bodies)
    for url, body in bodies:
        assert _leaks(body, texts, badges) == [], f"{url} carried another tenant's data"
    assert _leaks(sse, texts, badges) == [], "the stream carried another tenant's data"
    assert _leaks(tab.page.content(), texts, badges) == [], "the page shows another tenant's data"
    tab.no_console_errors()

    # The searches can find what they look for: the admin's stream and JSON have it all.
    admin = live.call("GET", "/v1/invoices").text + _first_event(live, "admin")
    assert {"batik", "cipta", SECRET_JOB} <= set(_leaks(admin, texts, badges)) and badges[0].search(admin)


def test_a_tenant_asking_for_another_tenants_objects_gets_not_found(live: Chain) -> None:
    invoices = live.get("/v1/invoices")["invoices"]
    batik = next(i for i in invoices if i["tenant"] == "batik")
    nosuch = max(i["id"] for i in invoices) + 100
    for path in (f"/v1/invoices/{batik['id']}", f"/v1/invoices/{batik['id']}.pdf"):
        mine, missing = live.call("GET", path, "acme"), live.call("GET", path.replace(str(batik["id"]), str(nosuch)))
        assert (mine.status_code, missing.status_code) == (404, 404), (path, mine.text)
        assert "batik" not in mine.text.lower()
    # acme's own key listing the tenants' sessions gets its own only.
    got = live.get("/v1/sessions", "acme", **{"from": "2026-11-01T00:00:00+07:00", "to": "2026-12-01T00:00:00+07:00"})
    assert {s["tenant"] for s in got["sessions"]} == {"acme"}
