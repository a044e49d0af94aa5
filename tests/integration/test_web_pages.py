"""The HTML pages over a real business DB (SQLite and PostgreSQL), signed in through POST /signin: who may open
which page, the security headers, the boot JSON in the viewer's language, escaping of hostile names and ids, the
static files (types, caching, nothing outside static/ reachable), GET /v1/machines/{id}/profile, and fmt.js run in
node against api/core/i18n.py (the browser must format exactly as the invoices do).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.core import i18n
from api.core.i18n import LABELS, LANGS, label
from api.db import crud
from api.db.engine import open_engine, sessions
from api.policy import Role
from api.web import auth_routes, pages
from api.web.pages import PAGE_LABELS, STATIC_DIR, stop_reason_names
from shopfloor.config import SiteConfig
from shopfloor.memstore import MemoryStore

pytestmark = pytest.mark.integration

JKT = ZoneInfo("Asia/Jakarta")
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=JKT)
HOSTILE_NAME = "</script><script>alert('x')</script>&<b>\"quoted\""
WHO = {
    "admin": (Role.ADMIN, None),
    "operator": (Role.OPERATOR, None),
    "auditor": (Role.AUDITOR, None),
    "acme": (Role.TENANT, "acme"),
}
PAGES = {"/board": "board", "/machines/cnc-01": "machine", "/reports": "reports", "/portal": "portal"}
# Who may open which page (200), everyone else signed in gets the 403 page. Why: the board is the floor's
# (operators, admin); the machine view is history, which the auditor reads too; reports hold money (no operator);
# the portal is a tenant's own.
ALLOWED = {
    "/board": {"admin", "operator"},
    "/machines/cnc-01": {"admin", "operator", "auditor"},
    "/reports": {"admin", "auditor"},
    "/portal": {"acme"},
}


@dataclass
class World:
    """The app over a fresh business DB with one key per role, and a signed-in client per role."""

    app: Any
    db: sessionmaker[Session]
    keys: dict[str, str] = field(default_factory=dict)

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)

    def signed_in(self, who: str) -> TestClient:
        c = self.client()
        r = c.post("/signin", data={"key": self.keys[who]})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        return c


def hostile_site(site: SiteConfig) -> SiteConfig:
    machines = [site.machines[0].model_copy(update={"name": HOSTILE_NAME}), *site.machines[1:]]
    return site.model_copy(update={"tenants": [], "api_keys": [], "machines": machines})


@pytest.fixture
def world(migrated_db_url: str, example_site: SiteConfig) -> Iterator[World]:
    engine = open_engine(migrated_db_url)
    factory = sessions(engine)
    app = create_app(hostile_site(example_site), MemoryStore(), db=factory, clock=lambda: NOW)
    auth_routes.include(app)
    pages.include(app)
    w = World(app, factory)
    with factory() as s:
        crud.create_tenant(s, tenant_id="acme", name="PT Acme <Presisi> & Co", now_ms=0)
        crud.create_tenant(s, tenant_id="batik", name="CV Batik Logam", now_ms=0)
        for who, (role, tenant) in WHO.items():
            w.keys[who] = crud.create_key(s, name=f"{who}-key", role=role, tenant_id=tenant, now_ms=0)[1]
        s.commit()
    yield w
    engine.dispose()


class Page(HTMLParser):
    """The parts of a page the tests look at: the html lang, the boot JSON, script and stylesheet URLs, ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.lang: str | None = None
        self.boot_text: str | None = None
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.testids: set[str] = set()
        self.inline_scripts = 0
        self._in_boot = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if a.get("data-testid"):
            self.testids.add(a["data-testid"] or "")
        if tag == "script":
            if a.get("id") == "boot":
                assert a.get("type") == "application/json"
                self._in_boot = True
                self.boot_text = ""
            elif a.get("src"):
                assert a.get("type") == "module"
                self.scripts.append(a["src"] or "")
            else:
                self.inline_scripts += 1
        if tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_boot = False

    def handle_data(self, data: str) -> None:
        if self._in_boot:
            self.boot_text = (self.boot_text or "") + data

    @property
    def boot(self) -> dict[str, Any]:
        assert self.boot_text is not None, "no boot JSON"
        data: dict[str, Any] = json.loads(self.boot_text)
        return data


def check_headers(r: Any) -> None:
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["cache-control"] == "no-store"


# ---- who may open which page --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PAGES))
def test_signed_out_viewers_are_sent_to_sign_in(world: World, path: str) -> None:
    r = world.client().get(path)
    assert r.status_code == 303
    assert r.headers["location"] == "/signin"


def test_pages_open_for_their_roles_and_refuse_the_others(world: World) -> None:
    for who in WHO:
        c = world.signed_in(who)
        for path, page in PAGES.items():
            r = c.get(path)
            check_headers(r)
            parsed = Page(r.text)
            assert parsed.inline_scripts == 0  # the CSP would block one: everything runs from /static
            if who in ALLOWED[path]:
                assert r.status_code == 200, (who, path)
                assert parsed.boot["page"] == page
                assert parsed.boot["me"]["role"] == WHO[who][0].value
                assert {"board", "tile-cnc-01"} <= parsed.testids if page in ("board", "portal") else True
            else:
                assert r.status_code == 403, (who, path)
                assert "forbidden" in parsed.testids
                assert parsed.boot["page"] == "error"


@pytest.mark.parametrize(
    ("who", "home"), [("admin", "/board"), ("operator", "/board"), ("auditor", "/reports"), ("acme", "/portal")]
)
def test_home_sends_each_role_to_its_page(world: World, who: str, home: str) -> None:
    c = world.signed_in(who)
    r = c.get("/")
    assert (r.status_code, r.headers["location"]) == (303, home)
    r = c.get("/signin")  # signed in already: no form, straight home
    assert (r.status_code, r.headers["location"]) == (303, home)
    assert world.client().get("/").headers["location"] == "/signin"


def test_board_page_carries_the_ids_the_browser_tests_use(world: World) -> None:
    parsed = Page(world.signed_in("operator").get("/board").text)
    assert {"lang-switch", "kiosk-toggle", "signout", "conn-status", "board", "page-title", "page-error"} <= (
        parsed.testids
    )
    for m in ("cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"):
        assert f"tile-{m}" in parsed.testids
    for field_ in ("tile-state", "tile-nodata", "tile-tenant", "tile-job", "tile-parts", "tile-oee", "tile-power"):
        assert field_ in parsed.testids


# ---- language -------------------------------------------------------------------------------------------------------


def boot_of(c: TestClient, path: str) -> dict[str, Any]:
    r = c.get(path)
    assert r.status_code == 200, r.text
    parsed = Page(r.text)
    assert parsed.lang == parsed.boot["lang"]
    return parsed.boot


@pytest.mark.parametrize("path", list(PAGES))
def test_boot_labels_are_the_tables_in_both_languages(world: World, path: str) -> None:
    who = next(iter(ALLOWED[path]))
    boot = boot_of(world.signed_in(who), path)
    assert boot["lang"] == "en"
    assert set(boot["labels"]) == set(LANGS)
    page = PAGES[path]
    for key in PAGE_LABELS[page]:
        for lang in LANGS:
            assert boot["labels"][lang][key] == label(key, lang)
    assert boot["site"] == {"id": "bdg", "name": "Bandung Shared Factory", "timezone": "Asia/Jakarta"}
    assert boot["now_ms"] == int(NOW.timestamp() * 1000)
    assert isinstance(boot["csrf"], str) and len(boot["csrf"]) >= 32


def test_language_switch_is_remembered_and_renders_the_page_in_it(world: World) -> None:
    c = world.signed_in("operator")
    boot = boot_of(c, "/board")
    r = c.post("/v1/me/lang", json={"lang": "id"}, headers={"X-CSRF-Token": boot["csrf"]})
    assert r.status_code == 200, r.text
    r = c.get("/board")
    assert '<html lang="id">' in r.text
    assert ">Papan mesin</" in r.text  # the title, server-rendered in Indonesian
    assert Page(r.text).boot["lang"] == "id"
    # the switch offers the other language, named in that language
    assert 'lang="en" data-to="en">English</button>' in r.text
    # a new sign-in of the same key keeps it
    assert Page(world.signed_in("operator").get("/board").text).boot["lang"] == "id"


def test_sign_in_page(world: World) -> None:
    c = world.client()
    r = c.get("/signin")
    check_headers(r)
    assert r.status_code == 200
    text = r.text
    assert '<form method="post" action="/signin"' in text
    assert re.search(r'<input id="key" name="key" type="password" autocomplete="off"', text)
    assert "signin-error" not in text
    assert 'data-testid="signin-error"' in c.get("/signin?error=1").text
    assert "signin-error" not in c.get("/signin?error=<script>").text
    # language: ?lang=, else Accept-Language, else English
    assert '<html lang="id">' in c.get("/signin", headers={"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"}).text
    assert '<html lang="id">' in c.get("/signin?lang=id").text
    assert '<html lang="en">' in c.get("/signin?lang=<x>").text
    wrong = c.post("/signin", data={"key": "sfk_not-a-key"})
    assert wrong.headers["location"] == "/signin?error=1"
    assert "sfk_not-a-key" not in c.get(wrong.headers["location"]).text


def test_sign_out_form_carries_the_csrf_token_and_works(world: World) -> None:
    c = world.signed_in("admin")
    r = c.get("/board")
    token = Page(r.text).boot["csrf"]
    assert f'<input type="hidden" name="csrf" value="{token}">' in r.text
    out = c.post("/signout", data={"csrf": token})
    assert (out.status_code, out.headers["location"]) == (303, "/signin")
    assert c.get("/board").headers["location"] == "/signin"


# ---- escaping -------------------------------------------------------------------------------------------------------


def test_hostile_machine_and_tenant_names_are_escaped(world: World) -> None:
    for who, path in (("admin", "/board"), ("admin", "/machines/cnc-01"), ("acme", "/portal")):
        r = world.signed_in(who).get(path)
        assert r.status_code == 200
        assert HOSTILE_NAME not in r.text
        assert "<script>alert" not in r.text
        assert "PT Acme <Presisi>" not in r.text
        assert "&lt;/script&gt;&lt;script&gt;alert(&#x27;x&#x27;)" in r.text
        parsed = Page(r.text)
        assert parsed.inline_scripts == 0
        boot = parsed.boot  # the JSON holds the exact text; "<" is written \\u003c so it cannot end the element
        assert "</" not in (parsed.boot_text or "")
        if path == "/machines/cnc-01":
            assert boot["machine"]["name"] == HOSTILE_NAME
        else:
            assert boot["machines"][0]["name"] == HOSTILE_NAME
        assert boot["tenants"]["acme"] == "PT Acme <Presisi> & Co"


def test_a_tenant_page_names_only_its_own_tenant(world: World) -> None:
    boot = boot_of(world.signed_in("acme"), "/portal")
    assert boot["tenants"] == {"acme": "PT Acme <Presisi> & Co"}
    assert "batik" not in json.dumps(boot).lower()
    assert set(boot_of(world.signed_in("admin"), "/board")["tenants"]) == {"acme", "batik"}


@pytest.mark.parametrize(
    "machine_id",
    ["nope", "CNC-01", "<script>alert(1)</script>", "..%2f..%2fetc%2fpasswd", "a" * 5000, "cnc-01%00", "%E2%80%AE"],
)
def test_unknown_or_hostile_machine_ids_answer_the_not_found_page(world: World, machine_id: str) -> None:
    r = world.signed_in("operator").get(f"/machines/{machine_id}")
    assert r.status_code == 404
    check_headers(r)
    assert "not-found" in Page(r.text).testids
    assert "<script>alert(1)" not in r.text
    assert "a" * 100 not in r.text


# ---- static files ---------------------------------------------------------------------------------------------------


def test_every_page_loads_its_module_and_stylesheet(world: World) -> None:
    c = world.signed_in("admin")
    for path in ("/board", "/machines/cnc-01", "/reports"):
        parsed = Page(c.get(path).text)
        assert len(parsed.scripts) == 1 and len(parsed.styles) == 1
        js = c.get(parsed.scripts[0])
        assert js.status_code == 200
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert js.headers["x-content-type-options"] == "nosniff"
        css = c.get(parsed.styles[0])
        assert css.headers["content-type"] == "text/css; charset=utf-8"


def test_every_static_file_is_served_with_its_type(world: World) -> None:
    c = world.client()  # static files need no sign-in: they hold no data
    version = pages.load_assets().version
    files = [p for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for p in files:
        rel = p.relative_to(STATIC_DIR).as_posix()
        r = c.get(f"/static/{version}/{rel}")
        assert r.status_code == 200, rel
        assert r.content == p.read_bytes()
        assert r.headers["content-type"] == pages.CONTENT_TYPES[p.suffix]
    # an old version's URL still answers, but must not be cached as if it were this build's
    assert c.get("/static/0ld/js/fmt.js").headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    [
        "js/../../pages.py",
        "../pages.py",
        "..%2fpages.py",
        "js%2f..%2f..%2fpages.py",
        "%2e%2e/pages.py",
        "/etc/passwd",
        "js//fmt.js",
        "JS/FMT.JS",
        "js/fmt.js%00.css",
        "js\\..\\..\\pages.py",
        "",
        "js",
    ],
)
def test_nothing_outside_static_is_reachable(world: World, path: str) -> None:
    version = pages.load_assets().version
    # httpx, like a browser, resolves dot segments first; a redirect (trailing slash) is followed to its end
    r = TestClient(world.app, follow_redirects=True).get(f"/static/{version}/{path}")
    assert r.status_code == 404
    assert "import" not in r.text and "def " not in r.text


# ---- the labels the modules use -------------------------------------------------------------------------------------

_IMPORT = re.compile(r'from "\./([a-z0-9_]+\.js)"')
_T_CALL = re.compile(r'\bt\(\s*"([a-z0-9_]+)"')
_T_PREFIX = re.compile(r"\bt\(\s*`([a-z0-9_]+)\$\{")
MODULES = {
    "board": "board.js",
    "machine": "machine.js",
    "reports": "reports.js",
    "portal": "portal.js",
    "signin": "signin.js",
}


def module_graph(entry: str) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_IMPORT.findall((STATIC_DIR / "js" / name).read_text()))
    return seen


@pytest.mark.parametrize("page", list(MODULES))
def test_every_label_a_module_uses_is_in_its_page_boot(page: str) -> None:
    keys = set(pages.page_labels(page)["en"])
    used: set[str] = set()
    prefixes: set[str] = set()
    for name in module_graph(MODULES[page]):
        text = (STATIC_DIR / "js" / name).read_text()
        used |= set(_T_CALL.findall(text))
        prefixes |= set(_T_PREFIX.findall(text))
    assert used, "found no t(...) calls: the pattern no longer matches the modules"
    if page == "signin":
        # the sign-in page's modules (shell, i18n) use only what its own page shows
        used -= {"web_load_error", "web_connecting", "web_live", "web_reconnecting"}
    assert used <= set(LABELS)
    assert used <= keys, sorted(used - keys)
    for prefix in prefixes:  # t(`state_${...}`), t(`web_loss_${...}`): every key of the family is embedded
        family = {k for k in LABELS if k.startswith(prefix)}
        assert family and family <= keys, (page, prefix)


# ---- GET /v1/machines/{id}/profile ----------------------------------------------------------------------------------


def test_profile_gives_stop_reason_names(world: World) -> None:
    c = world.signed_in("acme")
    r = c.get("/v1/machines/cnc-01/profile")
    assert r.status_code == 200, r.text
    body = r.json()
    # examples/profiles/cnc-mill-v1.yaml: "0 none, 1 tool break, 2 material, 3 program, 4 spindle fault, 5 operator"
    assert body["stop_reasons"] == {
        "0": "none",
        "1": "tool break",
        "2": "material",
        "3": "program",
        "4": "spindle fault",
        "5": "operator",
    }
    assert body["loss_categories"] == {}  # the example site maps no stop reason to another loss
    assert body["profile"] == "cnc-mill-v1"
    assert c.get("/v1/machines/nope/profile").status_code == 404
    assert c.get("/v1/machines/%3Cx%3E/profile").status_code == 404
    assert world.client().get("/v1/machines/cnc-01/profile").status_code == 401


@pytest.mark.parametrize(
    ("description", "names"),
    [
        ("0 none, 11 nozzle collision, 12 gas pressure", {0: "none", 11: "nozzle collision", 12: "gas pressure"}),
        ("", {}),
        ("free text about the register", {}),  # not the "code name, ..." convention: no names rather than wrong ones
        ("1 a, 1 b", {}),  # a code twice: ambiguous
        ("1 tool break, two material", {}),
        ("1 " + "x" * 65, {}),  # longer than a name may be
        ("1 bell\x07", {}),
        ("  3   program  ,", {3: "program"}),
    ],
)
def test_stop_reason_names(description: str, names: dict[int, str]) -> None:
    assert stop_reason_names(description) == names


# ---- fmt.js mirrors api/core/i18n.py --------------------------------------------------------------------------------

NODE = shutil.which("node")


@pytest.fixture
def node() -> str:
    """Node, to run the page's formatting module; CI installs it (Debian: nodejs): there a missing one fails."""
    if NODE is None:
        if os.environ.get("CI"):
            pytest.fail("node is not installed (Debian: apt-get install nodejs)")
        pytest.skip("node is not installed (Debian: apt-get install nodejs)")
    return NODE
FMT_RUNNER = """
import * as fmt from %s;
const cases = JSON.parse(process.argv[1]);
const out = cases.map(([fn, args]) => { try { return fmt[fn](...args); } catch (e) { return "ERROR"; } });
console.log(JSON.stringify(out));
"""


def run_fmt(cases: list[tuple[str, list[Any]]]) -> list[str]:
    assert NODE is not None
    script = FMT_RUNNER % json.dumps((STATIC_DIR / "js" / "fmt.js").as_uri())
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: list[str] = json.loads(done.stdout)
    return result


@pytest.mark.usefixtures("node")
def test_fmt_js_formats_exactly_as_i18n() -> None:
    rng = random.Random(20261102)  # fixed seed: the same cases every run
    ints = [
        0,
        1,
        -1,
        999,
        1000,
        -1000,
        1_234_567,
        -1_234_567,
        10**15,
        *(rng.randint(-(10**13), 10**13) for _ in range(60)),
    ]
    small = [
        0,
        5,
        50,
        500,
        1_800_000,
        5_400_000,
        3_599_999,
        1_234_567_890,
        *(rng.randint(-(10**10), 10**10) for _ in range(60)),
    ]
    # From 2026-01-01 to 2028: every month, both sides of midnight in Jakarta (UTC+7).
    instants = [1_767_225_600_000 + rng.randint(0, 3 * 365 * 86_400_000) for _ in range(60)]
    instants += [1_793_552_400_000 - 1, 1_793_552_400_000, 1_793_638_799_999]
    cases: list[tuple[str, list[Any]]] = []
    expected: list[str] = []
    for lang in LANGS:
        for n in ints:
            cases.append(("integer", [n, lang]))
            expected.append(i18n.integer(n, lang))
            cases.append(("rupiah", [n, lang]))
            expected.append(i18n.rupiah(n, lang))
        for n in small:
            cases.append(("hours", [n, lang]))
            expected.append(i18n.hours(n, lang))
            cases.append(("kwh", [n, lang]))
            expected.append(i18n.kwh(n, lang))
            cases.append(("percentBp", [n % 20_000, lang]))
            expected.append(i18n.percent_bp(n % 20_000, lang))
            for places in (0, 1, 3):
                cases.append(("decimal", [n, 7, lang, places]))
                expected.append(i18n.decimal(n, 7, lang, places))
        for ms in instants:
            for zone in ("Asia/Jakarta", "Asia/Makassar", "Europe/Berlin", "UTC"):
                cases.append(("date", [ms, zone, lang]))
                expected.append(i18n.date(ms, zone, lang))
                cases.append(("datetime_", [ms, zone, lang]))
                expected.append(i18n.datetime_(ms, zone, lang))
                cases.append(("span", [ms, ms + 5 * 3_600_000, zone, lang]))
                expected.append(i18n.span(ms, ms + 5 * 3_600_000, zone, lang))
        for month in range(1, 13):
            cases.append(("period", [f"2026-{month:02d}", lang]))
            expected.append(i18n.period(f"2026-{month:02d}", lang))
    got = run_fmt(cases)
    mismatches = [(c, g, e) for c, g, e in zip(cases, got, expected, strict=True) if g != e]
    assert not mismatches, mismatches[:10]
    # the issue's own examples
    assert run_fmt([("rupiah", [1_234_567, "id"]), ("hours", [5_400_000, "id"])]) == ["Rp 1.234.567", "1,5 jam"]


@pytest.mark.usefixtures("node")
def test_fmt_js_refuses_what_i18n_refuses() -> None:
    bad: list[tuple[str, list[Any]]] = [
        ("integer", [1.5, "en"]),
        ("rupiah", [0.1, "id"]),
        ("integer", [1, "fr"]),
        ("decimal", [1, 0, "en"]),
        ("period", ["2026-13", "en"]),
        ("hours", ["1", "en"]),
    ]
    assert run_fmt(bad) == ["ERROR"] * len(bad)


@pytest.mark.usefixtures("node")
def test_zoned_day_start_is_local_midnight() -> None:
    # 2 Nov 2026 00:00 in Jakarta (UTC+7) = 1 Nov 17:00 UTC = 1793552400000 ms;
    # 29 Mar 2026 00:00 in Berlin (CET, UTC+1, the DST switch is at 02:00) = 28 Mar 23:00 UTC = 1774738800000 ms.
    got = run_fmt(
        [
            ("dayStartMs", ["2026-11-02", "Asia/Jakarta"]),
            ("dayStartMs", ["2026-03-29", "Europe/Berlin"]),
            ("isoDate", [1_793_552_400_000, "Asia/Jakarta"]),
            ("isoDate", [1_793_552_399_999, "Asia/Jakarta"]),
            ("nextDay", ["2026-12-31"]),
        ]
    )
    assert got == [1_793_552_400_000, 1_774_738_800_000, "2026-11-02", "2026-11-01", "2027-01-01"]


def test_static_dir_has_no_file_of_an_unserved_type() -> None:
    # A file the table does not serve would be silently missing from the pages.
    for p in Path(STATIC_DIR).rglob("*"):
        if p.is_file():
            assert p.suffix in pages.CONTENT_TYPES, p
