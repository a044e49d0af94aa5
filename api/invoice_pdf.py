"""The PDF a tenant reads: an invoice or credit note document rendered on A4 in English or Bahasa Indonesia.

The only module that imports fpdf (pure Python, so the embedded install needs no system packages). Core fonts
only (Helvetica, Courier: latin-1, no font files), so the text survives ``pdftotext``; anything outside latin-1,
and every control character, prints as "?". The same document always gives the same bytes: the creation date
is the period's end and the producer is fixed.

Layout: header (facility, title, number or DRAFT, period, tenant, status), per machine and per session a block
(time, hours by state, billable hours, energy, parts, OEE, then its lines with amounts and PPN), lines of no
session under "other charges", the capacity basis (rate per hour = pool / capacity hours), the totals, and a
footer on every page with the hash and "page x of y".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from api.core import i18n
from api.core.i18n import LABELS, check_lang, label, rupiah

STATES = ("running", "setup", "idle", "stopped", "breakdown", "off", "maintenance", "unknown")
PRODUCER = "Shopfloor"
MAX_NAME = 120  # characters of a user-supplied name kept before wrapping (hostile names can be megabytes)
MAX_HASH = 128
# The page-count alias holds a control character, which _clean() removes from every document text, so no tenant
# name can smuggle in the alias and have it replaced.
PAGES_ALIAS = "\x01NB\x01"

MARGIN = 15.0  # mm
FOOTER_H = 16.0  # mm reserved at the bottom of each page for hash and page number
ROW_H = 5.0
# Line table: charge, quantity, unit price, amount, PPN rate, PPN (sums to the 180 mm text width)
LINE_COLS = (("charge", 47.0, "L"), ("quantity", 25.0, "R"), ("unit_price", 43.0, "R"), ("amount", 30.0, "R"))
LINE_TAX_COLS = (("ppn_rate", 15.0, "R"), ("tax", 20.0, "R"))
POOL_COLS = (("machine", 60.0, "L"), ("pool", 40.0, "R"), ("capacity", 40.0, "R"), ("rate_per_hour", 40.0, "R"))


def render_pdf(doc: Mapping[str, object], lang: str = "en") -> bytes:
    """Render an invoice or credit note document as a PDF in lang ("en" or "id")."""
    check_lang(lang)
    pdf = _InvoicePdf(doc, lang)
    pdf.render()
    return bytes(pdf.output())


def _clean(text: str, limit: int | None = None) -> str:
    """Return text printable by a core font: latin-1 only, control characters as "?", cut to limit."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return "".join(
        "?" if (c < " " or "\x7f" <= c <= "\x9f" or c > "\xff") else ("-" if c == "\xad" else c) for c in text
    )


class _InvoicePdf(FPDF):
    def __init__(self, doc: Mapping[str, object], lang: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.doc = doc
        self.lang = lang
        self.zone = _str(doc, "time_zone", "$")
        i18n.zone_info(self.zone)
        kind = _str(doc, "kind", "$")
        if kind not in ("invoice", "credit_note"):
            raise ValueError(f"$.kind must be 'invoice' or 'credit_note', got {kind!r}")
        self.title_text = label(kind, lang)
        number = _opt_str(doc, "number", "$")
        self.number_text = _clean(number, MAX_NAME) if number else label("draft", lang)
        digest = _opt_str(doc, "hash", "$")
        self.hash_text = _clean(digest, MAX_HASH) if digest else label("not_finalized", lang)
        self.facility = _clean(_str(doc, "facility_name", "$"), MAX_NAME)
        end_ms = _int(doc, "period_end_ms", "$")
        self.set_creation_date(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=end_ms))
        self.set_producer(PRODUCER)
        self.set_creator(PRODUCER)
        self.set_title(_clean(f"{self.title_text} {self.number_text}"))
        self.set_author(self.facility)
        self.set_lang(lang)
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=MARGIN + FOOTER_H)
        self.alias_nb_pages(PAGES_ALIAS)

    # fpdf calls these on every page
    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font("Helvetica", "", 8)
        self.set_text_color(90)
        running = f"{self.facility} - {self.title_text} {self.number_text} - {_clean(self._period())}"
        self.cell(0, 4, _fit(self, running, self.epw), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(0)
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-(MARGIN + FOOTER_H) + 4)
        self.set_draw_color(160)
        self.line(self.l_margin, self.y, self.w - self.r_margin, self.y)
        self.ln(1.5)
        self.set_font("Courier", "", 7)
        self.multi_cell(self.epw, 3.5, f"{label('hash', self.lang)}: {self.hash_text}", align="L")
        self.set_font("Helvetica", "", 8)
        pages = label("page_of", self.lang).format(page=self.page_no(), pages=PAGES_ALIAS)
        self.cell(0, 4, pages, align="R")

    def _period(self) -> str:
        return i18n.period(_str(self.doc, "period", "$"), self.lang)

    def render(self) -> None:
        self.add_page()
        self._head()
        lines = [_mapping(x, f"$.lines[{i}]") for i, x in enumerate(_list(self.doc, "lines", "$"))]
        sessions = [_mapping(x, f"$.sessions[{i}]") for i, x in enumerate(_list(self.doc, "sessions", "$"))]
        for i, line in enumerate(lines):
            for key in ("machine", "kind", "unit"):
                _str(line, key, f"$.lines[{i}]")
        session_ids = {(_str(s, "machine", "$.sessions[]"), _str(s, "id", "$.sessions[]")) for s in sessions}
        machines = sorted({_str(s, "machine", "$.sessions[]") for s in sessions} | {str(x["machine"]) for x in lines})
        for machine in machines:
            self._machine(machine, sessions, lines, session_ids)
        self._pools()
        self._totals()

    def _head(self) -> None:
        lang = self.lang
        self.set_font("Helvetica", "B", 14)
        self.multi_cell(self.epw, 7, self.facility, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(1)
        self.set_font("Helvetica", "B", 18)
        self.cell(0, 9, f"{self.title_text}   {self.number_text}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)
        doc = self.doc
        tenant = _mapping(doc.get("tenant"), "$.tenant")
        site = _mapping(doc.get("site"), "$.site")
        rows = [
            (label("number", lang), self.number_text),
            (label("period", lang), self._period()),
            (label("tenant", lang), f"{_str(tenant, 'name', '$.tenant')} ({_str(tenant, 'id', '$.tenant')})"),
            (label("site", lang), _str(site, "name", "$.site")),
        ]
        status = _opt_str(doc, "status", "$")
        if status is not None:
            key = f"status_{status}"
            rows.append((label("status", lang), label(key, lang) if key in LABELS else status))
        elif _opt_str(doc, "number", "$") is None:
            rows.append((label("status", lang), label("status_draft", lang)))
        credit_for = _opt_str(doc, "credit_for", "$")
        if credit_for is not None:
            rows.append((label("credit_for", lang), credit_for))
        reason = _opt_str(doc, "reason", "$")
        if reason is not None:
            rows.append((label("reason", lang), reason))
        override = _override(doc.get("override"))
        if override is not None:
            rows.append((label("override", lang), override))
        policy = _str(doc, "policy", "$")
        key = f"policy_{policy}"
        rows.append((label("policy", lang), label(key, lang) if key in LABELS else policy))
        rows.append((label("currency", lang), _str(doc, "currency", "$")))
        rows.append((label("time_zone", lang), self.zone))
        for name, value in rows:
            self.set_font("Helvetica", "B", 10)
            self.cell(40, ROW_H, _clean(name))
            self.set_font("Helvetica", "", 10)
            self.multi_cell(self.epw - 40, ROW_H, _clean(value, MAX_NAME), align="L", new_x=XPos.LMARGIN)
        self.ln(4)

    def _machine(
        self,
        machine: str,
        sessions: Sequence[Mapping[str, object]],
        lines: Sequence[Mapping[str, object]],
        session_ids: set[tuple[str, str]],
    ) -> None:
        lang = self.lang
        mine = sorted(
            (s for s in sessions if s["machine"] == machine),
            key=lambda s: (_int(s, "start_ms", "$.sessions[]"), _str(s, "id", "$.sessions[]")),
        )
        self._room(30)
        self.set_font("Helvetica", "B", 12)
        heading = f"{label('machine', lang)}: {machine}"
        if mine:
            heading += f" ({_str(mine[0], 'machine_class', '$.sessions[]')})"
        self.cell(0, 7, _fit(self, _clean(heading, MAX_NAME), self.epw), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        for session in mine:
            sid = _str(session, "id", "$.sessions[]")
            self._session(session, [x for x in lines if x["machine"] == machine and x.get("record") == sid])
        others = [x for x in lines if x["machine"] == machine and (machine, x.get("record")) not in session_ids]
        if others:
            self._room(20)
            self.set_font("Helvetica", "B", 10)
            self.cell(0, 6, label("other_charges", lang), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self._line_table(others)
        self.ln(3)

    def _session(self, s: Mapping[str, object], lines: Sequence[Mapping[str, object]]) -> None:
        lang, path = self.lang, "$.sessions[]"
        self._room(32)
        self.set_font("Helvetica", "B", 10)
        when = i18n.span(_int(s, "start_ms", path), _int(s, "end_ms", path), self.zone, lang)
        badge = _int(s, "badge", path)
        self.cell(0, 6, f"{label('session', lang)} {when}   ({label('badge', lang)} {badge})", new_x=XPos.LMARGIN)
        self.ln(6)
        self.set_font("Helvetica", "", 9)
        time_ms = _mapping(s.get("time_ms"), f"{path}.time_ms")
        states = [k for k in STATES if k in time_ms] + sorted(k for k in time_ms if k not in STATES)
        parts = []
        for state in states:
            ms = _int(time_ms, state, f"{path}.time_ms")
            if ms:
                name = label(f"state_{state}", lang) if state in STATES else _clean(state, 40)
                parts.append(f"{name} {i18n.hours(ms, lang)}")
        self.multi_cell(
            self.epw,
            4.5,
            f"{label('hours_by_state', lang)}: " + ("; ".join(parts) or i18n.hours(0, lang)),
            align="L",
            new_x=XPos.LMARGIN,
        )
        oee = s.get("oee_bp")
        if oee is not None and (not isinstance(oee, int) or isinstance(oee, bool)):
            raise ValueError(f"{path}.oee_bp must be an integer or null, got {type(oee).__name__}")
        facts = [
            f"{label('billable_hours', lang)}: {i18n.hours(_int(s, 'billable_ms', path), lang)}",
            f"{label('energy', lang)}: {i18n.kwh(_int(s, 'energy_wh', path), lang)}",
            f"{label('parts', lang)}: {i18n.integer(_int(s, 'good', path), lang)} {label('good', lang)}"
            f" / {i18n.integer(_int(s, 'reject', path), lang)} {label('reject', lang)}",
            f"{label('oee', lang)}: {label('not_available', lang) if oee is None else i18n.percent_bp(oee, lang)}",
        ]
        anomalies = _int(s, "anomalies", path)
        if anomalies:
            facts.append(f"{label('anomalies', lang)}: {i18n.integer(anomalies, lang)}")
        self.multi_cell(self.epw, 4.5, "   |   ".join(facts), align="L", new_x=XPos.LMARGIN)
        self.ln(1)
        if lines:
            self._line_table(lines)
        self.ln(2)

    def _line_table(self, lines: Sequence[Mapping[str, object]]) -> None:
        self._line_header()
        for line in lines:
            path = "$.lines[]"
            note = _opt_str(line, "note", path) or ""
            if self.will_page_break(ROW_H + (3.5 if note else 0)):
                self.add_page()
                self._line_header()
            unit, lang = _str(line, "unit", path), self.lang
            kind = _str(line, "kind", path)
            name = label(f"kind_{kind}", lang) if f"kind_{kind}" in LABELS else _clean(kind)
            tariff = _opt_str(line, "tariff", path)
            if tariff:
                name += f" ({tariff})"
            cells = (
                name,
                i18n.quantity(_int(line, "quantity", path), unit, lang),
                i18n.unit_price(_int(line, "unit_price", path), unit, lang),
                rupiah(_int(line, "amount", path), lang),
                i18n.percent_bp(_int(line, "tax_rate_bp", path), lang),
                rupiah(_int(line, "tax", path), lang),
            )
            self.set_font("Helvetica", "", 9)
            for (_, width, align), text in zip(LINE_COLS + LINE_TAX_COLS, cells, strict=True):
                self.cell(width, ROW_H, _fit(self, _clean(text, MAX_NAME), width), align=align)
            self.ln(ROW_H)
            if note:
                self.set_font("Helvetica", "I", 7)
                self.set_text_color(90)
                self.cell(0, 3.5, _fit(self, "    " + _clean(note, 300), self.epw), new_x=XPos.LMARGIN)
                self.set_text_color(0)
                self.ln(3.5)

    def _line_header(self) -> None:
        self.set_font("Helvetica", "B", 8)
        self.set_fill_color(235)
        for key, width, align in LINE_COLS + LINE_TAX_COLS:
            self.cell(width, ROW_H, _fit(self, label(key, self.lang), width), align=align, fill=True)
        self.ln(ROW_H)

    def _pools(self) -> None:
        pools = [_mapping(x, f"$.pools[{i}]") for i, x in enumerate(_list(self.doc, "pools", "$"))]
        if not pools:
            return
        lang = self.lang
        self._room(25)
        policy = _str(self.doc, "policy", "$")
        name = label(f"policy_{policy}", lang) if f"policy_{policy}" in LABELS else _clean(policy)
        self.set_font("Helvetica", "B", 11)
        self.cell(0, 7, f"{label('capacity_basis', lang)} ({name})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font("Helvetica", "", 8)
        self.multi_cell(
            self.epw,
            4,
            f"{label('rate_per_hour', lang)} = {label('pool', lang)} / {label('capacity', lang)}",
            align="L",
            new_x=XPos.LMARGIN,
        )
        self.set_font("Helvetica", "B", 8)
        self.set_fill_color(235)
        for key, width, align in POOL_COLS:
            self.cell(width, ROW_H, label(key, lang), align=align, fill=True)
        self.ln(ROW_H)
        self.set_font("Helvetica", "", 9)
        for i, pool in enumerate(pools):
            path = f"$.pools[{i}]"
            cells = (
                _str(pool, "machine", path),
                rupiah(_int(pool, "pool", path), lang),
                i18n.hours(_int(pool, "capacity_ms", path), lang),
                i18n.unit_price(_int(pool, "rate_per_hour", path), "min", lang),
            )
            for (_, width, align), text in zip(POOL_COLS, cells, strict=True):
                self.cell(width, ROW_H, _fit(self, _clean(text, MAX_NAME), width), align=align)
            self.ln(ROW_H)
        self.ln(3)

    def _totals(self) -> None:
        totals = _mapping(self.doc.get("totals"), "$.totals")
        self._room(3 * 6 + 4)
        self.ln(2)
        x = self.l_margin + self.epw - 100
        for key, size in (("subtotal", ""), ("tax", ""), ("total", "B")):
            self.set_x(x)
            self.set_font("Helvetica", size or "", 11 if size else 10)
            self.cell(50, 6, label(key, self.lang))
            self.cell(50, 6, rupiah(_int(totals, key, "$.totals"), self.lang), align="R")
            self.ln(6)

    def _room(self, height: float) -> None:
        # Keep a heading with what follows it instead of leaving it alone at the foot of a page.
        if self.will_page_break(height):
            self.add_page()


def _override(value: object) -> str | None:
    """Return the finalize override (a reason, or an object of who/why/when) as one line of text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "; ".join(f"{key}: {value[key]}" for key in sorted(value, key=str))
    raise ValueError(f"$.override must be an object, a string or null, got {type(value).__name__}")


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """Cut text with "..." so it fits a cell of width (mm) in the current font."""
    room = width - 2 * pdf.c_margin
    if pdf.get_string_width(text) <= room:
        return text
    while text and pdf.get_string_width(text + "...") > room:
        text = text[:-1]
    return text + "..."


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be an object, got {type(value).__name__}")
    return value


def _list(obj: Mapping[str, object], key: str, path: str) -> Sequence[object]:
    value = obj.get(key, [])
    if not isinstance(value, list | tuple):
        raise ValueError(f"{path}.{key} must be a list, got {type(value).__name__}")
    return value


def _int(obj: Mapping[str, object], key: str, path: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{path}.{key} must be an integer, got {type(value).__name__}")
    return value


def _str(obj: Mapping[str, object], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{path}.{key} must be a string, got {type(value).__name__}")
    return value


def _opt_str(obj: Mapping[str, object], key: str, path: str) -> str | None:
    return None if obj.get(key) is None else _str(obj, key, path)
