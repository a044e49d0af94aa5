// Tables and charts of the JSON figures (OEE rows, sessions, usage, invoices), shared by the machine view, reports
// and the portal. Floats of the JSON are turned into the integers fmt.js formats (ms, Wh, basis points) once here.
import { boot, zone } from "./boot.js";
import { barChart, empty, table } from "./charts.js";
import * as fmt from "./fmt.js";
import { has, lang, t } from "./i18n.js";
import { h } from "./shell.js";
import { stopReasonText, tenantName } from "./tiles.js";

const na = () => t("not_available");
const ms = (iso) => Date.parse(iso);

/** Return a tenant cell: its name, or "No tenant (unowned badge)". */
export function tenantCell(tenant) {
  return tenant ? tenantName(tenant) : t("web_no_tenant");
}

/** Return a loss key's label ("breakdown:4" -> "Breakdown: tool break (4)"). */
export function lossText(key, reasonNames) {
  if (key.startsWith("breakdown:")) {
    const code = key.slice("breakdown:".length);
    const reason = code === "none" ? t("web_none") : stopReasonText(Number(code), reasonNames);
    return `${t("web_loss_breakdown")}: ${reason}`;
  }
  return has(`web_loss_${key}`) ? t(`web_loss_${key}`) : key;
}

/** Render OEE rows as a bar chart of OEE plus a table of A, P, Q, OEE and coverage; key names the group column. */
export function oeeFigures(rows, key, groupLabel, title, { nameOf = (v) => v, testid = null } = {}) {
  if (!rows.length) return [empty()];
  const l = lang();
  const named = rows.map((r) => ({ r, name: nameOf(r[key]) }));
  const chart = barChart(
    named.map(({ r, name }) => ({ label: String(name), value: r.oee, text: fmt.ratio(r.oee, l, na()) })),
    title,
  );
  const tab = table(
    [groupLabel, t("oee"), t("web_availability"), t("web_effectiveness"), t("web_quality"), t("good"), t("reject"),
      t("web_coverage")],
    named.map(({ r, name }) => [
      String(name), fmt.ratio(r.oee, l, na()), fmt.ratio(r.availability, l, na()), fmt.ratio(r.effectiveness, l, na()),
      fmt.ratio(r.quality, l, na()), fmt.integer(r.good, l), fmt.integer(r.reject, l), fmt.ratio(r.coverage, l, na()),
    ]),
    { numeric: [1, 2, 3, 4, 5, 6, 7], testid },
  );
  return [chart, tab];
}

/** Render each row's losses (seconds by loss, largest first) as a table of hours. */
export function lossesTable(row, reasonNames, caption) {
  const entries = Object.entries(row.losses || {}).filter(([, s]) => s !== 0).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return empty();
  return table(
    [t("web_losses"), t("web_hours")].map((x) => x),
    entries.map(([k, s]) => [lossText(k, reasonNames), fmt.hours(Math.round(s * 1000), lang())]),
    { numeric: [1], caption },
  );
}

/** Render sessions (GET /v1/sessions) as a table; withMachine adds the machine column. */
export function sessionsTable(sessions, { withMachine = true, testid = "sessions-table" } = {}) {
  if (!sessions.length) return empty();
  const l = lang();
  const machines = new Map((boot.machines || []).map((m) => [m.id, m.name || m.id]));
  const headers = [t("session_start"), ...(withMachine ? [t("machine")] : []), t("tenant"), t("badge"),
    t("web_session_hours"), t("good"), t("reject"), t("energy"), t("oee")];
  const rows = sessions.map((s) => [
    fmt.span(ms(s.start), ms(s.end), zone, l),
    ...(withMachine ? [machines.get(s.machine) || s.machine] : []),
    tenantCell(s.tenant),
    String(s.badge),
    fmt.hoursFloat(s.hours, l),
    fmt.integer(s.good, l),
    fmt.integer(s.reject, l),
    fmt.kwhFloat(s.kwh, l),
    s.oee ? fmt.ratio(s.oee.oee, l, na()) : na(),
  ]);
  const first = withMachine ? 4 : 3;
  return table(headers, rows, { numeric: [first, first + 1, first + 2, first + 3, first + 4], testid });
}

/** Render invoices (GET /v1/invoices) with a PDF link each, in the current language. */
export function invoicesTable(invoices, { withTenant = true } = {}) {
  if (!invoices.length) return empty();
  const l = lang();
  const headers = [t("number"), ...(withTenant ? [t("tenant")] : []), t("period"), t("kind"), t("status"), t("total"),
    t("web_pdf")];
  const rows = invoices.map((inv) => {
    const number = inv.number || `#${inv.id}`;
    const statusKey = `status_${inv.status}`;
    const link = h("a", {
      href: `/v1/invoices/${encodeURIComponent(inv.id)}.pdf?lang=${l}`,
      "data-testid": `invoice-pdf-${inv.id}`,
      "aria-label": t("web_open_pdf", { number }),
    }, t("web_pdf"));
    return [
      number,
      ...(withTenant ? [tenantCell(inv.tenant)] : []),
      fmt.period(inv.period, l),
      has(inv.kind) ? t(inv.kind) : inv.kind,
      has(statusKey) ? t(statusKey) : inv.status,
      fmt.rupiah(inv.total, l),
      link,
    ];
  });
  return table(headers, rows, { numeric: [withTenant ? 5 : 4], testid: "invoices-table" });
}

/** Put nodes into the element with id, replacing what it held. */
export function fill(id, nodes) {
  const el = document.getElementById(id);
  if (el) el.replaceChildren(...(Array.isArray(nodes) ? nodes : [nodes]));
}

/** The [from, to) of the range form's local dates as ISO 8601 instants (to is inclusive on the form). */
export function rangeOf(form) {
  const from = fmt.dayStartMs(form.elements.from.value, zone);
  const to = fmt.dayStartMs(fmt.nextDay(form.elements.to.value), zone);
  if (!(to > from)) throw new Error(`${t("web_to")} < ${t("web_from")}`);
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
}

/** Set the range form to this month so far (site zone), unless it already holds dates. */
export function defaultRange(form) {
  const today = fmt.isoDate(boot.now_ms, zone);
  if (!form.elements.from.value) form.elements.from.value = `${today.slice(0, 8)}01`;
  if (!form.elements.to.value) form.elements.to.value = today;
}

/** Return a per-shift row's label: the shift name (and day when the rows carry one). */
export function shiftName(row) {
  return row.day ? `${row.day} ${row.shift}` : String(row.shift);
}
