// The tenant portal: the tenant's own sessions, hours, parts, energy, OEE and invoices (every JSON route already
// cuts to the key's own tenant), and the machines live from the stream (others' sessions only as "occupied").
import { getJson } from "./api.js";
import { defaultRange, fill, invoicesTable, oeeFigures, rangeOf, sessionsTable } from "./figures.js";
import { boot } from "./boot.js";
import * as fmt from "./fmt.js";
import { lang, onLangChange, t } from "./i18n.js";
import { clearError, h, initShell, showError } from "./shell.js";
import { openStream } from "./stream.js";
import { noDataText, occupantText, stateClass, stateText } from "./tiles.js";

const form = document.getElementById("range");
const machineNames = new Map((boot.machines || []).map((m) => [m.id, m.name || m.id]));
let machines = new Map();
let data = null;

function renderTile(m) {
  const tile = document.querySelector(`[data-testid="tile-${CSS.escape(m.id)}"]`);
  if (!tile) return; // the page lists the site's machines; one it does not know is not shown
  for (const c of [...tile.classList]) if (c.startsWith("state-")) tile.classList.remove(c);
  tile.classList.add(stateClass(m.state));
  tile.dataset.state = m.state ?? "HIDDEN";
  const set = (field, text) => {
    const el = tile.querySelector(`[data-field=${field}]`);
    if (el) el.textContent = text;
  };
  const na = t("not_available");
  set("state", stateText(m.state));
  const nodata = tile.querySelector("[data-field=nodata]");
  nodata.hidden = m.state !== "UNKNOWN";
  nodata.textContent = m.state === "UNKNOWN" ? noDataText(m, Date.now()) : "";
  set("tenant", occupantText(m));
  set("job", m.job || "-");
  set("shift", na);
  set("parts", na);
  set("oee", na);
  set("power", m.power_kw == null ? na : fmt.kw(m.power_kw, lang()));
  set("age", m.last_seen ? fmt.whenShort(Date.parse(m.last_seen), Date.now(), boot.site.timezone, lang()) : na);
}

function renderFigures() {
  if (!data) return;
  const l = lang();
  const { sessions, oee, invoices } = data;
  let ms = 0;
  let good = 0;
  let reject = 0;
  let wh = 0;
  for (const s of sessions.sessions) {
    ms += Math.round(s.hours * fmt.MS_PER_HOUR);
    good += s.good;
    reject += s.reject;
    wh += Math.round(s.kwh * 1000);
  }
  const summary = h("dl", { class: "summary", "data-testid": "summary" },
    h("div", {}, h("dt", {}, t("web_session_hours")), h("dd", { "data-testid": "summary-hours" }, fmt.hours(ms, l))),
    h("div", {}, h("dt", {}, t("parts")), h("dd", { "data-testid": "summary-parts" },
      `${fmt.integer(good, l)} ${t("good")} / ${fmt.integer(reject, l)} ${t("reject")}`)),
    h("div", {}, h("dt", {}, t("energy")), h("dd", { "data-testid": "summary-energy" }, fmt.kwh(wh, l))));
  fill("sessions", [summary, sessionsTable(sessions.sessions, { withMachine: true })]);
  fill("oee-machine", oeeFigures(oee.rows, "machine", t("machine"), t("web_oee_by_machine"), {
    nameOf: (id) => machineNames.get(id) || id, testid: "oee-machine-table",
  }));
  fill("invoices", invoicesTable(invoices.invoices, { withTenant: false }));
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
    const [sessions, oee, invoices] = await Promise.all([
      getJson("/v1/sessions", range),
      getJson("/v1/oee", { ...range, group_by: "machine" }),
      getJson("/v1/invoices"),
    ]);
    data = { sessions, oee, invoices };
    clearError();
    renderFigures();
  } catch (err) {
    showError(err);
  }
}

initShell();
onLangChange(() => {
  for (const m of machines.values()) renderTile(m);
  renderFigures();
});
defaultRange(form);
form.addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
openStream((all, changed) => {
  machines = all;
  if (changed === null) for (const m of all.values()) renderTile(m);
  else renderTile(all.get(changed));
}, (state) => {
  const el = document.getElementById("conn-status");
  el.dataset.state = state;
  el.textContent = t({ connecting: "web_connecting", live: "web_live", reconnecting: "web_reconnecting" }[state]);
});
