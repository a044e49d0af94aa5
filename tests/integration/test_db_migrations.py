"""Alembic migrations of the business schema on real SQLite and PostgreSQL: they create exactly models.py's schema,
are idempotent, keep data, leave the roll-up tables alone, and the API's start-up check refuses an unmigrated DB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from api.db import migrate
from api.db.engine import DbError, NotMigrated, check_current, open_engine, sessions
from api.db.models import Base, Tenant
from api.rollups.store import RollupStore

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(business_db_url: str) -> Iterator[Engine]:
    e = open_engine(business_db_url)
    yield e
    e.dispose()


def _diffs(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": migrate.include_name, "compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_upgrade_creates_exactly_the_models_schema(business_db_url: str, engine: Engine) -> None:
    # The roll-up cache shares the database and makes its own tables: Alembic must neither see nor touch them.
    RollupStore(business_db_url).close()
    rollup_tables = set(sa.inspect(engine).get_table_names())
    assert rollup_tables and not rollup_tables & set(Base.metadata.tables)
    assert migrate.upgrade(business_db_url) == migrate.head() == "0002"
    assert _diffs(engine) == []
    tables = set(sa.inspect(engine).get_table_names())
    assert tables == rollup_tables | set(Base.metadata.tables) | {migrate.VERSION_TABLE}


def test_check_current_refuses_an_unmigrated_database_and_says_how_to_fix_it(
    business_db_url: str, engine: Engine
) -> None:
    with pytest.raises(NotMigrated) as info:
        check_current(engine)
    text = str(info.value)
    assert "not migrated (revision none, needs 0002)" in text
    assert "shopfloor db upgrade --db-url" in text and "\n" not in text
    assert migrate.current(business_db_url) is None
    migrate.upgrade(business_db_url)
    check_current(engine)
    assert migrate.current(business_db_url) == "0002"


def test_check_current_names_a_revision_from_a_newer_version(business_db_url: str, engine: Engine) -> None:
    migrate.upgrade(business_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {migrate.VERSION_TABLE} SET version_num = '0099'"))
    with pytest.raises(NotMigrated, match="revision 0099, which this version of shopfloor does not know"):
        check_current(engine)


def test_upgrade_is_idempotent_and_keeps_data(business_db_url: str, engine: Engine) -> None:
    migrate.upgrade(business_db_url)
    with sessions(engine)() as s:
        s.add(Tenant(id="acme", name="PT Acme", created_ms=1))
        s.commit()
    assert migrate.upgrade(business_db_url) == "0002"
    assert migrate.upgrade(business_db_url) == "0002"
    with sessions(engine)() as s:
        assert [(t.id, t.name) for t in s.scalars(sa.select(Tenant))] == [("acme", "PT Acme")]
    assert _diffs(engine) == []


def test_downgrade_to_base_drops_only_the_business_tables(business_db_url: str, engine: Engine) -> None:
    RollupStore(business_db_url).close()
    before = set(sa.inspect(engine).get_table_names())
    migrate.upgrade(business_db_url)
    assert migrate.downgrade_engine(engine, "base") is None
    assert set(sa.inspect(engine).get_table_names()) == before | {migrate.VERSION_TABLE}
    assert migrate.upgrade_engine(engine) == "0002"
    assert _diffs(engine) == []


def test_unknown_revision_is_a_one_line_error(business_db_url: str) -> None:
    with pytest.raises(DbError, match="cannot upgrade to 'nope'") as info:
        migrate.upgrade(business_db_url, "nope")
    assert "\n" not in str(info.value)


def test_schema_refuses_rows_the_rules_forbid(business_db_url: str, engine: Engine) -> None:
    migrate.upgrade(business_db_url)
    bad = [
        "INSERT INTO bookings (machine, tenant_id, start_ms, end_ms, created_ms) VALUES ('cnc-01', 'acme', 5, 5, 0)",
        "INSERT INTO api_keys (name, sha256, role, tenant_id, created_ms) VALUES ('k', 'h', 'admin', 'acme', 0)",
        "INSERT INTO api_keys (name, sha256, role, created_ms) VALUES ('k', 'h', 'root', 0)",
        "INSERT INTO cost_pools (machine, period, category, amount) VALUES ('cnc-01', '2026-11', 'space', -1)",
        "INSERT INTO badges (number, tenant_id, valid_from) VALUES (1, 'ghost', '2026-01-01')",  # foreign key
    ]
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_ms) VALUES ('acme', '', 0)"))
    for statement in bad:
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(statement))


def test_open_engine_errors_are_one_line(tmp_path: object) -> None:
    cases = {
        "not a url": "is not a database URL",
        "mysql://u@h/db": "only sqlite and postgresql are supported",
        "sqlite:////no/such/folder/x.db": "does not exist",
        "postgresql://postgres@127.0.0.1:1/x": "cannot connect",
    }
    for url, fragment in cases.items():
        with pytest.raises(DbError) as info:
            open_engine(url)
        assert fragment in str(info.value) and "\n" not in str(info.value), url


def test_passwords_never_appear_in_messages() -> None:
    with pytest.raises(DbError) as info:
        open_engine("postgresql://postgres:s3cret@127.0.0.1:1/x")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


# ---- 0002: web sessions and the language of a key ------------------------------------------------------------------


def _fill_0001(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO tenants (id, name, created_ms) VALUES ('acme', 'PT Acme', 1)"))
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (name, sha256, role, tenant_id, created_ms, revoked_ms, last_used_ms) VALUES "
                "('acme-portal', 'aa', 'tenant', 'acme', 2, NULL, 3), ('boss', 'bb', 'admin', NULL, 4, 5, NULL)"
            )
        )


def _keys(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, name, sha256, role, tenant_id, created_ms, revoked_ms, last_used_ms FROM api_keys")
        )
        return sorted(tuple(r) for r in rows)


def test_upgrade_from_0001_keeps_the_keys_and_adds_lang_and_sessions(business_db_url: str, engine: Engine) -> None:
    assert migrate.upgrade(business_db_url, "0001") == "0001"
    _fill_0001(engine)
    before = _keys(engine)
    assert [k[1] for k in before] == ["acme-portal", "boss"]
    with pytest.raises(NotMigrated, match=r"revision 0001, needs 0002"):
        check_current(engine)
    assert migrate.upgrade(business_db_url) == "0002"
    check_current(engine)
    assert _keys(engine) == before
    assert _diffs(engine) == []
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT lang FROM api_keys")).scalars().all() == [None, None]
        key_id = conn.execute(sa.text("SELECT id FROM api_keys WHERE name = 'acme-portal'")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO web_sessions (id, key_id, csrf, lang, created_ms, expires_ms, last_seen_ms) "
                "VALUES ('s1', :k, 'c', 'id', 1, 2, 1)"
            ),
            {"k": key_id},
        )
    # A session of a key that does not exist is refused (foreign key), one of a deleted key goes with it (cascade).
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO web_sessions (id, key_id, csrf, created_ms, expires_ms, last_seen_ms) "
                "VALUES ('s2', 987654, 'c', 1, 2, 1)"
            )
        )
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys WHERE id = :k"), {"k": key_id})
        assert conn.execute(sa.text("SELECT count(*) FROM web_sessions")).scalar_one() == 0


def test_downgrade_to_0001_keeps_the_keys_and_their_rules(business_db_url: str, engine: Engine) -> None:
    migrate.upgrade(business_db_url, "0001")
    _fill_0001(engine)
    before = _keys(engine)
    migrate.upgrade(business_db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET lang = 'id'"))
    assert migrate.downgrade_engine(engine, "0001") == "0001"
    assert _keys(engine) == before
    tables = set(sa.inspect(engine).get_table_names())
    assert "web_sessions" not in tables
    assert "lang" not in {c["name"] for c in sa.inspect(engine).get_columns("api_keys")}
    # SQLite's downgrade copies the table: its constraints must come along.
    for statement in (
        "INSERT INTO api_keys (name, sha256, role, created_ms) VALUES ('x', 'cc', 'root', 0)",
        "INSERT INTO api_keys (name, sha256, role, created_ms) VALUES ('boss', 'dd', 'admin', 0)",
        "INSERT INTO api_keys (name, sha256, role, tenant_id, created_ms) VALUES ('y', 'ee', 'tenant', 'ghost', 0)",
    ):
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert migrate.upgrade_engine(engine) == "0002"
    assert _diffs(engine) == []
