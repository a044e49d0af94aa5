"""Who owns a badge when: badges move between tenants on dates, so ownership is a function of badge and time.

Raw data keeps the badge; the tenant is looked up at compute time (DESIGN.md, Sessions). A badge no span covers at
that instant maps to None (unowned), never to a placeholder name.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BadgeSpan:
    """Badge `number` belongs to `tenant` over [from_ms, to_ms); to_ms None: open-ended."""

    number: int
    tenant: str
    from_ms: int
    to_ms: int | None = None

    def __post_init__(self) -> None:
        if self.to_ms is not None and self.to_ms <= self.from_ms:
            raise ValueError(f"badge {self.number} of {self.tenant!r}: validity ends before it begins")


class Owners:
    """Badge -> tenant over time, from spans that never overlap for one number."""

    __slots__ = ("_edges", "_spans", "_starts", "_transfers")

    def __init__(self, spans: Iterable[BadgeSpan] = ()) -> None:
        by_badge: dict[int, list[BadgeSpan]] = {}
        for span in spans:
            by_badge.setdefault(span.number, []).append(span)
        self._spans: dict[int, list[BadgeSpan]] = {}
        self._starts: dict[int, list[int]] = {}
        self._edges: dict[int, list[int]] = {}  # per badge: the instants its ownership changes, ascending
        edges: set[int] = set()
        for number, given in by_badge.items():
            given.sort(key=lambda s: s.from_ms)
            for a, b in itertools.pairwise(given):
                if a.to_ms is None or a.to_ms > b.from_ms:
                    raise ValueError(f"badge {number}: validity of {a.tenant!r} and {b.tenant!r} overlap")
            # Back-to-back spans of one tenant are one span: ownership does not change at their seam.
            mine: list[BadgeSpan] = []
            for span in given:
                last = mine[-1] if mine else None
                if last is not None and last.tenant == span.tenant and last.to_ms == span.from_ms:
                    mine[-1] = BadgeSpan(number, span.tenant, last.from_ms, span.to_ms)
                else:
                    mine.append(span)
            self._spans[number] = mine
            self._starts[number] = [s.from_ms for s in mine]
            own = {t for s in mine for t in (s.from_ms, s.to_ms) if t is not None}
            self._edges[number] = sorted(own)
            edges |= own
        self._transfers = sorted(edges)

    @classmethod
    def always(cls, owner: Mapping[int, str]) -> Owners:
        """Owners that never change: each badge owned by its tenant for all time."""
        return cls(BadgeSpan(badge, tenant, -(2**62)) for badge, tenant in owner.items())

    def at(self, badge: int, at_ms: int) -> str | None:
        """The tenant owning badge at at_ms, None if nobody does."""
        starts = self._starts.get(badge)
        if not starts:
            return None
        k = bisect.bisect_right(starts, at_ms) - 1
        if k < 0:
            return None
        span = self._spans[badge][k]
        return span.tenant if span.to_ms is None or at_ms < span.to_ms else None

    def transfers(self, start_ms: int, end_ms: int, badge: int | None = None) -> list[int]:
        """Instants in (start_ms, end_ms) where some badge's (or this badge's) ownership changes, ascending."""
        edges = self._transfers if badge is None else self._edges.get(badge, [])
        lo = bisect.bisect_right(edges, start_ms)
        return edges[lo : bisect.bisect_left(edges, end_ms)]

    def tenants(self) -> set[str]:
        """Every tenant that owns or owned a badge."""
        return {s.tenant for spans in self._spans.values() for s in spans}

    def badges_of(self, tenant: str) -> set[int]:
        """Every badge the tenant owns or owned."""
        return {n for n, spans in self._spans.items() if any(s.tenant == tenant for s in spans)}


OwnerBook = Mapping[int, str] | Owners


def as_owners(book: OwnerBook) -> Owners:
    """Owners from either a time-dependent book or a plain badge -> tenant mapping (valid for all time)."""
    return book if isinstance(book, Owners) else Owners.always(book)


def owner_at(book: OwnerBook, badge: int, at_ms: int) -> str | None:
    """The tenant of badge at at_ms in either kind of book."""
    if isinstance(book, Owners):
        return book.at(badge, at_ms)
    return book.get(badge)
