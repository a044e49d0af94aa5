"""`shopfloor db` on real SQLite and PostgreSQL: upgrade, current, import, key create/revoke/list, exit codes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest

from api.db import cli as db_cli
from shopfloor.keys import hash_key

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "shopfloor" / "examples"
Run = Callable[..., tuple[int, str, str]]


def _main(argv: list[str]) -> int:
    """shopfloor.cli.main once the lead registered `db` there, else the parser of api.db.cli alone."""
    from shopfloor import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "db" in commands.choices:
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="shopfloor")
    db_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def run(business_db_url: str, capsys: pytest.CaptureFixture[str]) -> Run:
    def go(*argv: str) -> tuple[int, str, str]:
        code = _main(["db", *argv, "--db-url", business_db_url])
        out = capsys.readouterr()
        return code, out.out, out.err

    return go


def test_upgrade_current_import_and_keys(run: Run, tmp_path: Path) -> None:
    code, _, err = run("key", "list")
    assert code == 2 and "not migrated" in err and "shopfloor db upgrade" in err
    assert run("current")[1].startswith("revision none (newest 0002)")
    code, out, _ = run("upgrade")
    assert code == 0 and "from revision none to 0002" in out
    assert "nothing to do" in run("upgrade")[1]
    assert "up to date" in run("current")[1]

    code, out, _ = run("import", str(EXAMPLE / "billing.yaml"), "--site", str(EXAMPLE / "site.yaml"))
    assert code == 0 and "billing file" in out and "tariffs: 5 created" in out
    code, out, _ = run("import", str(EXAMPLE / "billing.yaml"), "--site", str(EXAMPLE / "site.yaml"))
    assert code == 0 and "tariffs: 0 created, 0 updated, 5 unchanged" in out
    code, out, _ = run("import", str(EXAMPLE / "site.yaml"), "--site", str(EXAMPLE / "site.yaml"))
    assert code == 0 and "site file" in out and "tenants: 0 created, 0 updated, 3 unchanged" in out

    code, out, _ = run("key", "create", "--name", "acme-portal", "--role", "tenant", "--tenant", "acme")
    assert code == 0
    clear = out.strip().splitlines()[-1]
    assert clear.startswith("sfk_")
    code, out, _ = run("key", "list")
    assert code == 0 and "acme-portal" in out
    assert hash_key(clear)[:8] in out and hash_key(clear) not in out and clear not in out
    assert run("key", "create", "--name", "acme-portal", "--role", "admin")[0] == 2
    assert run("key", "create", "--name", "x", "--role", "tenant", "--tenant", "ghost")[0] == 2
    assert run("key", "revoke", "acme-portal")[0] == 0
    code, _, err = run("key", "revoke", "nobody")
    assert code == 2 and "no API key named 'nobody'" in err


def test_bad_files_exit_2_with_the_reason(run: Run, tmp_path: Path) -> None:
    run("upgrade")
    site = ["--site", str(EXAMPLE / "site.yaml")]
    bad = tmp_path / "billing.yaml"
    bad.write_text(
        "tenants: [{id: acme}]\ncost_pools: [{machine: cnc-01, period: 2026-11, category: space, amount: 1.5}]\n"
    )
    code, _, err = run("import", str(bad), *site)
    assert code == 2 and "cost_pools[0].amount" in err and f"{bad}:2" in err
    bad.write_text(
        "tenants: [{id: acme}]\ncost_pools: [{machine: cnc-99, period: 2026-11, category: space, amount: 1}]\n"
    )
    code, _, err = run("import", str(bad), *site)
    assert code == 2 and "cnc-99" in err and "not in the site" in err
    code, _, err = run("import", str(tmp_path / "missing.yaml"), *site)
    assert code == 2 and "cannot read" in err


def test_exit_codes_for_bad_urls_and_unreachable_databases(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(["db", "current", "--db-url", "mysql://u@h/db"]) == 2
    assert _main(["db", "current", "--db-url", "sqlite:////no/such/dir/x.db"]) == 2
    assert _main(["db", "upgrade", "--db-url", "postgresql://postgres@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err
    assert "only sqlite and postgresql" in err and "does not exist" in err and "cannot connect" in err
