// Reports (admin, auditor): OEE by machine, shift and day as bar charts, usage by tenant, invoices with their PDF.
import { boot } from "./boot.js";
import { getJson } from "./api.js";
import { empty, table } from "./charts.js";
import { defaultRange, fill, invoicesTable, oeeFigures, rangeOf, tenantCell } from "./figures.js";
import * as fmt from "./fmt.js";
import { lang, onLangChange, t } from "./i18n.js";
import { clearError, initShell, showError } from "./shell.js";

const form = document.getElementById("range");
const machineNames = new Map((boot.machines || []).map((m) => [m.id, m.name || m.id]));
let data = null;

function usageByTenant(rows) {
  // One line per tenant (unowned badges together), summed over machines; hours and kWh summed as the API gives them.
  const by = new Map();
  for (const r of rows) {
    const k = r.tenant ?? "";
    const a = by.get(k) || { tenant: r.tenant, session_ms: 0, running_ms: 0, good: 0, reject: 0, wh: 0, sessions: 0 };
    a.session_ms += Math.round(r.session_hours * fmt.MS_PER_HOUR);
    a.running_ms += Math.round(r.running_hours * fmt.MS_PER_HOUR);
    a.good += r.good;
    a.reject += r.reject;
    a.wh += Math.round(r.kwh * 1000);
    a.sessions += r.sessions;
    by.set(k, a);
  }
  return [...by.values()].sort((a, b) => b.session_ms - a.session_ms);
}

function render() {
  if (!data) return;
  const l = lang();
  const { byMachine, byShift, byDay, usage, invoices } = data;
  fill("oee-machine", oeeFigures(byMachine.rows, "machine", t("machine"), t("web_oee_by_machine"), {
    nameOf: (id) => machineNames.get(id) || id, testid: "oee-machine-table",
  }));
  fill("oee-shift", oeeFigures(byShift.rows, "shift", t("web_shift"), t("web_oee_by_shift"), {
    testid: "oee-shift-table",
  }));
  fill("oee-day", oeeFigures(byDay.rows, "day", t("web_day"), t("web_oee_by_day"), { testid: "oee-day-table" }));
  const tenants = usageByTenant(usage.rows);
  fill("usage", tenants.length ? table(
    [t("tenant"), t("web_sessions"), t("web_session_hours"), t("web_running_hours"), t("good"), t("reject"),
      t("energy")],
    tenants.map((a) => [tenantCell(a.tenant), fmt.integer(a.sessions, l), fmt.hours(a.session_ms, l),
      fmt.hours(a.running_ms, l), fmt.integer(a.good, l), fmt.integer(a.reject, l), fmt.kwh(a.wh, l)]),
    { numeric: [1, 2, 3, 4, 5, 6], testid: "usage-table" },
  ) : empty());
  fill("invoices", invoicesTable(invoices.invoices));
}

async function load() {
  let range;
  try {
    range = rangeOf(form);
  } catch (err) {
    showError(err);
    return;
  }
  try {
    const [byMachine, byShift, byDay, usage, invoices] = await Promise.all([
      getJson("/v1/oee", { ...range, group_by: "machine" }),
      getJson("/v1/oee", { ...range, group_by: "shift" }),
      getJson("/v1/oee", { ...range, group_by: "day" }),
      getJson("/v1/usage", range),
      getJson("/v1/invoices"),
    ]);
    data = { byMachine, byShift, byDay, usage, invoices };
    clearError();
    render();
  } catch (err) {
    showError(err);
  }
}

initShell();
onLangChange(render);
defaultRange(form);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
