"""api.db.repo on real SQLite and PostgreSQL: importing billing.yaml and site files (idempotent, clashes refused),
API keys (shown once, hashed, revocable, last use throttled), and the same BillingData as the file gives."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

from api.db import repo
from api.db.billingfile import load_billing, parse_billing, to_core
from api.db.engine import Conflict, NotFound, open_engine, sessions
from api.db.models import ApiKey, Badge, Booking, Invoice, InvoiceLine, Tariff
from shopfloor.keys import hash_key
from shopfloor.yamlfile import MAX_CONFIG_BYTES, ConfigError

pytestmark = pytest.mark.integration

JAKARTA = ZoneInfo("Asia/Jakarta")
EXAMPLE = Path(__file__).resolve().parents[2] / "shopfloor" / "examples"
NOW = 1_795_000_000_000


@pytest.fixture
def db(migrated_db_url: str) -> Iterator[Session]:
    engine = open_engine(migrated_db_url)
    with sessions(engine)() as session:
        yield session
    engine.dispose()


def _import(db: Session, data: dict[str, Any]) -> repo.ImportReport:
    report = repo.import_billing(db, parse_billing(data), now_ms=NOW, zone=JAKARTA)
    db.commit()
    return report


def test_billing_file_import_is_idempotent_and_gives_the_files_billing_data(db: Session) -> None:
    bf = load_billing(EXAMPLE / "billing.yaml", JAKARTA)
    first = repo.import_billing(db, bf, now_ms=NOW, zone=JAKARTA)
    db.commit()
    assert first.created["tenants"] == 3 and first.created["cost_pools"] == 20 and first.created["bookings"] == 4
    again = repo.import_billing(db, bf, now_ms=NOW + 1, zone=JAKARTA)
    db.commit()
    assert again.changed == 0 and again.unchanged["badges"] == first.created["badges"]
    from_db, from_file = repo.billing_data(db, JAKARTA), to_core(bf, JAKARTA)
    # Booking ids are the database's; everything else is the same objects.
    strip = [dataclasses.replace(b, id=0) for b in from_db.bookings]
    assert strip == [dataclasses.replace(b, id=0) for b in from_file.bookings]
    assert dataclasses.replace(from_db, bookings=()) == dataclasses.replace(from_file, bookings=())
    assert db.scalar(sa.select(sa.func.count()).select_from(Badge)) == 7


def test_site_file_import_keeps_a_site_working(db: Session, tmp_path: Path) -> None:
    site = yaml.safe_load((EXAMPLE / "site.yaml").read_text())
    site["api_keys"] = [{"name": "acme-portal", "sha256": hash_key("sfk_acme"), "role": "tenant", "tenant": "acme"}]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    # profiles are relative to the example folder; only tenants and api_keys are read, so that does not matter.
    bf = load_billing(path)
    report = repo.import_billing(db, bf, now_ms=NOW)
    db.commit()
    assert (report.created["tenants"], report.created["badges"], report.created["api_keys"]) == (3, 5, 1)
    assert repo.principal_for_key(db, "sfk_acme", NOW) == repo.KeyInfo("acme-portal", "tenant", "acme")
    assert repo.import_billing(db, bf, now_ms=NOW).changed == 0
    spans = repo.owners(db, JAKARTA)
    # 1970-01-01T00:00+07:00 = -7 h = -25200000 ms.
    assert {(s.number, s.tenant, s.from_ms, s.to_ms) for s in spans} >= {(1001, "acme", -25_200_000, None)}


def test_changed_entries_update_rows_by_their_natural_key(db: Session) -> None:
    t = {"code": "cnc", "version": 1, "machine_class": "cnc-mill-v1", "valid_from": "2026-01-01", "rate_per_hour": 1}
    base: dict[str, Any] = {
        "tenants": [{"id": "acme", "name": "Acme"}],
        "tariffs": [t],
        "cost_pools": [{"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 5}],
    }
    _import(db, base)
    changed = {
        "tenants": [{"id": "acme", "name": "PT Acme"}],
        "tariffs": [{**t, "rate_per_hour": 2}],
        "cost_pools": [{**base["cost_pools"][0], "amount": 6}],
    }
    report = _import(db, changed)
    assert (report.updated["tenants"], report.updated["tariffs"], report.updated["cost_pools"]) == (1, 1, 1)
    assert db.scalar(sa.select(Tariff.rate_per_hour)) == 2
    assert db.scalar(sa.select(sa.func.count()).select_from(Tariff)) == 1


def test_a_tariff_version_an_invoice_used_cannot_change(db: Session) -> None:
    t = {"code": "cnc", "version": 1, "machine_class": "cnc-mill-v1", "valid_from": "2026-01-01", "rate_per_hour": 1}
    _import(db, {"tenants": [{"id": "acme"}], "tariffs": [t]})
    invoice = Invoice(
        site="bdg", tenant_id="acme", period="2026-11", kind="invoice", status="finalized", document="{}", inputs="{}",
        created_ms=NOW,
    )  # fmt: skip
    db.add(invoice)
    db.flush()
    db.add(
        InvoiceLine(
            invoice_id=invoice.id, position=0, machine="cnc-01", kind="machine_time", start_ms=0, end_ms=1,
            quantity=1, unit="min", unit_price=1, amount=1, tax_rate_bp=1100, tax=0, tariff="cnc@1",
        )
    )  # fmt: skip
    db.commit()
    assert _import(db, {"tenants": [{"id": "acme"}], "tariffs": [t]}).changed == 0  # the same: fine
    with pytest.raises(Conflict, match=r"cnc@1 priced finalized invoices.*add version 2"):
        _import(db, {"tenants": [{"id": "acme"}], "tariffs": [{**t, "rate_per_hour": 2}]})


def test_clashes_with_stored_rows_are_refused_and_nothing_lands(db: Session) -> None:
    def booking(start: str, end: str, tenant: str = "acme") -> dict[str, str]:
        return {"machine": "cnc-01", "tenant": tenant, "start": start, "end": end}

    tenants = [{"id": "acme", "badges": [{"number": 5, "valid_from": "2026-01-01"}]}, {"id": "batik"}]
    _import(db, {"tenants": tenants, "bookings": [booking("2026-11-03T08:00:00+07:00", "2026-11-03T10:00:00+07:00")]})
    # Each file is valid on its own; only with what is stored do they clash.
    later = booking("2026-11-03T09:00:00+07:00", "2026-11-03T11:00:00+07:00", "batik")
    with pytest.raises(Conflict, match=r"machine cnc-01: booking .* overlaps booking"):
        _import(db, {"tenants": [{"id": "batik"}], "bookings": [later]})
    db.rollback()
    badge = {"id": "batik", "badges": [{"number": 5, "valid_from": "2026-06-01"}]}
    with pytest.raises(Conflict, match="badge 5: 'batik' from 2026-06-01 overlaps 'acme'"):
        _import(db, {"tenants": [badge]})
    db.rollback()
    assert db.scalar(sa.select(sa.func.count()).select_from(Booking)) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(Badge)) == 1
    # Closing acme's badge first makes the transfer fine: the move of a badge on a date.
    moved = {"id": "acme", "badges": [{"number": 5, "valid_from": "2026-01-01", "valid_to": "2026-06-01"}]}
    report = _import(db, {"tenants": [moved, badge]})
    assert (report.updated["badges"], report.created["badges"]) == (1, 1)
    # Touching bookings are fine.
    touching = booking("2026-11-03T10:00:00+07:00", "2026-11-03T11:00:00+07:00", "batik")
    _import(db, {"tenants": [{"id": "batik"}], "bookings": [touching]})
    assert db.scalar(sa.select(sa.func.count()).select_from(Booking)) == 2


def test_overlapping_tariffs_across_imports_are_refused(db: Session) -> None:
    t = {"code": "cnc", "version": 1, "machine_class": "cnc-mill-v1", "valid_from": "2026-01-01", "rate_per_hour": 1}
    _import(db, {"tariffs": [t]})
    with pytest.raises(Conflict, match="cnc2@1 and cnc@1 are both valid for class cnc-mill-v1"):
        _import(db, {"tariffs": [{**t, "code": "cnc2", "valid_from": "2026-06-01"}]})


def test_key_import_never_swaps_a_secret_or_revives_a_revoked_key(db: Session) -> None:
    key = {"name": "ops", "sha256": hash_key("sfk_one"), "role": "operator"}
    _import(db, {"api_keys": [key]})
    with pytest.raises(Conflict, match="'ops' is stored with another hash"):
        _import(db, {"api_keys": [{**key, "sha256": hash_key("sfk_two")}]})
    db.rollback()
    with pytest.raises(Conflict, match="stored as 'ops'"):
        _import(db, {"api_keys": [{**key, "name": "ops2"}]})
    db.rollback()
    repo.revoke_key(db, "ops", NOW)
    db.commit()
    assert _import(db, {"api_keys": [key]}).changed == 0
    assert repo.principal_for_key(db, "sfk_one", NOW) is None


def test_keys_are_shown_once_stored_hashed_and_revocable(db: Session) -> None:
    _import(db, {"tenants": [{"id": "acme"}]})
    row, clear = repo.create_key(db, name="acme-portal", role="tenant", tenant="acme", now_ms=NOW)
    db.commit()
    assert clear.startswith("sfk_") and row.sha256 == hash_key(clear)
    stored = db.execute(sa.select(ApiKey.name, ApiKey.sha256)).all()
    assert all(clear not in str(value) for r in stored for value in r)
    assert repo.principal_for_key(db, clear, NOW) == repo.KeyInfo("acme-portal", "tenant", "acme")
    assert repo.principal_for_key(db, clear + "x", NOW) is None
    with pytest.raises(Conflict, match="exists already"):
        repo.create_key(db, name="acme-portal", role="admin", now_ms=NOW)
    with pytest.raises(NotFound, match="tenant 'ghost'"):
        repo.create_key(db, name="g", role="tenant", tenant="ghost", now_ms=NOW)
    for bad in (
        {"name": "a", "role": "root"},
        {"name": "a", "role": "admin", "tenant": "acme"},
        {"name": "a", "role": "tenant"},
        {"name": "", "role": "admin"},
        {"name": "x" * 101, "role": "admin"},
        {"name": "a\nb", "role": "admin"},
    ):
        with pytest.raises(ValueError):
            repo.create_key(db, now_ms=NOW, **bad)
    db.rollback()
    revoked = repo.revoke_key(db, "acme-portal", NOW + 5)
    db.commit()
    assert revoked.revoked_ms == NOW + 5
    assert repo.revoke_key(db, "acme-portal", NOW + 9).revoked_ms == NOW + 5  # the first revocation stands
    assert repo.principal_for_key(db, clear, NOW + 10) is None
    with pytest.raises(NotFound):
        repo.revoke_key(db, "nobody", NOW)


def test_last_use_is_written_at_most_once_a_minute(db: Session) -> None:
    _, clear = repo.create_key(db, name="ops", role="operator", now_ms=NOW)
    db.commit()

    def last_used() -> int | None:
        db.expire_all()
        return db.scalar(sa.select(ApiKey.last_used_ms))

    assert last_used() is None
    repo.principal_for_key(db, clear, NOW)
    assert last_used() == NOW
    repo.principal_for_key(db, clear, NOW + 59_999)
    assert last_used() == NOW
    repo.principal_for_key(db, clear, NOW + 60_000)
    assert last_used() == NOW + 60_000
    repo.principal_for_key(db, clear, NOW + 1)  # a clock behind never lowers it
    assert last_used() == NOW + 60_000


def test_settings_are_checked(db: Session) -> None:
    repo.set_setting(db, "policy", "full_recovery")
    assert repo.get_setting(db, "policy") == "full_recovery"
    for key, value in (("policy", "cheap"), ("watermark_grace_min", "-1"), ("watermark_grace_min", "1.5"), ("x", "1")):
        with pytest.raises(ValueError):
            repo.set_setting(db, key, value)


# ---- hostile files -----------------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "billing.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = _write(tmp_path, b"tenants: []\n" + b"#" * MAX_CONFIG_BYTES)
    with pytest.raises(ConfigError, match="larger than"):
        load_billing(path)


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "tenants: " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError):
        load_billing(path)


def test_anchor_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # Nine levels of nine references: 9**9 (387 million) leaves if anything expanded it.
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("tenants: [{id: acme, badges: *a9}]")
    path = _write(tmp_path, "\n".join(lines))
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        load_billing(path)
    assert time.perf_counter() - started < 10  # generous: expanding it would take hours


TARIFF = "tariffs: [{code: c, version: 1, machine: cnc-01, valid_from: %s, rate_per_hour: %s}]"
BAD_TYPES = {
    "float-money": ("tenants: [{id: acme}]\n" + TARIFF % ("2026-01-01", "1.5"), "float"),
    "string-money": (TARIFF % ("2026-01-01", "'100'"), "rate_per_hour"),
    "bool-money": (TARIFF % ("2026-01-01", "true"), "rate_per_hour"),
    "datetime-date": (TARIFF % ("2026-01-01T08:00:00", "1"), "valid_from"),
    "bad-id": ("tenants: [{id: Acme Corp}]", "tenants[0].id"),
    "not-a-list": ("tenants: acme", "tenants"),
    "date-booking": (
        "bookings: [{machine: cnc-01, tenant: acme, start: 2026-11-03, end: 2026-11-04}]",
        "bookings[0].start",
    ),
    "python-tag": ("!!python/object/apply:os.system ['echo hi']", "invalid YAML"),
    "not-utf8": ("tenants: [{id: acme}]\n\xff", "UTF-8"),
}


@pytest.mark.parametrize(("text", "fragment"), list(BAD_TYPES.values()), ids=list(BAD_TYPES))
def test_wrong_types_are_named_with_their_line(tmp_path: Path, text: str, fragment: str) -> None:
    raw = text.encode("latin-1") if "\xff" in text else text.encode()
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_billing(path)
    assert fragment in str(info.value) and str(path) in str(info.value)
