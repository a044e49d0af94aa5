"""`shopfloor dashboards check|push`: validate the Grafana dashboards offline, publish them to a Grafana per site.

check: every dashboard file parses, every panel has an InfluxQL query against a measurement of shopfloor's schema,
every `$variable` a query uses is defined (or one of Grafana's own), every variable's own query uses only variables
defined before it, and every panel reads the provisioned datasource.
push: through the Grafana HTTP API with grafana-client (the maintained client; grafana-api is unmaintained since
2020), into a folder of the site (uid shopfloor-<site id>, title the site's name), each dashboard with overwrite,
templated for the site: its uid gets the site id, the site variable defaults to the site, the time zone constant is
the site's, and the datasource uid is --datasource-uid when given.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shopfloor.store import SCHEMA

PROG = "shopfloor dashboards"


def _dashboard_dir() -> Path:
    """dashboards/ of a source checkout, else the copy a wheel installs under <prefix>/share/shopfloor/dashboards."""
    checkout = Path(__file__).resolve().parent.parent / "dashboards"
    installed = Path(sys.prefix) / "share" / "shopfloor" / "dashboards"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


DASHBOARD_DIR = _dashboard_dir()
DATASOURCE_UID = "shopfloor-influxdb"  # dashboards/provisioning/datasources/influxdb.yaml
TOKEN_ENV = "SHOPFLOOR_GRAFANA_TOKEN"
MAX_UID = 40  # Grafana refuses longer dashboard and folder uids
MAX_FILE_BYTES = 2_000_000
# Variables Grafana defines itself (InfluxQL datasource and global ones).
BUILTIN_VARIABLES = frozenset(
    {
        "timeFilter",
        "__timeFilter",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__from",
        "__to",
        "__dashboard",
        "__org",
        "__user",
        "interval",
    }
)
DERIVED_MEASUREMENT = "machine_hour"  # api.rollups.derived.MEASUREMENT (not imported: `shopfloor --help` stays fast)
MEASUREMENTS = frozenset({*SCHEMA, DERIVED_MEASUREMENT})
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|([A-Za-z0-9_]+))")
_FROM = re.compile(r'\bFROM\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)
_UID = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")


class UsageError(Exception):
    """A bad option or a dashboard that cannot be used: the message names it."""


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What templating a dashboard for a site needs."""

    id: str
    name: str
    timezone: str


def load(directory: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Read every *.json dashboard of directory (file stem -> document); raise UsageError naming a bad file."""
    if not directory.is_dir():
        raise UsageError(f"dashboard folder {str(directory)!r} does not exist")
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes; not a dashboard")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"{path.name}: not readable JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{path.name}: a dashboard must be a JSON object")
        out[path.stem] = doc
    if not out:
        raise UsageError(f"no *.json dashboards in {str(directory)!r}")
    return out


def variables(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's template variables, in order."""
    templating = doc.get("templating")
    found = templating.get("list") if isinstance(templating, dict) else None
    return [v for v in found if isinstance(v, dict)] if isinstance(found, list) else []


def panels(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows too."""
    out: list[dict[str, Any]] = []
    for panel in doc.get("panels") or []:
        if isinstance(panel, dict):
            out.append(panel)
            out.extend(p for p in panel.get("panels") or [] if isinstance(p, dict))
    return [p for p in out if p.get("type") != "row"]


def used_variables(text: str) -> set[str]:
    """The names of the $variables and ${variables} text refers to."""
    return {a or b for a, b in _VAR.findall(text)}


def check(name: str, doc: Mapping[str, Any]) -> list[str]:
    """Return what is wrong with one dashboard (empty: nothing), each problem naming the panel or variable."""
    problems: list[str] = []
    uid = doc.get("uid")
    if not isinstance(uid, str) or not _UID.match(uid):
        problems.append(f"{name}: uid {uid!r} must be 1-{MAX_UID} letters, digits, '-' or '_'")
    if not isinstance(doc.get("title"), str) or not doc["title"]:
        problems.append(f"{name}: has no title")
    defined: set[str] = set()
    for var in variables(doc):
        vname = var.get("name")
        if not isinstance(vname, str) or not vname:
            problems.append(f"{name}: a variable has no name")
            continue
        query = var.get("query")
        text = query if isinstance(query, str) else json.dumps(query)
        if var.get("type") == "query":
            for ref in sorted(used_variables(text) - defined - BUILTIN_VARIABLES):
                problems.append(f"{name}: variable {vname!r} uses ${ref}, not defined before it")
            problems.extend(f"{name}: variable {vname!r}: {p}" for p in _measurements(text))
        elif var.get("type") == "constant" and not (isinstance(query, str) and query):
            problems.append(f"{name}: constant {vname!r} has no value")
        defined.add(vname)
    ids: set[object] = set()
    found = panels(doc)
    if not found:
        problems.append(f"{name}: has no panels")
    for panel in found:
        title = f"{name}: panel {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{title}: id {panel.get('id')!r} is used twice")
        ids.add(panel.get("id"))
        targets = [t for t in panel.get("targets") or [] if isinstance(t, dict)]
        if not targets:
            problems.append(f"{title}: has no query")
        for target in targets:
            where = f"{title} query {target.get('refId')!r}"
            query = target.get("query")
            if not isinstance(query, str) or not query.strip():
                problems.append(f"{where}: is empty")
                continue
            if target.get("rawQuery") is not True:
                problems.append(f"{where}: must be a raw InfluxQL query (rawQuery: true)")
            for ref in sorted(used_variables(query) - defined - BUILTIN_VARIABLES):
                problems.append(f"{where}: uses ${ref}, which no variable defines")
            problems.extend(f"{where}: {p}" for p in _measurements(query))
            if "$timeFilter" not in query and "$__timeFilter" not in query:
                problems.append(f"{where}: has no $timeFilter (it would read all of history)")
        for source in (panel.get("datasource"), *(t.get("datasource") for t in targets)):
            if not isinstance(source, dict) or source.get("uid") != DATASOURCE_UID:
                problems.append(f"{title}: datasource must be {{'type': 'influxdb', 'uid': {DATASOURCE_UID!r}}}")
                break
    return problems


def _measurements(query: str) -> list[str]:
    named = _FROM.findall(query)
    if not named:
        return ["names no measurement (FROM ...)"]
    return [f"reads {m!r}, not a measurement of shopfloor's schema" for m in named if m not in MEASUREMENTS]


def check_all(docs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Return the problems of every dashboard, and of uids used twice."""
    problems = [p for name, doc in docs.items() for p in check(name, doc)]
    seen: dict[object, str] = {}
    for name, doc in docs.items():
        uid = doc.get("uid")
        if uid in seen:
            problems.append(f"{name}: uid {uid!r} is also {seen[uid]}'s")
        seen[uid] = name
    return problems


# ---- push --------------------------------------------------------------------------------------------------------


def _uid(*parts: str) -> str:
    """A Grafana uid from parts joined by '-': shortened with a hash of the whole when longer than MAX_UID."""
    whole = "-".join(parts)
    if len(whole) <= MAX_UID:
        return whole
    digest = hashlib.sha256(whole.encode()).hexdigest()[:10]
    return f"{whole[: MAX_UID - 11]}-{digest}"


def folder_uid(site_id: str) -> str:
    """The uid of a site's dashboard folder."""
    return _uid("shopfloor", site_id)


def check_url(url: str) -> str:
    """Return the Grafana base URL without a trailing '/', or raise UsageError saying what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > 2000 or any(c.isspace() for c in url):
        raise UsageError(f"--grafana-url {url[:80]!r}: give Grafana's base URL, e.g. http://grafana:3000")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise UsageError(f"--grafana-url {url[:80]!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--grafana-url {url[:80]!r}: must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UsageError("--grafana-url must not hold a user or password: give a service-account token (--token)")
    if parts.query or parts.fragment:
        raise UsageError(f"--grafana-url {url[:80]!r}: must not have a query or fragment")
    return url.rstrip("/")


def check_token(token: str | None) -> str:
    """Return the token, or raise UsageError when it is missing or malformed."""
    if token is None or not token.strip():
        raise UsageError(f"give a Grafana service-account token: --token-file FILE, --token T or ${TOKEN_ENV}")
    token = token.strip()
    if len(token) > 4096 or not token.isprintable() or any(c.isspace() for c in token):
        raise UsageError("the Grafana token must be one line of printable characters without spaces")
    return token


def _set_datasource(node: Any, uid: str) -> None:
    if isinstance(node, dict):
        source = node.get("datasource")
        if isinstance(source, dict) and source.get("type") == "influxdb":
            source["uid"] = uid
        for value in node.values():
            _set_datasource(value, uid)
    elif isinstance(node, list):
        for value in node:
            _set_datasource(value, uid)


def dashboard_payload(
    doc: Mapping[str, Any], site: SiteInfo, *, datasource_uid: str = DATASOURCE_UID, message: str = ""
) -> dict[str, Any]:
    """The body of POST /api/dashboards/db that publishes doc for site into the site's folder, overwriting."""
    if not _UID.match(datasource_uid):
        raise UsageError(f"--datasource-uid {datasource_uid!r}: 1-{MAX_UID} letters, digits, '-' or '_'")
    board = copy.deepcopy(dict(doc))
    board.pop("id", None)  # Grafana's own number: the uid identifies the dashboard
    board["uid"] = _uid(str(board.get("uid", "shopfloor")), site.id)
    for var in variables(board):
        if var.get("name") == "site":
            var["current"] = {"selected": True, "text": site.id, "value": site.id}
        elif var.get("name") == "tz" and var.get("type") == "constant":
            var["query"] = site.timezone
            var["current"] = {"text": site.timezone, "value": site.timezone}
    _set_datasource(board, datasource_uid)
    return {
        "dashboard": board,
        "folderUid": folder_uid(site.id),
        "overwrite": True,
        "message": message or f"shopfloor dashboards push for site {site.id}",
    }


def folder_payload(site: SiteInfo) -> dict[str, str]:
    """The folder of a site: its uid and title (the site's name, else its id)."""
    return {"uid": folder_uid(site.id), "title": site.name or site.id}


def push(grafana: Any, site: SiteInfo, docs: Mapping[str, Mapping[str, Any]], datasource_uid: str) -> list[str]:
    """Create the site's folder if missing and publish every dashboard into it; return the URLs Grafana gave."""
    folder = folder_payload(site)
    existing = [f for f in grafana.folder.get_all_folders() if isinstance(f, dict)]
    if not any(f.get("uid") == folder["uid"] for f in existing):
        grafana.folder.create_folder(folder["title"], uid=folder["uid"])
    urls = []
    for name, doc in docs.items():
        answer = grafana.dashboard.update_dashboard(dashboard_payload(doc, site, datasource_uid=datasource_uid))
        urls.append(str(answer.get("url", name)) if isinstance(answer, dict) else name)
    return urls


# ---- command line ------------------------------------------------------------------------------------------------


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _token(args: argparse.Namespace) -> str:
    if args.token_file is not None:
        from shopfloor.cli import read_secret

        try:
            return check_token(read_secret(args.token_file, "--token-file"))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return check_token(args.token if args.token is not None else os.environ.get(TOKEN_ENV))


def _run(args: argparse.Namespace) -> int:
    try:
        docs = load(args.dir)
        problems = check_all(docs)
        if args.action == "check":
            for problem in problems:
                print(problem)
            print(f"{len(docs)} dashboard(s), {len(problems)} problem(s)")
            return 1 if problems else 0
        if problems:
            return _fail(f"refusing to push: {problems[0]} (and {len(problems) - 1} more; run `{PROG} check`)")
        url = check_url(args.grafana_url or "")
        token = _token(args)
    except UsageError as exc:
        return _fail(str(exc))
    from grafana_client.api import GrafanaApi
    from grafana_client.client import GrafanaException

    from shopfloor.config import load_site

    config = load_site(Path(args.site))
    site = SiteInfo(config.site.id, config.site.name, config.site.timezone)
    grafana: Any = GrafanaApi.from_url(url, credential=token, timeout=args.timeout)
    try:
        urls = push(grafana, site, docs, args.datasource_uid)
    except GrafanaException as exc:
        return _fail(f"Grafana at {url} refused: {exc.message} (status {exc.status_code})")
    except OSError as exc:  # niquests' connection errors are OSErrors
        return _fail(f"Grafana at {url} unreachable: {exc}")
    for published in urls:
        print(f"{url}{published}")
    print(f"pushed {len(urls)} dashboard(s) for site {site.id} into folder {folder_uid(site.id)!r}")
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor dashboards`."""
    from shopfloor.cli import add_common

    p = sub.add_parser(
        "dashboards",
        help="check the Grafana dashboards offline, or push them to a Grafana (a folder per site)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["check", "push"])
    add_common(p)
    p.add_argument("--dir", type=Path, default=DASHBOARD_DIR, help="dashboard folder (default: %(default)s)")
    p.add_argument("--grafana-url", default=None, help="push: Grafana's base URL, e.g. http://grafana:3000")
    p.add_argument(
        "--token",
        default=None,
        help=f"push: service-account token (visible in `ps`: prefer --token-file or ${TOKEN_ENV})",
    )
    p.add_argument("--token-file", type=Path, default=None, help="push: file holding the token (first line)")
    p.add_argument(
        "--datasource-uid",
        default=DATASOURCE_UID,
        help="push: uid of Grafana's InfluxDB datasource (default: %(default)s, as provisioned)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="push: seconds per request (default: %(default)s)")
    p.set_defaults(func=_run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `shopfloor dashboards` alone (tests, scripts)."""
    parser = argparse.ArgumentParser(prog="shopfloor")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
