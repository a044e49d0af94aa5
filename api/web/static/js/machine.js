// The machine view: live state (stream), today's state timeline, stop reasons by name, sessions, OEE by shift.
// The figures are fetched when the page opens and again (at most once a minute) when the stream reports a change.
import { boot, zone } from "./boot.js";
import { getJson } from "./api.js";
import { stripChart, table, empty } from "./charts.js";
import { fill, lossesTable, oeeFigures, sessionsTable, shiftName } from "./figures.js";
import * as fmt from "./fmt.js";
import { lang, onLangChange, t } from "./i18n.js";
import { clearError, h, initShell, showError } from "./shell.js";
import { openStream } from "./stream.js";
import {
  agoText, noDataText, occupantText, reasonText, stateClass, stateText, stopReasonText,
} from "./tiles.js";

const machine = boot.machine;
const loadedAt = Date.now();
const REFRESH_MS = 60000;
let live = null;
let liveAt = Date.now();
let profile = { stop_reasons: {}, loss_categories: {} };
let data = null;
let lastLoad = 0;

const serverNow = () => boot.now_ms + (Date.now() - loadedAt);

function set(field, text) {
  const el = document.querySelector(`#machine-live [data-field=${field}]`);
  if (el && el.textContent !== text) el.textContent = text;
}

function renderLive() {
  if (!live) return;
  const m = live;
  const l = lang();
  const na = t("not_available");
  const card = document.getElementById("machine-live");
  for (const c of [...card.classList]) if (c.startsWith("state-")) card.classList.remove(c);
  card.classList.add(stateClass(m.state));
  card.dataset.state = m.state ?? "HIDDEN";
  set("state", stateText(m.state));
  const nodata = card.querySelector("[data-field=nodata]");
  nodata.hidden = m.state !== "UNKNOWN";
  nodata.textContent = m.state === "UNKNOWN" ? noDataText(m, Date.now()) : "";
  set("tenant", occupantText(m));
  set("job", m.job || "-");
  set("stop", m.state === "STOPPED" ? stopReasonText(m.stop_reason, profile.stop_reasons) : "-");
  set("power", m.power_kw == null ? na : fmt.kw(m.power_kw, l));
  const c = m.counters || {};
  set("good", c.good_count == null ? na : fmt.integer(c.good_count, l));
  set("reject", c.reject_count == null ? na : fmt.integer(c.reject_count, l));
  set("energy", c.energy_kwh == null ? na : fmt.kwhFloat(c.energy_kwh, l));
  const s = m.shift;
  set("parts", s ? `${fmt.integer(s.good, l)} ${t("good")} / ${fmt.integer(s.reject, l)} ${t("reject")}` : na);
  set("oee", s ? fmt.ratio(s.oee, l, na) : na);
  set("age", m.age_s == null ? na : agoText(m.age_s + (Date.now() - liveAt) / 1000));
}

function renderFigures() {
  if (!data) return;
  const l = lang();
  const { timeline, sessions, oee, fromMs, toMs } = data;
  const intervals = timeline.intervals.map((iv) => ({
    startMs: Date.parse(iv.start), endMs: Date.parse(iv.end), state: iv.state, reason: iv.reason,
  }));
  const title = `${t("web_timeline_today")}: ${machine.name || machine.id}, ${fmt.date(fromMs, zone, l)}`;
  // The legend: every state present, as text with its swatch.
  const seen = [...new Set(intervals.map((iv) => iv.state))];
  const legend = h("ul", { class: "legend" }, seen.map((s) => h("li", {},
    h("span", { class: `swatch ${stateClass(s)}`, "aria-hidden": "true" }), stateText(s))));
  const unknownWhy = [...new Set(timeline.intervals.filter((iv) => iv.state === "UNKNOWN" && iv.reason)
    .map((iv) => reasonText(iv.reason)))];
  fill("timeline", [
    stripChart(intervals, fromMs, toMs, title),
    legend,
    h("p", { "data-testid": "timeline-coverage" }, `${t("web_coverage")}: ${fmt.ratio(timeline.coverage, l, t("not_available"))}`
      + (unknownWhy.length ? ` (${unknownWhy.join(", ")})` : "")),
  ]);
  // Stop reasons: each reason's name from the profile, the loss it is booked as, and its stopped time today.
  const stopped = new Map();
  for (const iv of timeline.intervals) {
    if (iv.state === "STOPPED") {
      const k = iv.stop_reason ?? 0;
      stopped.set(k, (stopped.get(k) || 0) + Math.round(iv.duration_s * 1000));
    }
  }
  const codes = [...new Set([...Object.keys(profile.stop_reasons).map(Number), ...stopped.keys()])]
    .filter((c) => c !== 0 || stopped.has(0)).sort((a, b) => a - b);
  fill("stop-reasons", codes.length ? table(
    [t("web_code"), t("web_stop_reason"), t("web_booked_as"), t("web_hours")],
    codes.map((c) => {
      const cat = profile.loss_categories[String(c)] || "breakdown";
      return [String(c), profile.stop_reasons[String(c)] || stopReasonText(c, {}), t(`web_loss_${cat}`),
        fmt.hours(stopped.get(c) || 0, l)];
    }),
    { numeric: [3], testid: "stop-reasons-table" },
  ) : empty());
  fill("sessions", sessionsTable(sessions.sessions, { withMachine: false }));
  const rows = oee.rows;
  const nodes = oeeFigures(rows, "shift", t("web_shift"), t("web_oee_by_shift"), {
    nameOf: (v) => v, testid: "oee-shift-table",
  });
  for (const r of rows) {
    nodes.push(h("h3", {}, `${t("web_losses")}: ${shiftName(r)}`));
    nodes.push(lossesTable(r, profile.stop_reasons, `${t("web_losses")}: ${shiftName(r)}`));
  }
  fill("oee-shift", nodes);
}

async function load() {
  lastLoad = Date.now();
  const toMs = serverNow();
  const fromMs = fmt.dayStartMs(fmt.isoDate(toMs, zone), zone);
  const from = new Date(fromMs).toISOString();
  const to = new Date(toMs).toISOString();
  const id = encodeURIComponent(machine.id);
  try {
    const [timeline, sessions, oee] = await Promise.all([
      getJson(`/v1/machines/${id}/timeline`, { from, to }),
      getJson("/v1/sessions", { machine: machine.id, from, to }),
      getJson("/v1/oee", { machine: machine.id, group_by: "shift", from, to }),
    ]);
    data = { timeline, sessions, oee, fromMs, toMs };
    clearError();
    renderFigures();
  } catch (err) {
    showError(err);
  }
}

initShell();
onLangChange(() => {
  renderLive();
  renderFigures();
});
getJson(`/v1/machines/${encodeURIComponent(machine.id)}/profile`).then((p) => {
  profile = p;
  renderLive();
  renderFigures();
}, showError);
load();
openStream((all, changed) => {
  if (changed !== null && changed !== machine.id) return;
  const m = all.get(machine.id);
  if (!m) return;
  live = m;
  liveAt = Date.now();
  renderLive();
  if (changed !== null && Date.now() - lastLoad > REFRESH_MS) load();
}, (state) => {
  const el = document.getElementById("conn-status");
  el.dataset.state = state;
  el.textContent = t({ connecting: "web_connecting", live: "web_live", reconnecting: "web_reconnecting" }[state]);
});
window.setInterval(() => {
  if (live) set("age", live.age_s == null ? t("not_available") : agoText(live.age_s + (Date.now() - liveAt) / 1000));
}, 1000);
