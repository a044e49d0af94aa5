"""Who may see which badge: tenant keys see their own tenant, and only that another one is there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from api.core.sessions import tenant_of
from api.deps import Principal


@dataclass(frozen=True, slots=True)
class Occupant:
    """The badge and tenant at a machine as shown to one caller."""

    tenant: str | None
    badge: int | None
    occupied: bool
    visible: bool

    def job(self, job: str | None) -> str | None:
        """Return job if the caller may see it (another tenant's job name is theirs)."""
        return job if self.visible else None


def occupant(principal: Principal, badge: int | None, badge_owner: Mapping[int, str]) -> Occupant:
    """Show the badge and its tenant, or mask them (tenant null, badge null, occupied true) for other tenants."""
    if not badge:
        return Occupant(None, None, occupied=False, visible=True)
    tenant = tenant_of(badge, badge_owner)
    if principal.sees(tenant):
        return Occupant(tenant, badge, occupied=True, visible=True)
    return Occupant(None, None, occupied=True, visible=False)
